"""The audit review page: the embedded data, its safety, and (in headless Chromium) keys, filters, labels, export."""

from __future__ import annotations

import base64
import csv
import hashlib
import io
import json
import re
import shutil
import subprocess
from importlib import resources
from pathlib import Path
from typing import Any

import pytest

from selector.audit.page import (
    CHROMIUM,
    CSV_HEADER,
    FOLD_CHARS,
    STORAGE_PREFIX,
    asset,
    embed_json,
    fmt_count,
    nice_ticks,
    render_page,
)
from selector.audit.page import CHROMIUM_ARGS as LAUNCH_ARGS
from selector.core.errors import SelectorError

NASTY = "Ein Satz über Ehrlichkeit — 正直 🙂 </script><b>x</b> <!-- & \u2028 end"
LONG = " ".join(f"Sentence {i} says that cooperation between neighbours builds trust." for i in range(120))


def _doc(i: int, stream: str, kind: str, bucket: str, text: str, **kw: Any) -> dict[str, Any]:
    themes = ["honesty", "cooperation", "ai_risk"]
    d: dict[str, Any] = {
        "doc_id": f"doc-{i}",
        "kind": kind,
        "stream": stream,
        "bucket": bucket,
        "source": "shard-0001.parquet",
        "row": 10 + i,
        "url": f"https://site{i}.example/page?q={i}&x=1",
        "domain": f"site{i}.example",
        "text": text,
        "n_tokens": len(text) // 4,
        "repeats": 0 if kind != "selected" else 1 + i % 3,
        "weight": 0.0 if kind != "selected" else float(1 + i % 3),
        "reason": f"{stream}: score 0.{70 + i} >= threshold 0.650; {1 + i % 3} of at most 4 repeats",
        "scores": {t: round(0.1 * (i % 5) + (0.5 if t == stream else 0.0), 3) for t in themes},
        "ft": {t: 0.3 + 0.01 * i for t in themes},
        "emb": {t: (None if t == "ai_risk" else 0.4 + 0.02 * i) for t in themes},
        "seeds": {
            stream: [
                {
                    "seed_id": f"{stream}-seed-{j}",
                    "text": f"Seed exemplar {j} about {stream}.",
                    "sim": 0.8 - 0.1 * j,
                }
                for j in range(3)
            ]
        },
        "passages": [{"start": 0, "end": min(40, len(text)), "score": 0.9}],
    }
    d.update(kw)
    return d


def synthetic() -> dict[str, Any]:
    """Six documents over two streams: one near-threshold reject, one nasty text, one long text."""
    docs = [
        _doc(
            0,
            "honesty",
            "selected",
            "top",
            "Telling the truth even when it costs you is the core of honesty.",
        ),
        _doc(1, "honesty", "selected", "middle", NASTY, passages=[{"start": 0, "end": 8, "score": 0.5}]),
        _doc(
            2,
            "honesty",
            "near_threshold_reject",
            "below threshold",
            "A review of a phone; the seller was fair.",
        ),
        _doc(
            3,
            "cooperation",
            "selected",
            "top",
            LONG,
            passages=[{"start": 5, "end": 60, "score": 0.7}, {"start": 4000, "end": 4100, "score": 0.95}],
        ),  # fmt: skip
        _doc(
            4, "cooperation", "selected", "near threshold", "Neighbours shared tools and labour at harvest."
        ),
        _doc(
            5,
            "cooperation",
            "selected",
            "middle",
            "Reciprocity keeps a village working.",
            url=None,
            domain=None,
        ),
    ]
    edges = [i / 10 for i in range(11)]
    return {
        "title": "selector audit: runs/demo/manifest",
        "created_at": "2025-01-02T03:04:05Z",
        "manifest": "/tmp/runs/demo/manifest",
        "seed": 7,
        "reviewer_hint": "Label each document for its stream's theme.",
        "themes": ["honesty", "cooperation", "ai_risk"],
        "upsampled": ["honesty", "cooperation"],
        "stance": ["ai_risk"],
        "thresholds": {"honesty": 0.65, "cooperation": 0.6, "ai_risk": 0.7},
        "max_repeats": 4,
        "documents": docs,
        "charts": {
            "score_hist": {
                t: {"edges": edges, "counts": [9000, 3000, 800, 200, 90, 40, 20, 9, 3, 1], "threshold": 0.65}
                for t in ("honesty", "cooperation", "ai_risk")
            },
            "tokens_by_domain": {
                "honesty": [["site0.example", 120000], ["site1.example", 4000], ["other", 900]],
                "cooperation": [
                    ["site3.example", 50000],
                    ["a-very-long-domain-name-for-testing.example", 700],
                ],
            },
            "yield": {
                t: {
                    "thresholds": [i / 10 for i in range(11)],
                    "tokens": [10**7 // (i + 1) for i in range(11)],
                    "current": 0.65,
                }  # fmt: skip
                for t in ("honesty", "cooperation", "ai_risk")
            },
            "repetition": [
                {
                    "stream": "honesty",
                    "epochs": 2.4,
                    "effective_epochs": 2.1,
                    "cap": 4,
                    "repeats_hist": {"1": 30, "2": 12, "4": 5},
                },  # fmt: skip
                {
                    "stream": "cooperation",
                    "epochs": 1.3,
                    "effective_epochs": 1.25,
                    "cap": 4,
                    "repeats_hist": {"1": 80},
                },
            ],
        },
        "precision": None,
    }


def _blob(page: str) -> str:
    m = re.search(r'<script type="application/json" id="audit-data">(.*?)</script>', page, re.S)
    assert m, "no data blob"
    return m.group(1)


# ---------------------------------------------------------------------------------------------------------
# pure Python


def test_blob_round_trips_and_cannot_close_the_script(tmp_path: Path) -> None:
    data = synthetic()
    path = render_page(tmp_path, data)
    assert path == tmp_path / "index.html"
    page = path.read_text(encoding="utf-8")
    blob = _blob(page)
    assert json.loads(blob) == data
    for raw in ("<", ">", "&", "\u2028", "\u2029"):
        assert raw not in blob
    assert page.count("</script>") == 2  # the blob's and the code's: the document text never closes one
    assert "🙂" in blob and "正直" in blob  # non-ASCII stays readable, not \u-escaped


def test_embed_json_escapes() -> None:
    s = embed_json({"t": "</script><!--&\u2028"})
    assert s == '{"t":"\\u003c/script\\u003e\\u003c!--\\u0026\\u2028"}'
    assert json.loads(s) == {"t": "</script><!--&\u2028"}


def test_no_external_resources(tmp_path: Path) -> None:
    page = render_page(tmp_path, synthetic()).read_text(encoding="utf-8")
    outside = page.replace(_blob(page), "")
    assert not re.search(r"https?://", outside), re.findall(r".{30}https?://.{30}", outside)
    assert not re.search(r"\b(src|href)\s*=\s*[\"'](?!data:)", outside, re.I)
    assert not re.search(r"@import|url\(", outside)
    assert "default-src 'none'" in outside  # the CSP forbids anything else too
    assert (
        "innerHTML" not in outside and "insertAdjacentHTML" not in outside and "document.write" not in outside
    )


def test_charts_are_inline_svg(tmp_path: Path) -> None:
    page = render_page(tmp_path, synthetic()).read_text(encoding="utf-8")
    outside = page.replace(_blob(page), "")
    # score histograms, tokens by domain, yield curves, epochs, repeats histograms
    assert outside.count('<svg class="chart"') == 3 + 2 + 3 + 1 + 2
    assert "threshold 0.650" in outside and "cap" in outside
    assert "a-very-long-domain-name-fo…" in outside  # long names are shortened on the axis ...
    assert "<title>a-very-long-domain-name-for-testing.example</title>" in outside  # ... and whole on hover


def test_missing_or_empty_charts_still_render(tmp_path: Path) -> None:
    data = synthetic()
    data["charts"] = {"score_hist": {"honesty": {"edges": [0, 1], "counts": [0, 0], "threshold": 0.5}}}
    page = render_page(tmp_path, data).read_text(encoding="utf-8")
    assert "no histogram" in page and "No data for this picture" in page


def test_numpy_and_nan_become_json() -> None:
    np = pytest.importorskip("numpy")
    data = synthetic()
    data["documents"][0]["scores"]["honesty"] = np.float32(0.5)
    data["documents"][0]["ft"]["honesty"] = float("nan")
    data["documents"][0]["row"] = np.int64(3)
    from selector.audit.page import _validate, build_html

    blob = json.loads(_blob(build_html(_validate(data))))
    assert blob["documents"][0]["scores"]["honesty"] == 0.5
    assert blob["documents"][0]["ft"]["honesty"] is None
    assert blob["documents"][0]["row"] == 3


def test_bad_data_names_the_problem(tmp_path: Path) -> None:
    data = synthetic()
    del data["documents"][2]["doc_id"]
    with pytest.raises(SelectorError, match=r"documents\[2\] has no doc_id"):
        render_page(tmp_path, data)
    with pytest.raises(SelectorError, match='no "documents" list'):
        render_page(tmp_path, {"themes": []})
    bad = synthetic()
    bad["documents"][0]["scores"]["honesty"] = object()
    with pytest.raises(SelectorError, match=r"documents\[0\]\.scores\.honesty is a object"):
        render_page(tmp_path, bad)


def test_number_helpers() -> None:
    assert [fmt_count(x) for x in (0, 950, 1000, 12345, 4_500_000, 1.2e9)] == [
        "0",
        "950",
        "1k",
        "12.3k",
        "4.5M",
        "1.2B",
    ]
    assert nice_ticks(0, 1) == [0, 0.2, 0.4, 0.6, 0.8, 1.0]
    assert nice_ticks(0, 9000, 4) == [0, 2500, 5000, 7500, 10000]


# ---------------------------------------------------------------------------------------------------------
# the page's files: package data in selector/audit/assets, inlined into the one written page

ASSET_FILES = ("page.html", "page.css", "page.js")


def test_assets_are_package_data_and_inlined(tmp_path: Path) -> None:
    folder = resources.files("selector.audit") / "assets"
    for name in ASSET_FILES:
        assert (folder / name).is_file(), (
            f"selector/audit/assets/{name} is not found through importlib.resources"
        )
        assert asset(name) == (folder / name).read_text(encoding="utf-8") != ""
    template = asset("page.html")
    assert set(re.findall(r"@@([A-Z]+)@@", template)) == {"CSP", "TITLE", "STYLE", "SCRIPT", "CHARTS", "DATA"}
    assert "{{" not in asset("page.css") and "}}" not in asset("page.css")  # plain CSS, no str.format escapes
    page = render_page(tmp_path, synthetic()).read_text(encoding="utf-8")
    assert asset("page.css") in page
    script = asset("page.js")
    assert "__FOLD__" in script and "__PREFIX__" in script
    filled = script.replace("__FOLD__", str(FOLD_CHARS)).replace("__PREFIX__", STORAGE_PREFIX)
    assert filled in page
    assert not re.search(r"@@[A-Z]+@@|__FOLD__|__PREFIX__", page)


def test_csp_hashes_the_inlined_style_and_script(tmp_path: Path) -> None:
    page = render_page(tmp_path, synthetic()).read_text(encoding="utf-8")
    m = re.search(r'<meta http-equiv="Content-Security-Policy" content="([^"]*)">', page)
    assert m, "no CSP"
    csp = m.group(1)

    def sha(text: str) -> str:
        return "sha256-" + base64.b64encode(hashlib.sha256(text.encode("utf-8")).digest()).decode("ascii")

    styles = re.findall(r"<style>(.*?)</style>", page, re.S)
    scripts = re.findall(r"<script>(.*?)</script>", page, re.S)
    assert len(styles) == 1 and len(scripts) == 1
    assert f"style-src '{sha(styles[0])}'" in csp
    assert f"script-src '{sha(scripts[0])}'" in csp


@pytest.mark.skipif(shutil.which("node") is None, reason="needs node on PATH to parse page.js")
def test_script_parses_as_javascript() -> None:
    with resources.as_file(resources.files("selector.audit") / "assets" / "page.js") as path:
        r = subprocess.run(["node", "--check", str(path)], capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr


# ---------------------------------------------------------------------------------------------------------
# in headless Chromium

needs_browser = pytest.mark.skipif(
    shutil.which(CHROMIUM) is None, reason=f"needs Chromium at {CHROMIUM} (bash scripts/install_browser.sh)"
)


@pytest.fixture(scope="module")
def browser() -> Any:
    sync_api = pytest.importorskip("playwright.sync_api", reason="needs playwright (pip install playwright)")
    if shutil.which(CHROMIUM) is None:
        pytest.skip(f"needs Chromium at {CHROMIUM} (bash scripts/install_browser.sh)")
    with sync_api.sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, args=LAUNCH_ARGS)
        yield b
        b.close()


class Page:
    """A page of the audit in a fresh browser context, with its console messages and page errors collected."""

    def __init__(self, browser: Any, url: str) -> None:
        self.context = browser.new_context(accept_downloads=True, viewport={"width": 1400, "height": 1000})
        self.page = self.context.new_page()
        self.messages: list[str] = []
        self.page.on("console", lambda m: self.messages.append(f"{m.type}: {m.text}"))
        self.page.on("pageerror", lambda e: self.messages.append(f"pageerror: {e}"))
        self.page.goto(url)
        self.page.wait_for_selector(".card")

    def problems(self) -> list[str]:
        return [m for m in self.messages if not m.startswith(("log:", "info:", "debug:"))]

    def card(self, doc_id: str) -> Any:
        return self.page.locator(f'[data-doc-id="{doc_id}"]')

    def export(self) -> list[list[str]]:
        with self.page.expect_download() as dl:
            self.page.keyboard.press("e")
        d = dl.value
        assert d.suggested_filename == "labels.csv"
        return list(csv.reader(io.StringIO(Path(d.path()).read_text(encoding="utf-8"))))


@pytest.fixture
def audit(tmp_path: Path, browser: Any) -> Any:
    url = render_page(tmp_path, synthetic()).as_uri()
    pages: list[Page] = []

    def open_page() -> Page:
        pages.append(Page(browser, url))
        return pages[-1]

    yield open_page
    for p in pages:
        p.context.close()


@needs_browser
def test_loads_cleanly_with_a_card_per_document(audit: Any) -> None:
    a = audit()
    ids = a.page.eval_on_selector_all("[data-doc-id]", "els => els.map(e => e.dataset.docId)")
    assert ids == [d["doc_id"] for d in synthetic()["documents"]]
    assert a.page.locator('.card[data-kind="near_threshold_reject"] .reject-flag').inner_text() == (
        "Rejected · near threshold"
    )
    nasty = a.card("doc-1").locator(".doc-text")
    assert nasty.inner_text().strip() == NASTY.strip()  # as text: no <b> element was made
    assert nasty.locator("b").count() == 0
    assert a.page.inner_text("#progress").startswith("0 of 6 labelled")
    a.page.locator("#overview > summary").click()
    assert a.page.locator("#overview svg.chart").first.is_visible()
    a.page.wait_for_timeout(200)
    assert a.problems() == []


@needs_browser
def test_keyboard_labels_filters_export_and_reload(audit: Any) -> None:
    a = audit()
    a.page.fill("#reviewer", 'Ada "QA", Lovelace')
    a.page.locator("#reviewer").press("Escape")
    a.page.keyboard.press("j")
    assert "current" in (a.card("doc-0").get_attribute("class") or "")
    a.page.keyboard.press("1")
    assert a.card("doc-0").get_attribute("data-label") == "on_theme"
    assert a.card("doc-0").locator(".chip").inner_text() == "honesty: On theme"
    a.page.keyboard.press("j")
    a.page.keyboard.press("2")
    assert a.card("doc-1").get_attribute("data-label") == "off_theme"
    a.page.keyboard.press("t")  # keys now label the first theme, honesty, whatever the stream ...
    a.page.keyboard.press("t")  # ... then cooperation
    a.page.keyboard.press("3")
    assert a.card("doc-1").locator(".label-bar strong").inner_text() == "cooperation"
    a.page.keyboard.press("t")  # ai_risk
    a.page.keyboard.press("t")  # back to each card's stream theme
    assert a.page.input_value("#key-theme") == ""
    assert a.page.inner_text("#progress").startswith("2 of 6 labelled")

    a.page.select_option("#f-stream", "cooperation")
    shown = a.page.eval_on_selector_all(".card:not([hidden])", "els => els.map(e => e.dataset.stream)")
    assert shown == ["cooperation"] * 3
    assert a.card("doc-0").is_hidden()
    a.page.keyboard.press("j")  # from doc-1 (now hidden) to the next shown card
    a.page.keyboard.press("3")
    assert a.card("doc-3").get_attribute("data-label") == "unsure"
    a.page.click("#clear-filters")
    assert a.page.locator(".card:not([hidden])").count() == 6

    rows = a.export()
    assert rows[0] == list(CSV_HEADER)
    got = [(r[0], r[1], r[2], r[3]) for r in rows[1:]]
    reviewer = 'Ada "QA", Lovelace'
    assert got == [
        ("doc-0", "honesty", "on_theme", reviewer),
        ("doc-1", "honesty", "off_theme", reviewer),
        ("doc-1", "cooperation", "unsure", reviewer),
        ("doc-3", "cooperation", "unsure", reviewer),
    ]
    assert all(re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z", r[4]) for r in rows[1:])

    a.page.reload()
    a.page.wait_for_selector(".card")
    assert a.card("doc-0").get_attribute("data-label") == "on_theme"
    assert a.card("doc-1").get_attribute("data-label") == "off_theme"
    assert a.card("doc-3").get_attribute("data-label") == "unsure"
    assert a.page.input_value("#reviewer") == reviewer
    assert a.page.inner_text("#progress").startswith("3 of 6 labelled")
    a.page.click("#export")  # the button exports too, the same rows after the reload
    assert [r[:4] for r in a.export()[1:]] == [list(g) for g in got]
    a.card("doc-0").locator("button.on_theme").click()  # clicking a pressed label clears it
    assert a.card("doc-0").get_attribute("data-label") is None
    a.card("doc-4").locator("button.unsure").click()
    assert a.card("doc-4").get_attribute("data-label") == "unsure"
    assert a.problems() == []


@needs_browser
def test_long_text_folds_and_expands(audit: Any) -> None:
    a = audit()
    text = a.card("doc-3").locator(".doc-text")
    folded = text.inner_text()
    assert 1200 < len(folded) < 1600 and folded.rstrip().endswith("…")
    assert "(1 below the fold)" in a.card("doc-3").locator(".fold-row").inner_text()
    a.card("doc-3").locator("button.fold").click()
    assert text.inner_text() == LONG
    assert text.locator("mark.p").count() == 2  # both passages highlighted once unfolded
    assert a.card("doc-3").locator("button.fold").inner_text() == "Show less"
    a.page.keyboard.press("o")  # the card is current now; o folds it again
    assert len(text.inner_text()) < 1600
    assert a.card("doc-0").locator("button.fold").count() == 0  # short texts have no toggle


@needs_browser
def test_passages_help_and_seeds(audit: Any) -> None:
    a = audit()
    marks = a.card("doc-1").locator("mark.p")
    assert marks.count() == 1 and marks.inner_text() == NASTY[:8]
    seeds = a.card("doc-0").locator("details.seeds")
    assert seeds.get_attribute("open") is None
    a.page.keyboard.press("j")
    a.page.keyboard.press("s")
    assert seeds.get_attribute("open") == ""
    assert seeds.locator(".seed").count() == 3
    a.page.keyboard.press("?")
    assert a.page.locator("#help").is_visible()
    a.page.keyboard.press("Escape")
    assert a.page.locator("#help").is_hidden()
    assert a.problems() == []


@needs_browser
def test_astral_characters_keep_passage_offsets(tmp_path: Path, browser: Any) -> None:
    """Python offsets count code points; a passage after an emoji must still cover the same characters."""
    data = synthetic()
    text = "🙂🙂 prefix. The honest passage. Tail."
    start = text.index("The honest")
    data["documents"] = [
        _doc(
            0,
            "honesty",
            "selected",
            "top",
            text,
            passages=[{"start": start, "end": start + 18, "score": 1.0}],
        )
    ]
    a = Page(browser, render_page(tmp_path, data).as_uri())
    try:
        assert a.card("doc-0").locator("mark.p").inner_text() == "The honest passage"
    finally:
        a.context.close()


@needs_browser
def test_two_audits_keep_separate_labels(tmp_path: Path, browser: Any) -> None:
    """Labels are stored per manifest and seed: a page re-rendered for another seed starts unlabelled."""
    data = synthetic()
    url = render_page(tmp_path, data).as_uri()
    context = browser.new_context()
    try:
        page = context.new_page()
        page.goto(url)
        page.keyboard.press("j")
        page.keyboard.press("1")
        assert page.locator('[data-doc-id="doc-0"]').get_attribute("data-label") == "on_theme"
        data["seed"] = 8
        render_page(tmp_path, data)  # same file, another audit
        page.reload()
        page.wait_for_selector(".card")
        assert page.locator(".card[data-label]").count() == 0
        data["seed"] = 7
        render_page(tmp_path, data)
        page.reload()
        page.wait_for_selector(".card")
        assert page.locator('[data-doc-id="doc-0"]').get_attribute("data-label") == "on_theme"
    finally:
        context.close()
