"""The audit review page: `render_page(out_dir, data)` writes `out_dir/index.html` and returns its path.

The page is one self-contained file (no network, no external scripts, styles or fonts; it works from
`file://`). The audit `data` (built by `selector.audit.report`) is embedded as JSON in a
`<script type="application/json" id="audit-data">` tag with `<`, `>`, `&`, U+2028 and U+2029 escaped, so
document texts holding `</script>`, HTML or any Unicode stay data; the page's script renders every document
text with `textContent`. A Content-Security-Policy allows only the page's own script and style (by hash) and
`data:` images, so nothing on the page can reach the network.

What a reviewer gets: one card per document (`data-doc-id`, `data-stream`, `data-bucket`, `data-kind`
attributes; `data-label` holds the card's label for its stream theme once it has one) with the text (folded
beyond ~1500 characters), passages that drove the stream theme's score highlighted (stronger for higher
scores), URL and source:row, scores against thresholds, fastText and embedding evidence, nearest seed
exemplars (collapsed), repeats, weight and reason; filters by stream, bucket, kind and label state; keys
j/k (or arrows) to move, 1/2/3 to label on_theme/off_theme/unsure, 0 to clear, t to cycle the labelled theme,
n for the next unlabelled card, o to unfold, s for the seeds, e to export, ? for help. Labels live in
`localStorage` under `selector-audit:v1:<manifest>#<seed>` and are exported as `labels.csv` with the header
`doc_id,theme,label,reviewer,time` (the reviewer name at export time; the time each label was given, ISO-8601
UTC). The pictures (score distributions, tokens by domain, yield curves, repetition against the cap) are
inline SVG drawn here at render time.

The page's HTML template, CSS and JavaScript are package data in `selector/audit/assets/` (`page.html`,
`page.css`, `page.js`, read with `importlib.resources`), edited and checked as the files they are; this module
fills the template and inlines them. The charts stay in Python: drawn at render time into the one static
file, they need no charting library, no extra dependency and no script to run before they show.
"""

from __future__ import annotations

import base64
import functools
import hashlib
import html
import json
import math
import os
import re
from collections.abc import Callable
from importlib import resources
from pathlib import Path
from typing import Any

from selector.core.errors import SelectorError

PAGE_FILE = "index.html"
STORAGE_PREFIX = "selector-audit:v1:"
LABELS = ("on_theme", "off_theme", "unsure")
CSV_HEADER = ("doc_id", "theme", "label", "reviewer", "time")
FOLD_CHARS = 1500
_DOC_KEYS = ("doc_id", "stream", "text")
ASSETS = "assets"  # selector/audit/assets: page.html, page.css, page.js


def render_page(out_dir: Path, data: dict[str, Any]) -> Path:
    """Write the review page for the audit `data` to `out_dir/index.html` (atomically) and return its path."""
    clean = _validate(data)
    page = build_html(clean)
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    path = out_dir / PAGE_FILE
    tmp = out_dir / f".{PAGE_FILE}.tmp"
    tmp.write_text(page, encoding="utf-8")
    os.replace(tmp, path)
    return path


def build_html(data: dict[str, Any]) -> str:
    """The page's HTML for already validated, JSON-plain `data`."""
    template, style, script = _page_parts()
    charts = render_charts(data)
    csp = (
        "default-src 'none'; "
        f"script-src '{_sha256(script)}'; "
        f"style-src '{_sha256(style)}'; "
        "img-src data:; base-uri 'none'; form-action 'none'"
    )
    values = {
        "CSP": html.escape(csp, quote=False).replace('"', "&quot;"),
        "TITLE": html.escape(str(data.get("title") or "selector audit")),
        "STYLE": style,
        "SCRIPT": script,
        "CHARTS": charts,
        "DATA": embed_json(data),
    }
    return re.sub(r"@@([A-Z]+)@@", lambda m: values[m.group(1)], template)


def embed_json(obj: Any) -> str:
    """`obj` as JSON that is safe inside a `<script>` element: no `<`, `>`, `&`, U+2028 or U+2029 appear raw."""
    s = json.dumps(obj, ensure_ascii=False, allow_nan=False, separators=(",", ":"))
    for ch, esc in (
        ("<", "\\u003c"),
        (">", "\\u003e"),
        ("&", "\\u0026"),
        ("\u2028", "\\u2028"),
        ("\u2029", "\\u2029"),
    ):
        s = s.replace(ch, esc)
    return s


def asset(name: str) -> str:
    """The text of one of the page's files in the package's `assets` folder (`page.html`, `page.css`, `page.js`)."""
    return (resources.files("selector.audit") / ASSETS / name).read_text(encoding="utf-8")


@functools.cache
def _page_parts() -> tuple[str, str, str]:
    """The page's template and its style and script exactly as they are inlined (and hashed for the CSP).

    The template's `@@NAME@@` placeholders are filled by `build_html`; the script's `__FOLD__` and `__PREFIX__`
    (valid JavaScript as they stand) become `FOLD_CHARS` and `STORAGE_PREFIX`. Style and script start on a new
    line after their opening tag.
    """
    script = asset("page.js").replace("__FOLD__", str(FOLD_CHARS)).replace("__PREFIX__", STORAGE_PREFIX)
    return asset("page.html"), "\n" + asset("page.css"), "\n" + script


def _sha256(text: str) -> str:
    return "sha256-" + base64.b64encode(hashlib.sha256(text.encode("utf-8")).digest()).decode("ascii")


# ----------------------------------------------------------------------------------------------------------
# validation: the data must be JSON-plain; numpy scalars become Python numbers, NaN and inf become null


def _validate(data: dict[str, Any]) -> dict[str, Any]:
    if not isinstance(data, dict):
        raise SelectorError(f"audit page data must be a dict, got {type(data).__name__}")
    clean = _plain(data, "data")
    docs = clean.get("documents")
    if not isinstance(docs, list):
        raise SelectorError(
            f'audit page data has no "documents" list (found {type(docs).__name__}). '
            f"Keys found: {', '.join(sorted(clean))}."
        )
    for i, d in enumerate(docs):
        if not isinstance(d, dict):
            raise SelectorError(f"audit page data: documents[{i}] must be an object, got {type(d).__name__}")
        missing = [k for k in _DOC_KEYS if d.get(k) is None]
        if missing:
            raise SelectorError(
                f"audit page data: documents[{i}] has no {', '.join(missing)}. Keys found: {', '.join(sorted(d))}."
            )
        if not isinstance(d["text"], str):
            raise SelectorError(
                f"audit page data: documents[{i}].text must be a string, got {type(d['text']).__name__}"
            )
    themes = clean.get("themes")
    if not isinstance(themes, list) or not all(isinstance(t, str) for t in themes):
        raise SelectorError(f'audit page data: "themes" must be a list of theme names, got {themes!r}')
    return clean


def _plain(obj: Any, where: str) -> Any:
    if obj is None or isinstance(obj, bool | int):
        return obj
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    if isinstance(obj, str):
        return _valid_unicode(obj)
    if isinstance(obj, dict):
        return {str(k): _plain(v, f"{where}.{k}") for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [_plain(v, f"{where}[{i}]") for i, v in enumerate(obj)]
    item = getattr(obj, "item", None)  # numpy scalars
    if callable(item) and getattr(obj, "ndim", None) == 0:
        return _plain(item(), where)
    tolist = getattr(obj, "tolist", None)  # numpy arrays
    if callable(tolist):
        return _plain(tolist(), where)
    raise SelectorError(
        f"audit page data: {where} is a {type(obj).__name__}, which cannot be written as JSON"
    )


def _valid_unicode(s: str) -> str:
    """`s`, with lone surrogates (which UTF-8 cannot encode) replaced by U+FFFD."""
    try:
        s.encode("utf-8")
        return s
    except UnicodeEncodeError:
        return s.encode("utf-16", "surrogatepass").decode("utf-16", "replace")


# ----------------------------------------------------------------------------------------------------------
# pictures: inline SVG, styled by the page's CSS classes (no style attributes: the CSP allows none)


def render_charts(data: dict[str, Any]) -> str:
    """The Overview section's HTML: one group of SVG figures per kind of picture present in `data["charts"]`."""
    charts = data.get("charts") or {}
    order = _theme_order(data)
    groups: list[str] = []

    # (key in charts, one figure per theme or stream, title, caption)
    per_theme: list[tuple[str, Callable[[str, Any], str], str, str]] = [
        (
            "score_hist",
            _score_hist_svg,
            "Score distribution",
            "All scored documents by theme score; counts on a log scale; darker bars are at or above the "
            "threshold (dashed).",
        ),
        (
            "tokens_by_domain",
            _domain_svg,
            "Selected tokens by source domain",
            "Tokens each stream takes from a domain, repeats included.",
        ),
        (
            "yield",
            _yield_svg,
            "Yield",
            "Unique tokens of the documents scoring at or above a threshold; the dot is the current threshold.",
        ),
    ]
    for key, draw, title, caption in per_theme:
        part = charts.get(key) or {}
        groups.append(_group(title, caption, [draw(t, part[t]) for t in _ordered(part, order)]))
    rep = [r for r in charts.get("repetition") or [] if isinstance(r, dict)]
    figs = [_repetition_svg(rep)] if rep else []
    figs += [_repeats_hist_svg(r) for r in rep if r.get("repeats_hist")]
    groups.append(
        _group(
            "Repetition against the cap",
            "Epochs (selected tokens with repeats / unique tokens) and effective epochs per stream; the dashed "
            "line is the repeat cap. Then documents by how often each is repeated.",
            figs,
        )
    )
    return "\n".join(groups)


def _theme_order(data: dict[str, Any]) -> list[str]:
    out: list[str] = []
    for key in ("themes", "upsampled", "stance"):
        for t in data.get(key) or []:
            if isinstance(t, str) and t not in out:
                out.append(t)
    return out


def _ordered(d: dict[str, Any], order: list[str]) -> list[str]:
    return [t for t in order if t in d] + sorted(t for t in d if t not in order)


def _group(title: str, note: str, figures: list[str]) -> str:
    body = (
        '<div class="chart-grid">' + "".join(f"<figure>{f}</figure>" for f in figures) + "</div>"
        if figures
        else '<p class="chart-empty">No data for this picture in the audit.</p>'
    )
    return (
        f'<section class="chart-group"><h3>{html.escape(title)}</h3>'
        f'<p class="chart-note">{html.escape(note)}</p>{body}</section>'
    )


def fmt_count(x: float) -> str:
    """A count in a few characters: 950, 12.3k, 4.5M, 1.2B."""
    a = abs(x)
    for div, suffix in ((1e9, "B"), (1e6, "M"), (1e3, "k")):
        if a >= div:
            v = x / div
            s = f"{v:.1f}" if abs(v) < 100 else f"{v:.0f}"
            return s.removesuffix(".0") + suffix
    return f"{x:.0f}" if float(x).is_integer() else f"{x:.2g}"


def _fmt_tick(v: float) -> str:
    return f"{v:.2f}".rstrip("0").rstrip(".") if v else "0"


def nice_ticks(lo: float, hi: float, n: int = 5) -> list[float]:
    """Round tick values covering [lo, hi] with about `n` steps (the last tick is >= hi)."""
    if not hi > lo:
        hi = lo + 1.0
    raw = (hi - lo) / n
    mag = 10 ** math.floor(math.log10(raw))
    step = next(m * mag for m in (1, 2, 2.5, 5, 10) if m * mag >= raw * (1 - 1e-9))
    start = math.floor(lo / step + 1e-9) * step
    ticks = []
    k = 0
    while True:
        v = round(start + k * step, 10)
        ticks.append(v)
        if v >= hi - step * 1e-9:
            return ticks
        k += 1


def _e(s: Any) -> str:
    return html.escape(str(s), quote=True)


def _f(x: float) -> str:
    return f"{x:.1f}"


def _num(x: Any, default: float = 0.0) -> float:
    return float(x) if isinstance(x, int | float) and not isinstance(x, bool) else default


def _svg(w: int, h: int, label: str, body: list[str]) -> str:
    return (
        f'<svg class="chart" viewBox="0 0 {w} {h}" width="{w}" height="{h}" role="img" aria-label="{_e(label)}">'
        + "".join(body)
        + "</svg>"
    )


def _title(x: float, text: str, sub: str = "", w: int = 0) -> list[str]:
    out = [f'<text class="c-title" x="{_f(x)}" y="16">{_e(text)}</text>']
    if sub:
        out.append(f'<text class="c-sub" x="{w - 12}" y="16" text-anchor="end">{_e(sub)}</text>')
    return out


def _score_hist_svg(theme: str, h: dict[str, Any]) -> str:
    edges = [_num(x) for x in h.get("edges") or []]
    counts = [max(0, int(_num(c))) for c in h.get("counts") or []]
    thr = h.get("threshold")
    w, ht, left, right, top, bottom = 440, 240, 54, 16, 30, 44
    pw, ph = w - left - right, ht - top - bottom
    if len(edges) != len(counts) + 1 or not counts:
        return _svg(
            w, 60, f"{theme}: no histogram", [*_title(left, theme), _note_text(left, 44, "no histogram")]
        )
    x0, x1 = edges[0], edges[-1]
    if not x1 > x0:
        x1 = x0 + 1.0
    cmax = max(counts) or 1
    ceiling = 10 ** math.ceil(math.log10(cmax))  # the log axis ends at a labelled power of ten
    lmax = math.log10(1 + ceiling)

    def sx(v: float) -> float:
        return left + (v - x0) / (x1 - x0) * pw

    def sy(c: float) -> float:
        return top + ph - math.log10(1 + c) / lmax * ph

    body = _title(left, theme, f"{sum(counts):,} documents", w)
    powers = [10**k for k in range(0, round(math.log10(ceiling)) + 1)]
    if len(powers) > 6:
        powers = powers[::2]
    for p in powers:
        y = sy(p)
        body.append(f'<line class="c-grid" x1="{left}" x2="{left + pw}" y1="{_f(y)}" y2="{_f(y)}"/>')
        body.append(
            f'<text class="c-tick" x="{left - 6}" y="{_f(y + 4)}" text-anchor="end">{fmt_count(p)}</text>'
        )
    thr_v = _num(thr, math.nan)
    for i, c in enumerate(counts):
        if c <= 0:
            continue
        a, b = sx(edges[i]), sx(edges[i + 1])
        y = sy(c)
        mid = (edges[i] + edges[i + 1]) / 2
        cls = "c-bar-on" if math.isfinite(thr_v) and mid >= thr_v else "c-bar"
        body.append(
            f'<rect class="{cls}" x="{_f(a + 0.5)}" y="{_f(y)}" width="{_f(max(b - a - 1, 0.5))}" '
            f'height="{_f(top + ph - y)}"><title>{_e(f"{edges[i]:.3g}–{edges[i + 1]:.3g}: {c:,} documents")}'
            "</title></rect>"
        )
    body += _x_axis(
        left, pw, top + ph, [(sx(v), _fmt_tick(v)) for v in nice_ticks(x0, x1) if x0 <= v <= x1 + 1e-9]
    )
    body.append(
        f'<text class="c-axis" x="{left + pw / 2:.1f}" y="{ht - 6}" text-anchor="middle">score</text>'
    )
    body.append(_y_label(14, top + ph / 2, "documents (log)"))
    if math.isfinite(thr_v):
        body += _vline(sx(min(max(thr_v, x0), x1)), top, top + ph, f"threshold {thr_v:.3f}", left, left + pw)
    return _svg(w, ht, f"{theme}: score distribution, threshold {thr}", body)


def _x_axis(left: float, pw: float, y: float, ticks: list[tuple[float, str]]) -> list[str]:
    out = [f'<line class="c-axisline" x1="{left}" x2="{_f(left + pw)}" y1="{_f(y)}" y2="{_f(y)}"/>']
    for x, label in ticks:
        out.append(f'<line class="c-axisline" x1="{_f(x)}" x2="{_f(x)}" y1="{_f(y)}" y2="{_f(y + 4)}"/>')
        out.append(
            f'<text class="c-tick" x="{_f(x)}" y="{_f(y + 17)}" text-anchor="middle">{_e(label)}</text>'
        )
    return out


def _y_label(x: float, y: float, text: str) -> str:
    return (
        f'<text class="c-axis" x="{_f(x)}" y="{_f(y)}" text-anchor="middle" '
        f'transform="rotate(-90 {_f(x)} {_f(y)})">{_e(text)}</text>'
    )


def _vline(x: float, y0: float, y1: float, label: str, xmin: float, xmax: float) -> list[str]:
    anchor, dx = ("end", -4) if x > xmin + (xmax - xmin) * 0.6 else ("start", 4)
    return [
        f'<line class="c-thr" x1="{_f(x)}" x2="{_f(x)}" y1="{_f(y0)}" y2="{_f(y1)}"/>',
        f'<text class="c-thr-label" x="{_f(x + dx)}" y="{_f(y0 + 11)}" text-anchor="{anchor}">{_e(label)}</text>',
    ]


def _note_text(x: float, y: float, text: str) -> str:
    return f'<text class="c-sub" x="{_f(x)}" y="{_f(y)}">{_e(text)}</text>'


def _short(s: str, n: int) -> str:
    return s if len(s) <= n else s[: n - 1] + "…"


def _domain_svg(stream: str, rows: list[Any]) -> str:
    pairs = [
        (str(r[0]) if r[0] is not None else "(no url)", _num(r[1]))
        for r in rows
        if isinstance(r, list | tuple) and len(r) >= 2
    ]
    left, right, top, row_h = 184, 52, 30, 20
    w = 440
    if not pairs:
        return _svg(
            w,
            60,
            f"{stream}: no selected tokens",
            [*_title(12, stream), _note_text(12, 44, "no selected tokens")],
        )
    ht = top + row_h * len(pairs) + 8
    pw = w - left - right
    vmax = max(v for _, v in pairs) or 1.0
    body = _title(12, stream, f"{fmt_count(sum(v for _, v in pairs))} tokens", w)
    for i, (name, v) in enumerate(pairs):
        y = top + i * row_h
        bw = max(v / vmax * pw, 1.0 if v > 0 else 0.0)
        cls = "c-bar-other" if name == "other" else "c-bar-on"
        body.append(
            f'<text class="c-tick" x="{left - 8}" y="{_f(y + 14)}" text-anchor="end">{_e(_short(name, 27))}'
            f"<title>{_e(name)}</title></text>"
        )
        body.append(
            f'<rect class="{cls}" x="{left}" y="{_f(y + 3)}" width="{_f(bw)}" height="{row_h - 6}">'
            f"<title>{_e(f'{name}: {v:,.0f} tokens')}</title></rect>"
        )
        body.append(f'<text class="c-val" x="{_f(left + bw + 5)}" y="{_f(y + 14)}">{fmt_count(v)}</text>')
    return _svg(w, ht, f"{stream}: selected tokens by source domain", body)


def _yield_svg(theme: str, y: dict[str, Any]) -> str:
    pts = sorted(
        (_num(t), _num(k)) for t, k in zip(y.get("thresholds") or [], y.get("tokens") or [], strict=False)
    )
    w, ht, left, right, top, bottom = 440, 240, 58, 16, 30, 44
    pw, ph = w - left - right, ht - top - bottom
    if len(pts) < 2:
        return _svg(
            w, 60, f"{theme}: no yield curve", [*_title(left, theme), _note_text(left, 44, "no yield curve")]
        )
    x0, x1 = pts[0][0], pts[-1][0]
    if not x1 > x0:
        x1 = x0 + 1.0
    yt = nice_ticks(0, max(k for _, k in pts) or 1.0, 4)
    ymax = yt[-1]

    def sx(v: float) -> float:
        return left + (v - x0) / (x1 - x0) * pw

    def sy(v: float) -> float:
        return top + ph - v / ymax * ph

    body = _title(left, theme)
    for v in yt:
        body.append(f'<line class="c-grid" x1="{left}" x2="{left + pw}" y1="{_f(sy(v))}" y2="{_f(sy(v))}"/>')
        body.append(
            f'<text class="c-tick" x="{left - 6}" y="{_f(sy(v) + 4)}" text-anchor="end">{fmt_count(v)}</text>'
        )
    line = " ".join(f"{_f(sx(t))},{_f(sy(k))}" for t, k in pts)
    area = f"{_f(sx(pts[0][0]))},{_f(sy(0))} {line} {_f(sx(pts[-1][0]))},{_f(sy(0))}"
    body.append(f'<polygon class="c-area" points="{area}"/>')
    body.append(f'<polyline class="c-line" points="{line}"/>')
    body += _x_axis(
        left, pw, top + ph, [(sx(v), _fmt_tick(v)) for v in nice_ticks(x0, x1) if x0 <= v <= x1 + 1e-9]
    )
    body.append(
        f'<text class="c-axis" x="{left + pw / 2:.1f}" y="{ht - 6}" text-anchor="middle">threshold</text>'
    )
    body.append(_y_label(14, top + ph / 2, "unique tokens"))
    cur = _num(y.get("current"), math.nan)
    if math.isfinite(cur):
        k = _interp(pts, cur)
        cx = sx(min(max(cur, x0), x1))
        body += _vline(cx, top, top + ph, f"{cur:.3f}: {fmt_count(k)} tokens", left, left + pw)
        body.append(f'<circle class="c-dot" cx="{_f(cx)}" cy="{_f(sy(k))}" r="4"/>')
        body[0:1] = _title(left, theme, f"now {fmt_count(k)} unique tokens", w)
    return _svg(w, ht, f"{theme}: unique tokens against threshold", body)


def _interp(pts: list[tuple[float, float]], x: float) -> float:
    if x <= pts[0][0]:
        return pts[0][1]
    for (a, ya), (b, yb) in zip(pts, pts[1:], strict=False):
        if a <= x <= b:
            return ya if b == a else ya + (yb - ya) * (x - a) / (b - a)
    return pts[-1][1]


def _repetition_svg(rep: list[dict[str, Any]]) -> str:
    n = len(rep)
    left, right, top, bottom = 46, 16, 48, 40
    group = 110
    w = max(440, left + right + group * n)
    ht = 250
    pw, ph = w - left - right, ht - top - bottom
    vals = [max(_num(r.get("epochs")), _num(r.get("effective_epochs")), _num(r.get("cap"))) for r in rep]
    yt = nice_ticks(0, max(vals) * 1.08 or 1.0, 4)
    ymax = yt[-1]

    def sy(v: float) -> float:
        return top + ph - v / ymax * ph

    body = _title(left, "epochs per stream")
    body.append(f'<rect class="c-bar-on" x="{left}" y="26" width="12" height="10"/>')
    body.append(f'<text class="c-tick" x="{left + 16}" y="35">epochs</text>')
    body.append(f'<rect class="c-bar" x="{left + 76}" y="26" width="12" height="10"/>')
    body.append(f'<text class="c-tick" x="{left + 92}" y="35">effective epochs</text>')
    body.append(f'<line class="c-thr" x1="{left + 208}" x2="{left + 228}" y1="31" y2="31"/>')
    body.append(f'<text class="c-tick" x="{left + 232}" y="35">cap</text>')
    for v in yt:
        body.append(f'<line class="c-grid" x1="{left}" x2="{left + pw}" y1="{_f(sy(v))}" y2="{_f(sy(v))}"/>')
        body.append(
            f'<text class="c-tick" x="{left - 6}" y="{_f(sy(v) + 4)}" text-anchor="end">{_fmt_tick(v)}</text>'
        )
    gw = pw / n
    bar = min(30.0, gw / 3)
    for i, r in enumerate(rep):
        gx = left + i * gw + gw / 2
        for j, (key, cls) in enumerate((("epochs", "c-bar-on"), ("effective_epochs", "c-bar"))):
            v = _num(r.get(key))
            tip = f"{r.get('stream')}: {key.replace('_', ' ')} {v:.2f}"
            x = gx - bar - 2 + j * (bar + 4)
            body.append(
                f'<rect class="{cls}" x="{_f(x)}" y="{_f(sy(v))}" width="{_f(bar)}" height="{_f(top + ph - sy(v))}">'
                f"<title>{_e(tip)}</title></rect>"
            )
            body.append(
                f'<text class="c-val" x="{_f(x + bar / 2)}" y="{_f(sy(v) - 4)}" text-anchor="middle">{v:.2f}</text>'
            )
        cap = _num(r.get("cap"), math.nan)
        if math.isfinite(cap):
            body.append(
                f'<line class="c-thr" x1="{_f(gx - gw / 2 + 8)}" x2="{_f(gx + gw / 2 - 8)}" '
                f'y1="{_f(sy(cap))}" y2="{_f(sy(cap))}"><title>cap {cap:g}</title></line>'
            )
        body.append(
            f'<text class="c-tick" x="{_f(gx)}" y="{_f(top + ph + 17)}" text-anchor="middle">'
            f"{_e(_short(str(r.get('stream', '')), 16))}</text>"
        )
    body.append(f'<line class="c-axisline" x1="{left}" x2="{left + pw}" y1="{top + ph}" y2="{top + ph}"/>')
    body.append(_y_label(14, top + ph / 2, "epochs"))
    return _svg(w, ht, "epochs and effective epochs per stream against the repeat cap", body)


def _repeats_hist_svg(r: dict[str, Any]) -> str:
    stream = str(r.get("stream", ""))
    hist = r.get("repeats_hist") or {}
    items = sorted(((int(_num(_to_float(k))), int(_num(v))) for k, v in hist.items()), key=lambda kv: kv[0])
    cap = _num(r.get("cap"), math.nan)
    w, ht, left, right, top, bottom = 440, 200, 46, 16, 30, 40
    pw, ph = w - left - right, ht - top - bottom
    cmax = max((c for _, c in items), default=1) or 1
    yt = nice_ticks(0, cmax * 1.12, 4)
    ymax = yt[-1]

    def sy(v: float) -> float:
        return top + ph - v / ymax * ph

    at_cap = sum(c for k, c in items if math.isfinite(cap) and k >= cap)
    body = _title(
        left, f"{stream}: documents by repeats", f"{at_cap:,} at the cap" if math.isfinite(cap) else "", w
    )
    for v in yt:
        body.append(f'<line class="c-grid" x1="{left}" x2="{left + pw}" y1="{_f(sy(v))}" y2="{_f(sy(v))}"/>')
        body.append(
            f'<text class="c-tick" x="{left - 6}" y="{_f(sy(v) + 4)}" text-anchor="end">{fmt_count(v)}</text>'
        )
    slot = pw / max(len(items), 1)
    bar = min(44.0, slot * 0.7)
    for i, (k, c) in enumerate(items):
        cx = left + slot * i + slot / 2
        cls = "c-bar-cap" if math.isfinite(cap) and k >= cap else "c-bar-on"
        body.append(
            f'<rect class="{cls}" x="{_f(cx - bar / 2)}" y="{_f(sy(c))}" width="{_f(bar)}" height="{_f(top + ph - sy(c))}">'
            f"<title>{_e(f'{c:,} documents repeated {k}×')}</title></rect>"
        )
        body.append(f'<text class="c-val" x="{_f(cx)}" y="{_f(sy(c) - 4)}" text-anchor="middle">{c:,}</text>')
        body.append(
            f'<text class="c-tick" x="{_f(cx)}" y="{_f(top + ph + 17)}" text-anchor="middle">{k}×</text>'
        )
    body.append(f'<line class="c-axisline" x1="{left}" x2="{left + pw}" y1="{top + ph}" y2="{top + ph}"/>')
    body.append(
        f'<text class="c-axis" x="{left + pw / 2:.1f}" y="{ht - 6}" text-anchor="middle">repeats</text>'
    )
    body.append(_y_label(14, top + ph / 2, "documents"))
    return _svg(w, ht, f"{stream}: documents by number of repeats", body)


def _to_float(s: Any) -> float:
    try:
        return float(s)
    except (TypeError, ValueError):
        return 0.0


# Debian's Chromium, headless, as the browser tests and scripts/audit_screenshot.py drive it: the background
# networking flags keep it from calling out on a closed network
CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
