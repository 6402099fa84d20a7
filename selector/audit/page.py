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
"""

from __future__ import annotations

import base64
import hashlib
import html
import json
import math
import os
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

from selector.core.errors import SelectorError

PAGE_FILE = "index.html"
STORAGE_PREFIX = "selector-audit:v1:"
LABELS = ("on_theme", "off_theme", "unsure")
CSV_HEADER = ("doc_id", "theme", "label", "reviewer", "time")
FOLD_CHARS = 1500
_DOC_KEYS = ("doc_id", "stream", "text")


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
    charts = render_charts(data)
    csp = (
        "default-src 'none'; "
        f"script-src '{_sha256(_SCRIPT)}'; "
        f"style-src '{_sha256(_STYLE)}'; "
        "img-src data:; base-uri 'none'; form-action 'none'"
    )
    values = {
        "CSP": html.escape(csp, quote=False).replace('"', "&quot;"),
        "TITLE": html.escape(str(data.get("title") or "selector audit")),
        "STYLE": _STYLE,
        "SCRIPT": _SCRIPT,
        "CHARTS": charts,
        "DATA": embed_json(data),
    }
    return re.sub(r"@@([A-Z]+)@@", lambda m: values[m.group(1)], _TEMPLATE)


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


# ----------------------------------------------------------------------------------------------------------
# the page: template, style and script (the script renders the cards from the embedded data)

_TEMPLATE = """<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<meta http-equiv="Content-Security-Policy" content="@@CSP@@">
<meta name="color-scheme" content="light">
<link rel="icon" href="data:,">
<title>@@TITLE@@</title>
<style>@@STYLE@@</style>
</head>
<body>
<header class="page-head">
  <div class="wrap head-row">
    <div class="head-main">
      <h1>@@TITLE@@</h1>
      <p class="meta" id="meta"></p>
      <p class="hint" id="hint"></p>
      <div class="precision" id="precision" hidden></div>
    </div>
    <div class="head-side">
      <label class="reviewer">Reviewer <input id="reviewer" type="text" name="reviewer" autocomplete="name"
        placeholder="your name" spellcheck="false"></label>
      <p class="head-help"><button type="button" class="link" id="help-button">Keyboard shortcuts</button>
        <kbd>?</kbd></p>
      <p class="storage-warning" id="storage-warning" hidden></p>
    </div>
  </div>
</header>
<div class="wrap">
  <details class="overview" id="overview">
    <summary>Overview <span class="summary-note">score distributions, tokens by domain, yield, repetition</span>
    </summary>
    <div class="overview-body">
@@CHARTS@@
    </div>
  </details>
</div>
<nav class="toolbar" id="toolbar" aria-label="Filters and progress">
  <div class="wrap toolbar-row">
    <select id="f-stream" aria-label="stream theme"></select>
    <select id="f-bucket" aria-label="score bucket"></select>
    <select id="f-kind" aria-label="kind"></select>
    <select id="f-state" aria-label="label state"></select>
    <label class="key-theme" title="the theme that 1/2/3 label (t cycles it)">Keys <select id="key-theme"></select></label>
    <button type="button" class="link" id="clear-filters" hidden title="show every card">Clear</button>
    <span class="spacer"></span>
    <span class="progress" id="progress" aria-live="polite"></span>
    <button type="button" id="export" title="Download labels.csv (e)">Export labels.csv</button>
  </div>
</nav>
<main class="wrap" id="cards"></main>
<div class="toast" id="toast" role="status" aria-live="polite"></div>
<div class="overlay" id="help" hidden>
  <div class="dialog" role="dialog" aria-modal="true" aria-labelledby="help-title">
    <h2 id="help-title">Keyboard shortcuts</h2>
    <table class="keys">
      <tr><td><kbd>j</kbd> <kbd>&darr;</kbd></td><td>next card</td></tr>
      <tr><td><kbd>k</kbd> <kbd>&uarr;</kbd></td><td>previous card</td></tr>
      <tr><td><kbd>n</kbd></td><td>next unlabelled card</td></tr>
      <tr><td><kbd>1</kbd></td><td>on theme</td></tr>
      <tr><td><kbd>2</kbd></td><td>off theme</td></tr>
      <tr><td><kbd>3</kbd></td><td>unsure</td></tr>
      <tr><td><kbd>0</kbd></td><td>clear the label</td></tr>
      <tr><td><kbd>t</kbd> <kbd>T</kbd></td><td>cycle the theme the keys label (default: the card&rsquo;s stream
        theme)</td></tr>
      <tr><td><kbd>o</kbd></td><td>show all / fold the text</td></tr>
      <tr><td><kbd>s</kbd></td><td>show / hide the nearest seed exemplars</td></tr>
      <tr><td><kbd>e</kbd></td><td>export labels.csv</td></tr>
      <tr><td><kbd>?</kbd></td><td>this help</td></tr>
      <tr><td><kbd>Esc</kbd></td><td>close this help; leave a text field</td></tr>
    </table>
    <p class="help-note">Labels are saved in this browser as you go (per manifest and seed) and survive a
      reload. Export them to <code>labels.csv</code> and pass it to <code>selector audit --labels</code>.</p>
    <button type="button" id="help-close">Close</button>
  </div>
</div>
<script type="application/json" id="audit-data">@@DATA@@</script>
<script>@@SCRIPT@@</script>
</body>
</html>
"""

_STYLE = """
:root {
  --bg: #f6f5f1; --card: #ffffff; --ink: #1f2328; --muted: #5b636d; --faint: #8a9199; --line: #e2dfd8;
  --accent: #2f5f8f; --accent-soft: #e7eef6; --warn: #8f3b12; --warn-soft: #fbeee4;
  --on: #1d6b35; --on-soft: #e3f2e7; --off: #a1261b; --off-soft: #fbe9e7; --unsure: #6f5600; --unsure-soft: #f8f0d4;
  --thr: #b5531c; --bar: #a9bfd6; --bar-on: #3f6f9f; --bar-other: #bdb8ad;
  --ui: system-ui, -apple-system, "Segoe UI", Roboto, "Noto Sans", "Helvetica Neue", Arial, sans-serif;
  --mono: ui-monospace, "SFMono-Regular", Menlo, Consolas, "DejaVu Sans Mono", monospace;
}
* { box-sizing: border-box; }
html { background: var(--bg); }
body { margin: 0; color: var(--ink); font: 15px/1.5 var(--ui); -webkit-font-smoothing: antialiased; }
.wrap { max-width: 1240px; margin: 0 auto; padding: 0 24px; }
a { color: var(--accent); }
code, .mono { font-family: var(--mono); font-size: 0.9em; }
button, select, input { font: inherit; color: inherit; }
button { background: var(--card); border: 1px solid #cfcac0; border-radius: 6px; padding: 4px 11px;
  cursor: pointer; }
button:hover { border-color: var(--muted); }
button:focus-visible, select:focus-visible, input:focus-visible, summary:focus-visible, a:focus-visible {
  outline: 2px solid var(--accent); outline-offset: 2px; }
button.link { border: none; background: none; color: var(--accent); padding: 2px 4px; text-decoration: underline; }
select, input[type=text] { background: var(--card); border: 1px solid #cfcac0; border-radius: 6px; padding: 3px 6px; }
[hidden] { display: none !important; }

.page-head { background: var(--card); border-bottom: 1px solid var(--line); padding: 18px 0 14px; }
.head-row { display: flex; gap: 24px; align-items: flex-start; justify-content: space-between; }
h1 { font-size: 20px; font-weight: 600; margin: 0 0 4px; overflow-wrap: anywhere; }
.meta, .hint { margin: 2px 0; color: var(--muted); font-size: 13.5px; overflow-wrap: anywhere; }
.hint { color: var(--ink); }
.head-side { flex: none; text-align: right; }
.reviewer { color: var(--muted); font-size: 13.5px; }
.reviewer input { width: 180px; margin-left: 6px; }
.head-help { margin: 8px 0 0; font-size: 13px; color: var(--muted); }
.storage-warning { color: var(--warn); background: var(--warn-soft); padding: 6px 10px; border-radius: 6px;
  font-size: 13px; max-width: 320px; text-align: left; }
.precision { display: flex; flex-wrap: wrap; gap: 8px; margin-top: 8px; }
.precision .pill { background: var(--accent-soft); border-radius: 6px; padding: 3px 9px; font-size: 13.5px; }

.overview { margin: 16px 0 0; background: var(--card); border: 1px solid var(--line); border-radius: 8px; }
.overview > summary { cursor: pointer; padding: 10px 16px; font-weight: 600; }
.summary-note { font-weight: 400; color: var(--muted); margin-left: 6px; font-size: 13.5px; }
.overview-body { padding: 0 16px 12px; border-top: 1px solid var(--line); }
.chart-group h3 { font-size: 15px; margin: 16px 0 2px; }
.chart-note, .chart-empty { margin: 0 0 8px; color: var(--muted); font-size: 13px; }
.chart-grid { display: grid; grid-template-columns: repeat(auto-fill, minmax(440px, 1fr)); gap: 8px 20px; }
.chart-grid figure { margin: 0; }
svg.chart { max-width: 100%; height: auto; display: block; }
svg.chart text { font-family: var(--ui); }
.c-title { font-size: 13.5px; font-weight: 600; fill: var(--ink); }
.c-sub { font-size: 12px; fill: var(--muted); }
.c-tick, .c-axis { font-size: 11.5px; fill: var(--muted); }
.c-val { font-size: 11px; fill: var(--ink); }
.c-thr-label { font-size: 11.5px; fill: var(--thr); font-weight: 600; }
.c-grid { stroke: #ece9e2; stroke-width: 1; }
.c-axisline { stroke: #9c978d; stroke-width: 1; }
.c-bar { fill: var(--bar); }
.c-bar-on { fill: var(--bar-on); }
.c-bar-other { fill: var(--bar-other); }
.c-bar-cap { fill: var(--thr); }
.c-thr { stroke: var(--thr); stroke-width: 1.6; stroke-dasharray: 5 3; }
.c-line { fill: none; stroke: var(--bar-on); stroke-width: 2; }
.c-area { fill: var(--accent-soft); }
.c-dot { fill: var(--thr); stroke: #fff; stroke-width: 1.5; }

.toolbar { position: sticky; top: 0; z-index: 5; background: rgba(246, 245, 241, 0.96);
  border-bottom: 1px solid var(--line); margin-top: 16px; }
.toolbar-row { display: flex; flex-wrap: wrap; align-items: center; gap: 8px 10px; padding-top: 9px;
  padding-bottom: 9px; font-size: 13px; color: var(--muted); }
.toolbar select, .toolbar button { padding-top: 2px; padding-bottom: 2px; }
.toolbar select { color: var(--ink); }
.toolbar label select { margin-left: 5px; }
.toolbar select.active { border-color: var(--accent); background: var(--accent-soft); }
.spacer { flex: 1; }
.progress { color: var(--ink); font-variant-numeric: tabular-nums; }
.progress .bar { display: inline-block; width: 56px; height: 6px; border-radius: 3px; background: var(--line);
  vertical-align: middle; margin-left: 8px; overflow: hidden; }
.progress .bar span { display: block; height: 100%; background: var(--on); width: 0; }

main { padding-top: 18px; padding-bottom: 50vh; }
.empty { color: var(--muted); padding: 40px 0; text-align: center; }
.card { background: var(--card); border: 1px solid var(--line); border-left: 4px solid var(--bar);
  border-radius: 8px; margin: 0 0 18px; padding: 14px 20px 12px; scroll-margin-top: 72px; }
.card.reject { border-left-color: var(--warn); }
.card.current { border-color: var(--accent); border-left-color: var(--accent); box-shadow: 0 0 0 3px var(--accent-soft); }
.card.reject.current { border-left-color: var(--warn); }
.card:focus { outline: none; }
.card-head { display: flex; flex-wrap: wrap; align-items: center; gap: 6px 10px; }
.pos { color: var(--faint); font-variant-numeric: tabular-nums; font-size: 13px; }
.badge { display: inline-block; border-radius: 5px; padding: 1px 8px; font-size: 12.5px; background: #efede8;
  color: var(--ink); }
.badge.stream { background: var(--accent-soft); color: var(--accent); font-weight: 600; }
.badge.reject-flag { background: var(--warn-soft); color: var(--warn); font-weight: 600; }
.doc-id { color: var(--muted); font-size: 12.5px; overflow-wrap: anywhere; }
.label-chips { margin-left: auto; display: flex; gap: 6px; flex-wrap: wrap; }
.chip { border-radius: 5px; padding: 1px 8px; font-size: 12.5px; font-weight: 600; }
.chip.on_theme { background: var(--on-soft); color: var(--on); }
.chip.off_theme { background: var(--off-soft); color: var(--off); }
.chip.unsure { background: var(--unsure-soft); color: var(--unsure); }
.source { margin: 6px 0 10px; color: var(--muted); font-size: 13px; overflow-wrap: anywhere; }
.source a { word-break: break-all; }
.card-body { display: grid; grid-template-columns: minmax(0, 70ch) minmax(300px, 1fr); gap: 24px; }
@media (max-width: 980px) { .card-body { grid-template-columns: minmax(0, 1fr); } }
.doc-text { font-size: 15.5px; line-height: 1.62; white-space: pre-wrap; overflow-wrap: anywhere; margin: 0; }
.doc-text .ellipsis { color: var(--faint); }
mark.p { background: rgba(240, 184, 40, var(--a, 0.35)); color: inherit; border-radius: 2px;
  box-shadow: 0 0 0 1px rgba(240, 184, 40, var(--a, 0.35)); }
.fold-row { margin: 8px 0 0; display: flex; gap: 12px; align-items: center; color: var(--muted); font-size: 13px; }
.fold-row button { flex: none; white-space: nowrap; }
.evidence { font-size: 13.5px; min-width: 0; }
.verdict { font-weight: 600; margin: 0 0 4px; }
.verdict.reject { color: var(--warn); }
.reason { color: var(--muted); margin: 0 0 10px; overflow-wrap: anywhere; }
table.scores { border-collapse: collapse; width: 100%; font-variant-numeric: tabular-nums; }
table.scores th { text-align: right; font-weight: 500; color: var(--faint); font-size: 12px; padding: 2px 4px;
  border-bottom: 1px solid var(--line); }
table.scores th:first-child, table.scores td:first-child { text-align: left; }
table.scores td { text-align: right; padding: 4px 4px; border-bottom: 1px solid #f0eee9; white-space: nowrap; }
table.scores tr.stream-row td { background: var(--accent-soft); font-weight: 600; }
table.scores td.above { color: var(--accent); font-weight: 600; }
.stance-tag { color: var(--faint); font-size: 11.5px; font-weight: 400; margin-left: 4px; }
.meter { position: relative; width: 64px; height: 6px; background: #ebe8e1; border-radius: 3px; display: inline-block;
  vertical-align: middle; margin-left: 6px; }
.meter .fill { position: absolute; left: 0; top: 0; bottom: 0; background: var(--bar); border-radius: 3px; }
.meter .fill.above { background: var(--bar-on); }
.meter .tick { position: absolute; top: -3px; bottom: -3px; width: 2px; background: var(--thr); }
.muted { color: var(--faint); }
details.seeds { margin-top: 10px; }
details.seeds > summary { cursor: pointer; color: var(--accent); }
details.seeds-other { margin-top: 6px; }
details.seeds-other > summary { cursor: pointer; color: var(--muted); }
.seed-theme { margin: 8px 0 2px; font-weight: 600; font-size: 12.5px; color: var(--muted); }
.seed { margin: 4px 0 8px; padding: 6px 10px; background: #faf9f6; border-left: 3px solid var(--line); border-radius: 4px; }
.seed .sim { font-variant-numeric: tabular-nums; font-weight: 600; }
.seed .seed-id { color: var(--faint); font-size: 12px; margin-left: 6px; overflow-wrap: anywhere; }
.seed .seed-text { margin-top: 3px; white-space: pre-wrap; overflow-wrap: anywhere; }
.seed.clamped .seed-text { display: -webkit-box; -webkit-box-orient: vertical; -webkit-line-clamp: 4; overflow: hidden;
  cursor: pointer; }
.seed .more { font-size: 12px; }
.label-bar { display: flex; flex-wrap: wrap; align-items: center; gap: 8px; margin-top: 12px; padding-top: 10px;
  border-top: 1px solid #f0eee9; font-size: 13.5px; color: var(--muted); }
.label-bar strong { color: var(--ink); }
.label-bar button kbd { font-size: 11px; margin-right: 4px; }
.label-bar button[aria-pressed=true].on_theme { background: var(--on-soft); border-color: var(--on); color: var(--on); }
.label-bar button[aria-pressed=true].off_theme { background: var(--off-soft); border-color: var(--off); color: var(--off); }
.label-bar button[aria-pressed=true].unsure { background: var(--unsure-soft); border-color: var(--unsure); color: var(--unsure); }
kbd { font-family: var(--mono); font-size: 12px; border: 1px solid #cfcac0; border-bottom-width: 2px;
  border-radius: 4px; padding: 0 5px; background: #faf9f6; color: var(--ink); }
.toast { position: fixed; left: 50%; bottom: 22px; transform: translateX(-50%); background: #2b3036; color: #fff;
  padding: 8px 16px; border-radius: 8px; font-size: 13.5px; opacity: 0; transition: opacity 0.2s;
  pointer-events: none; max-width: 80vw; }
.toast.show { opacity: 0.94; }
.overlay { position: fixed; inset: 0; background: rgba(30, 32, 36, 0.35); z-index: 10; display: flex;
  align-items: center; justify-content: center; }
.dialog { background: var(--card); border-radius: 10px; padding: 20px 26px; max-width: 520px; width: 92vw;
  box-shadow: 0 10px 40px rgba(0, 0, 0, 0.18); }
.dialog h2 { font-size: 17px; margin: 0 0 10px; }
table.keys td { padding: 3px 14px 3px 0; vertical-align: top; }
table.keys td:first-child { white-space: nowrap; }
.help-note { color: var(--muted); font-size: 13.5px; }
@media (prefers-reduced-motion: reduce) { .toast { transition: none; } }
"""

_SCRIPT = r"""
(function () {
  "use strict";
  var DATA = JSON.parse(document.getElementById("audit-data").textContent);
  var FOLD = __FOLD__;
  var LABELS = ["on_theme", "off_theme", "unsure"];
  var LABEL_TEXT = { on_theme: "On theme", off_theme: "Off theme", unsure: "Unsure" };
  var BUCKET_ORDER = ["top", "middle", "near threshold", "below threshold"];
  var docs = Array.isArray(DATA.documents) ? DATA.documents : [];
  var themes = uniq([].concat(DATA.themes || [], DATA.upsampled || [], DATA.stance || [],
    docs.map(function (d) { return d.stream; })));
  var stance = DATA.stance || [];
  var thresholds = DATA.thresholds || {};
  var storeKey = "__PREFIX__" + String(DATA.manifest) + "#" + String(DATA.seed);
  var reviewerKey = "__PREFIX__reviewer";

  function uniq(xs) {
    var out = [];
    xs.forEach(function (x) { if (typeof x === "string" && out.indexOf(x) < 0) out.push(x); });
    return out;
  }
  function $(id) { return document.getElementById(id); }
  function h(tag, attrs) {
    var el = document.createElement(tag);
    if (attrs) Object.keys(attrs).forEach(function (k) {
      var v = attrs[k];
      if (v === null || v === undefined || v === false) return;
      if (k === "class") el.className = v;
      else if (k === "text") el.textContent = String(v);
      else if (k.slice(0, 2) === "on") el.addEventListener(k.slice(2), v);
      else el.setAttribute(k, v === true ? "" : String(v));
    });
    for (var i = 2; i < arguments.length; i++) append(el, arguments[i]);
    return el;
  }
  function append(el, c) {
    if (c === null || c === undefined || c === false) return;
    if (Array.isArray(c)) { c.forEach(function (x) { append(el, x); }); return; }
    el.append(c instanceof Node ? c : document.createTextNode(String(c)));
  }
  function num(x) { return typeof x === "number" && isFinite(x) ? x : null; }
  function fmt(x, d) { var v = num(x); return v === null ? "\u2014" : v.toFixed(d === undefined ? 3 : d); }
  function fmtInt(x) { var v = num(x); return v === null ? "\u2014" : Math.round(v).toLocaleString("en-US"); }

  // ---- storage -------------------------------------------------------------------------------
  var storageOk = true;
  function storeGet(key) {
    try { return window.localStorage.getItem(key); } catch (e) { storageOk = false; return null; }
  }
  function storeSet(key, value) {
    try { window.localStorage.setItem(key, value); return true; } catch (e) { storageOk = false; return false; }
  }
  function loadState() {
    var s = null;
    try { s = JSON.parse(storeGet(storeKey) || "null"); } catch (e) { s = null; }
    if (!s || typeof s !== "object") s = {};
    if (!s.labels || typeof s.labels !== "object") s.labels = {};
    if (typeof s.reviewer !== "string") s.reviewer = storeGet(reviewerKey) || "";
    if (!s.filters || typeof s.filters !== "object") s.filters = {};
    return s;
  }
  var state = loadState();
  function save() {
    if (!storeSet(storeKey, JSON.stringify(state))) showStorageWarning();
  }
  function showStorageWarning() {
    var w = $("storage-warning");
    w.textContent = "This browser does not let the page save labels; they are lost on reload. Export often (e).";
    w.hidden = false;
  }

  // ---- header ------------------------------------------------------------------------------
  function renderHeader() {
    var parts = [];
    if (DATA.created_at) parts.push("manifest created " + DATA.created_at);
    if (DATA.manifest) parts.push(String(DATA.manifest));
    if (DATA.seed !== undefined && DATA.seed !== null) parts.push("seed " + DATA.seed);
    parts.push(docs.length + " documents");
    if (num(DATA.max_repeats) !== null) parts.push("repeat cap " + DATA.max_repeats);
    $("meta").textContent = parts.join(" \u00b7 ");
    var hint = [DATA.reviewer_hint, DATA.note].filter(Boolean).join(" ");
    $("hint").textContent = hint;
    $("hint").hidden = !hint;
    var prec = DATA.precision;
    if (prec && typeof prec === "object" && Object.keys(prec).length) {
      var box = $("precision");
      themes.concat(Object.keys(prec).filter(function (t) { return themes.indexOf(t) < 0; })).forEach(function (t) {
        var p = prec[t];
        if (!p) return;
        box.append(h("span", { class: "pill", title: p.on + " of " + p.labelled + " labelled on theme" },
          h("strong", { text: t }), " precision " + fmt(p.precision, 2) + " [" + fmt(p.low, 2) + ", " +
          fmt(p.high, 2) + "] \u00b7 n=" + p.labelled));
      });
      box.hidden = false;
    }
    var rev = $("reviewer");
    rev.value = state.reviewer;
    rev.addEventListener("input", function () {
      state.reviewer = rev.value;
      storeSet(reviewerKey, rev.value);
      save();
    });
  }

  // ---- text with highlighted passages ----------------------------------------------------------
  // Passage offsets count code points (Python); JavaScript strings index UTF-16 code units.
  function cpToUnit(text) {
    if (!/[\uD800-\uDBFF][\uDC00-\uDFFF]/.test(text)) return null;
    var map = [0], u = 0;
    for (var ch of text) { u += ch.length; map.push(u); }
    return map;
  }
  function segments(text, passages) {
    var n = text.length, map = cpToUnit(text);
    var conv = function (i) {
      i = Math.max(0, Math.floor(num(i) || 0));
      return map ? map[Math.min(i, map.length - 1)] : Math.min(i, n);
    };
    var ps = [];
    (passages || []).forEach(function (p) {
      if (!p) return;
      var s = conv(p.start), e = conv(p.end);
      if (e > s) ps.push({ s: s, e: e, score: num(p.score) === null ? 0 : p.score });
    });
    if (!ps.length) return { segs: [{ s: 0, e: n, score: null }], count: 0 };
    var lo = Math.min.apply(null, ps.map(function (p) { return p.score; }));
    var hi = Math.max.apply(null, ps.map(function (p) { return p.score; }));
    var cuts = [0, n];
    ps.forEach(function (p) { cuts.push(p.s, p.e); });
    cuts = uniqNum(cuts);
    var segs = [];
    for (var i = 0; i + 1 < cuts.length; i++) {
      var a = cuts[i], b = cuts[i + 1], best = null;
      ps.forEach(function (p) { if (p.s <= a && p.e >= b && (best === null || p.score > best)) best = p.score; });
      var last = segs[segs.length - 1];
      if (last && last.score === best && last.e === a) last.e = b;
      else segs.push({ s: a, e: b, score: best });
    }
    segs.forEach(function (sg) {
      if (sg.score !== null) sg.level = hi > lo ? (sg.score - lo) / (hi - lo) : 1;
    });
    return { segs: segs, count: ps.length, starts: ps.map(function (p) { return p.s; }) };
  }
  function uniqNum(xs) {
    return xs.sort(function (a, b) { return a - b; }).filter(function (x, i, a) { return i === 0 || x !== a[i - 1]; });
  }
  function foldCut(text) {
    if (text.length <= FOLD * 1.15) return text.length;
    var lo = FOLD - 250, window_ = text.slice(lo, FOLD), m = window_.search(/\s\S*$/);
    var cut = m >= 0 ? lo + m : FOLD;
    var c = text.charCodeAt(cut - 1);
    if (c >= 0xd800 && c <= 0xdbff) cut -= 1;
    return cut;
  }
  function renderText(el, text, seg, limit) {
    el.textContent = "";
    seg.segs.forEach(function (sg) {
      if (sg.s >= limit) return;
      var piece = text.slice(sg.s, Math.min(sg.e, limit));
      if (sg.score === null) { el.append(document.createTextNode(piece)); return; }
      var m = h("mark", { class: "p", title: "passage score " + fmt(sg.score) }, piece);
      m.style.setProperty("--a", (0.25 + 0.4 * sg.level).toFixed(2));
      el.append(m);
    });
    if (limit < text.length) el.append(h("span", { class: "ellipsis" }, " \u2026"));
  }

  // ---- cards -------------------------------------------------------------------------------
  var cards = [];
  var current = -1;
  var keyTheme = typeof state.keyTheme === "string" && themes.indexOf(state.keyTheme) >= 0 ? state.keyTheme : null;

  function labelTheme(card) { return keyTheme || card.doc.stream; }
  function labelsOf(id) { return state.labels[id] || {}; }
  function isLabelled(card) { return Object.keys(labelsOf(card.doc.doc_id)).length > 0; }

  function buildCard(doc, idx) {
    var reject = doc.kind !== "selected";
    var el = h("article", {
      class: "card" + (reject ? " reject" : ""), tabindex: "-1",
      "data-doc-id": doc.doc_id, "data-stream": doc.stream, "data-bucket": doc.bucket || "",
      "data-kind": doc.kind || "", "aria-label": "document " + doc.doc_id
    });
    var card = { doc: doc, el: el, idx: idx, expanded: false };
    var chips = h("span", { class: "label-chips" });
    el.append(h("header", { class: "card-head" },
      h("span", { class: "pos", text: "#" + (idx + 1) }),
      h("span", { class: "badge stream", title: "stream theme", text: doc.stream }),
      doc.bucket ? h("span", { class: "badge", title: "score bucket", text: doc.bucket }) : null,
      reject ? h("span", { class: "badge reject-flag", text: "Rejected \u00b7 near threshold" }) : null,
      h("code", { class: "doc-id", text: doc.doc_id }),
      chips));
    card.chips = chips;

    var src = h("div", { class: "source" });
    if (typeof doc.url === "string" && /^https?:\/\//i.test(doc.url)) {
      src.append(h("a", { href: doc.url, target: "_blank", rel: "noopener noreferrer", text: doc.url }));
    } else if (doc.url) {
      src.append(h("span", { text: String(doc.url) }));
    } else {
      src.append(h("span", { class: "muted", text: "no URL" }));
    }
    var bits = [];
    if (doc.domain) bits.push(doc.domain);
    if (doc.source !== undefined && doc.source !== null) bits.push(doc.source + ":" + doc.row);
    if (num(doc.n_tokens) !== null) bits.push(fmtInt(doc.n_tokens) + " tokens");
    if (bits.length) src.append(" \u00b7 " + bits.join(" \u00b7 "));
    el.append(src);

    var text = String(doc.text);
    var seg = segments(text, doc.passages);
    var cut = foldCut(text);
    var textEl = h("div", { class: "doc-text" });
    renderText(textEl, text, seg, cut);
    var left = h("div", { class: "text-col" }, textEl);
    var foldRow = h("div", { class: "fold-row" });
    var foldBtn = null;
    if (cut < text.length) {
      var more = text.length - cut;
      foldBtn = h("button", { type: "button", class: "fold", "aria-expanded": "false" });
      var setFold = function () {
        foldBtn.textContent = card.expanded ? "Show less" : "Show all (" + fmtInt(more) + " more characters)";
        foldBtn.setAttribute("aria-expanded", String(card.expanded));
      };
      card.toggleFold = function () {
        card.expanded = !card.expanded;
        renderText(textEl, text, seg, card.expanded ? text.length : cut);
        setFold();
        if (!card.expanded && el.getBoundingClientRect().top < 0) scrollToCard(card, true);
      };
      foldBtn.addEventListener("click", function () { select(card.idx, false); card.toggleFold(); });
      setFold();
      foldRow.append(foldBtn);
    }
    if (seg.count) {
      var hidden = seg.starts.filter(function (s) { return s >= cut; }).length;
      foldRow.append(h("span", { text: seg.count + " highlighted passage" + (seg.count > 1 ? "s" : "") +
        " drove the " + doc.stream + " score" + (hidden && cut < text.length ? " (" + hidden + " below the fold)" : "") }));
    }
    if (foldRow.childNodes.length) left.append(foldRow);

    el.append(h("div", { class: "card-body" }, left, buildEvidence(doc, card)));
    var bar = h("footer", { class: "label-bar" });
    card.barTheme = h("strong");
    bar.append(h("span", null, "Label ", card.barTheme, ":"));
    card.buttons = {};
    LABELS.forEach(function (lab, i) {
      var b = h("button", { type: "button", class: lab, "aria-pressed": "false", "data-label": lab,
        title: LABEL_TEXT[lab] + " (" + (i + 1) + ")" }, h("kbd", { text: String(i + 1) }), LABEL_TEXT[lab]);
      b.addEventListener("click", function () {
        select(card.idx, false);
        var cur = labelsOf(doc.doc_id)[labelTheme(card)];
        setLabel(card, labelTheme(card), cur && cur.label === lab ? null : lab);
      });
      card.buttons[lab] = b;
      bar.append(b);
    });
    bar.append(h("span", { class: "muted", text: "click a pressed button again to clear" }));
    el.append(bar);
    el.addEventListener("mousedown", function () { select(card.idx, false); });
    return card;
  }

  function buildEvidence(doc, card) {
    var reject = doc.kind !== "selected";
    var box = h("aside", { class: "evidence" });
    if (reject) {
      box.append(h("p", { class: "verdict reject", text: "Not selected: just below the " + doc.stream + " threshold" }));
    } else {
      box.append(h("p", { class: "verdict", text: "Selected for " + doc.stream + ": " + fmtInt(doc.repeats) +
        (doc.repeats === 1 ? " copy" : " copies") + " \u00b7 weight " + fmt(doc.weight, 2) }));
    }
    if (doc.reason) box.append(h("p", { class: "reason", text: doc.reason }));
    var scores = doc.scores || {}, ft = doc.ft || {}, emb = doc.emb || {};
    var rows = themes.filter(function (t) { return t in scores || t in ft || t in emb || t === doc.stream; });
    var table = h("table", { class: "scores" },
      h("thead", null, h("tr", null, h("th", { text: "theme" }), h("th", { text: "score" }),
        h("th", { text: "thr" }), h("th", { text: "fastText", title: "fastText probability" }),
        h("th", { text: "embed.", title: "embedding head probability (\u2014: not embedded)" }))));
    var tb = h("tbody");
    rows.forEach(function (t) {
      var s = num(scores[t]), thr = num(thresholds[t]);
      var above = s !== null && thr !== null && s >= thr;
      var meter = h("span", { class: "meter", title: "score " + fmt(s) + ", threshold " + fmt(thr) });
      var fill = h("span", { class: "fill" + (above ? " above" : "") });
      fill.style.width = (Math.max(0, Math.min(1, s || 0)) * 100).toFixed(1) + "%";
      meter.append(fill);
      if (thr !== null) {
        var tick = h("span", { class: "tick" });
        tick.style.left = "calc(" + (Math.max(0, Math.min(1, thr)) * 100).toFixed(1) + "% - 1px)";
        meter.append(tick);
      }
      tb.append(h("tr", { class: t === doc.stream ? "stream-row" : null },
        h("td", null, t, stance.indexOf(t) >= 0 ? h("span", { class: "stance-tag", text: "stance" }) : null),
        h("td", { class: above ? "above" : null }, fmt(s), meter),
        h("td", { text: fmt(thr) }),
        h("td", { text: fmt(ft[t]) }),
        h("td", { text: fmt(emb[t]), title: num(emb[t]) === null ? "not embedded (stopped at the fastText gate)" : null })));
    });
    table.append(tb);
    box.append(table);

    var seeds = doc.seeds || {};
    var order = [doc.stream].concat(Object.keys(seeds).filter(function (t) { return t !== doc.stream; }));
    var total = 0;
    order.forEach(function (t) { total += (seeds[t] || []).length; });
    var det = h("details", { class: "seeds" });
    det.append(h("summary", { text: "Nearest seed exemplars (" + total + ")" }));
    if (!total) det.append(h("p", { class: "muted", text: "No seed evidence for this document." }));
    var others = null;
    order.forEach(function (t) {
      var list = seeds[t] || [];
      if (!list.length) return;
      var parent = det;
      if (t !== doc.stream) {
        if (!others) {
          var n = total - (seeds[doc.stream] || []).length;
          others = h("details", { class: "seeds-other" }, h("summary", { text: "other themes (" + n + ")" }));
          det.append(others);
        }
        parent = others;
      }
      parent.append(h("div", { class: "seed-theme", text: t + (t === doc.stream ? " (stream theme)" : "") }));
      list.forEach(function (sd) {
        var txt = String(sd.text || ""), long = txt.length > 320;
        var box = h("div", { class: "seed" + (long ? " clamped" : "") },
          h("span", { class: "sim", text: "sim " + fmt(sd.sim, 2) }),
          h("span", { class: "seed-id", text: sd.seed_id || "" }));
        var body = h("div", { class: "seed-text", text: txt });
        box.append(body);
        if (long) {
          var more = h("button", { type: "button", class: "link more", text: "show all" });
          var flip = function () {
            var clamped = box.classList.toggle("clamped");
            more.textContent = clamped ? "show all" : "show less";
          };
          more.addEventListener("click", flip);
          body.addEventListener("click", function () { if (box.classList.contains("clamped")) flip(); });
          box.append(more);
        }
        parent.append(box);
      });
    });
    card.seeds = det;
    box.append(det);
    return box;
  }

  function refreshCard(card) {
    var per = labelsOf(card.doc.doc_id);
    card.chips.textContent = "";
    themes.concat(Object.keys(per).filter(function (t) { return themes.indexOf(t) < 0; })).forEach(function (t) {
      if (!per[t]) return;
      card.chips.append(h("span", { class: "chip " + per[t].label, title: "labelled " + per[t].time,
        text: t + ": " + LABEL_TEXT[per[t].label] }));
    });
    var t = labelTheme(card);
    card.barTheme.textContent = t;
    LABELS.forEach(function (lab) {
      card.buttons[lab].setAttribute("aria-pressed", String(!!per[t] && per[t].label === lab));
    });
    var own = per[card.doc.stream];
    if (own) card.el.setAttribute("data-label", own.label); else card.el.removeAttribute("data-label");
  }

  function setLabel(card, theme, label) {
    var id = card.doc.doc_id;
    var per = state.labels[id] || {};
    if (label) per[theme] = { label: label, time: new Date().toISOString() };
    else delete per[theme];
    if (Object.keys(per).length) state.labels[id] = per; else delete state.labels[id];
    save();
    cards.forEach(function (c) { if (c.doc.doc_id === id) refreshCard(c); });
    renderProgress();
    toast(label ? id + " \u00b7 " + theme + ": " + LABEL_TEXT[label] : id + " \u00b7 " + theme + ": label cleared");
  }

  // ---- filters, navigation, progress ---------------------------------------------------------------
  var filterIds = { stream: "f-stream", bucket: "f-bucket", kind: "f-kind", state: "f-state" };
  function countBy(key) {
    var c = {};
    docs.forEach(function (d) { var v = d[key] || ""; c[v] = (c[v] || 0) + 1; });
    return c;
  }
  function fillSelect(sel, allText, values, counts, labels) {
    sel.append(h("option", { value: "", text: allText }));
    values.forEach(function (v) {
      sel.append(h("option", { value: v, text: (labels && labels[v] || v) + (counts ? " (" + (counts[v] || 0) + ")" : "") }));
    });
  }
  function renderFilters() {
    var sc = countBy("stream"), bc = countBy("bucket"), kc = countBy("kind");
    var streams = themes.filter(function (t) { return sc[t]; });
    var buckets = Object.keys(bc).sort(function (a, b) {
      var ia = BUCKET_ORDER.indexOf(a), ib = BUCKET_ORDER.indexOf(b);
      return (ia < 0 ? 99 : ia) - (ib < 0 ? 99 : ib) || (a < b ? -1 : a > b ? 1 : 0);
    });
    fillSelect($("f-stream"), "all streams", streams, sc);
    fillSelect($("f-bucket"), "all buckets", buckets, bc);
    fillSelect($("f-kind"), "all kinds", Object.keys(kc).sort().reverse(), kc,
      { selected: "selected", near_threshold_reject: "rejects" });
    fillSelect($("f-state"), "all cards", ["unlabelled", "labelled"], null);
    Object.keys(filterIds).forEach(function (k) {
      var sel = $(filterIds[k]);
      var v = state.filters[k];
      if (typeof v === "string" && Array.prototype.some.call(sel.options, function (o) { return o.value === v; })) sel.value = v;
      sel.addEventListener("change", function () { state.filters[k] = sel.value; save(); applyFilters(); });
    });
    $("clear-filters").addEventListener("click", function () {
      Object.keys(filterIds).forEach(function (k) { $(filterIds[k]).value = ""; state.filters[k] = ""; });
      save();
      applyFilters();
    });
    var kt = $("key-theme");
    kt.append(h("option", { value: "", text: "card's stream" }));
    themes.forEach(function (t) { kt.append(h("option", { value: t, text: t })); });
    kt.value = keyTheme || "";
    kt.addEventListener("change", function () { setKeyTheme(kt.value || null); });
  }
  function visible(card) { return !card.el.hidden; }
  function applyFilters() {
    var f = {};
    Object.keys(filterIds).forEach(function (k) {
      var sel = $(filterIds[k]);
      f[k] = sel.value;
      sel.classList.toggle("active", !!sel.value);
    });
    cards.forEach(function (c) {
      var d = c.doc, show = true;
      if (f.stream && d.stream !== f.stream) show = false;
      if (f.bucket && (d.bucket || "") !== f.bucket) show = false;
      if (f.kind && (d.kind || "") !== f.kind) show = false;
      if (f.state === "labelled" && !isLabelled(c)) show = false;
      if (f.state === "unlabelled" && isLabelled(c)) show = false;
      c.el.hidden = !show;
    });
    $("clear-filters").hidden = !(f.stream || f.bucket || f.kind || f.state);
    var empty = $("no-match");
    if (empty) empty.hidden = cards.some(visible) || !cards.length;
    renderProgress();
  }
  function renderProgress() {
    var done = cards.filter(isLabelled).length, shown = cards.filter(visible).length;
    var p = $("progress");
    p.textContent = done + " of " + cards.length + " labelled" + (shown < cards.length ? " \u00b7 " + shown + " shown" : "");
    var bar = h("span", { class: "bar" }), fill = h("span");
    fill.style.width = (cards.length ? done / cards.length * 100 : 0).toFixed(1) + "%";
    bar.append(fill);
    p.append(bar);
  }
  function select(idx, scroll) {
    if (current >= 0 && cards[current]) cards[current].el.classList.remove("current");
    current = idx;
    var card = cards[idx];
    if (!card) return;
    card.el.classList.add("current");
    state.current = card.doc.doc_id;
    save();
    if (scroll) scrollToCard(card, false);
  }
  function scrollToCard(card, force) {
    var r = card.el.getBoundingClientRect();
    var topLimit = $("toolbar").getBoundingClientRect().bottom + 8;
    if (force || r.top < topLimit || r.bottom > window.innerHeight) card.el.scrollIntoView({ block: "start" });
    card.el.focus({ preventScroll: true });
  }
  function move(step) {
    if (!cards.length) return;
    var i = current;
    if (i < 0) i = step > 0 ? -1 : cards.length;
    for (i += step; i >= 0 && i < cards.length; i += step) {
      if (visible(cards[i])) { select(i, true); return; }
    }
    toast(step > 0 ? "Last card" : "First card");
  }
  function nextUnlabelled() {
    for (var k = 1; k <= cards.length; k++) {
      var i = ((current < 0 ? -1 : current) + k) % cards.length;
      if (visible(cards[i]) && !isLabelled(cards[i])) { select(i, true); return; }
    }
    toast("Every shown card is labelled");
  }
  function currentCard() {
    var c = cards[current];
    if (c && visible(c)) return c;
    toast("Press j to choose a card first");
    return null;
  }
  function setKeyTheme(t) {
    keyTheme = t;
    state.keyTheme = t;
    save();
    $("key-theme").value = t || "";
    cards.forEach(refreshCard);
    toast("Keys label " + (t || "each card's stream theme"));
  }
  function cycleTheme(step) {
    var opts = [null].concat(themes);
    var i = opts.indexOf(keyTheme);
    setKeyTheme(opts[(i + step + opts.length) % opts.length]);
  }

  // ---- export ---------------------------------------------------------------------------------
  function csvField(v) {
    var s = v === null || v === undefined ? "" : String(v);
    return /[",\r\n]/.test(s) ? '"' + s.replace(/"/g, '""') + '"' : s;
  }
  function csvText() {
    var reviewer = (state.reviewer || "").trim();
    var rows = [["doc_id", "theme", "label", "reviewer", "time"]];
    var ids = uniq(docs.map(function (d) { return String(d.doc_id); }));
    ids = ids.concat(Object.keys(state.labels).filter(function (id) { return ids.indexOf(id) < 0; }));
    ids.forEach(function (id) {
      var per = state.labels[id];
      if (!per) return;
      themes.concat(Object.keys(per).filter(function (t) { return themes.indexOf(t) < 0; })).forEach(function (t) {
        if (per[t]) rows.push([id, t, per[t].label, reviewer, per[t].time]);
      });
    });
    return { csv: rows.map(function (r) { return r.map(csvField).join(","); }).join("\r\n") + "\r\n", n: rows.length - 1 };
  }
  function exportCsv() {
    var out = csvText();
    var url = URL.createObjectURL(new Blob([out.csv], { type: "text/csv;charset=utf-8" }));
    var a = h("a", { href: url, download: "labels.csv", hidden: true });
    document.body.append(a);
    a.click();
    a.remove();
    setTimeout(function () { URL.revokeObjectURL(url); }, 30000);
    toast("Exported " + out.n + " label" + (out.n === 1 ? "" : "s") + " to labels.csv" +
      ((state.reviewer || "").trim() ? "" : " (no reviewer name: add yours at the top)"));
  }

  // ---- help, toast, keys -----------------------------------------------------------------------
  var toastTimer = null;
  function toast(msg) {
    var t = $("toast");
    t.textContent = msg;
    t.classList.add("show");
    clearTimeout(toastTimer);
    toastTimer = setTimeout(function () { t.classList.remove("show"); }, 2200);
  }
  var lastFocus = null;
  function openHelp() { lastFocus = document.activeElement; $("help").hidden = false; $("help-close").focus(); }
  function closeHelp() {
    $("help").hidden = true;
    if (lastFocus && lastFocus.focus) lastFocus.focus({ preventScroll: true });
  }
  function helpOpen() { return !$("help").hidden; }

  var SELECT_KEYS = ["ArrowUp", "ArrowDown", "Home", "End", " ", "Enter", "PageUp", "PageDown"];
  function onKey(ev) {
    if (ev.defaultPrevented || ev.ctrlKey || ev.metaKey || ev.altKey || ev.isComposing) return;
    var tg = ev.target, tag = tg && tg.tagName;
    if (tg && (tg.isContentEditable || tag === "INPUT" || tag === "TEXTAREA")) {
      if (ev.key === "Escape") tg.blur();
      return;
    }
    if (tag === "SELECT" && (SELECT_KEYS.indexOf(ev.key) >= 0 || ev.key === "Escape")) {
      if (ev.key === "Escape") tg.blur();
      return;
    }
    if (helpOpen()) {
      if (ev.key === "Escape" || ev.key === "?") { closeHelp(); ev.preventDefault(); }
      return;
    }
    var c;
    switch (ev.key) {
      case "j": case "ArrowDown": move(1); break;
      case "k": case "ArrowUp": move(-1); break;
      case "n": nextUnlabelled(); break;
      case "1": case "2": case "3":
        c = currentCard();
        if (c) setLabel(c, labelTheme(c), LABELS[Number(ev.key) - 1]);
        break;
      case "0":
        c = currentCard();
        if (c) setLabel(c, labelTheme(c), null);
        break;
      case "t": cycleTheme(1); break;
      case "T": cycleTheme(-1); break;
      case "o":
        c = currentCard();
        if (c && c.toggleFold) c.toggleFold();
        break;
      case "s":
        c = currentCard();
        if (c) c.seeds.open = !c.seeds.open;
        break;
      case "e": exportCsv(); break;
      case "?": openHelp(); break;
      default: return;
    }
    ev.preventDefault();
  }

  // ---- start -----------------------------------------------------------------------------------
  renderHeader();
  var main = $("cards");
  if (!docs.length) main.append(h("p", { class: "empty", text: "This audit sample has no documents." }));
  docs.forEach(function (d, i) { cards.push(buildCard(d, i)); });
  var frag = document.createDocumentFragment();
  cards.forEach(function (c) { refreshCard(c); frag.append(c.el); });
  main.append(frag);
  main.append(h("p", { class: "empty", id: "no-match", text: "No card matches these filters.", hidden: true }));
  renderFilters();
  applyFilters();
  if (typeof state.current === "string") {
    for (var i = 0; i < cards.length; i++) {
      if (cards[i].doc.doc_id === state.current && visible(cards[i])) {
        current = i;
        cards[i].el.classList.add("current");
        break;
      }
    }
  }
  document.addEventListener("keydown", onKey);
  $("export").addEventListener("click", exportCsv);
  $("help-button").addEventListener("click", openHelp);
  $("help-close").addEventListener("click", closeHelp);
  $("help").addEventListener("click", function (ev) { if (ev.target === $("help")) closeHelp(); });
  window.addEventListener("storage", function (ev) {
    if (ev.key !== storeKey) return;
    var fresh = loadState();
    state.labels = fresh.labels;
    cards.forEach(refreshCard);
    renderProgress();
  });
  if (!storageOk) showStorageWarning();
})();
""".replace("__FOLD__", str(FOLD_CHARS)).replace("__PREFIX__", STORAGE_PREFIX)


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
