"""Screenshot an audit review page: `python scripts/audit_screenshot.py INDEX_HTML OUT_PNG`.

Opens the page in headless Chromium (/usr/bin/chromium, driven by Playwright), labels the first two cards
(on theme, off theme), opens the Overview, and saves a 1400x1000 screenshot of the viewport. Fails if the
page logs a console error or warning. Options: --full-page for the whole page, --no-overview to keep the
Overview closed, --reviewer NAME.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from selector.audit.page import CHROMIUM
from selector.audit.page import CHROMIUM_ARGS as LAUNCH_ARGS


def screenshot(
    index_html: Path,
    out_png: Path,
    full_page: bool = False,
    overview: bool = True,
    reviewer: str = "reviewer",
) -> list[str]:
    """Label two cards, open the Overview and write the screenshot; returns the console problems seen."""
    from playwright.sync_api import sync_playwright

    problems: list[str] = []
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=LAUNCH_ARGS)
        try:
            context = browser.new_context(viewport={"width": 1400, "height": 1000}, device_scale_factor=1)
            page = context.new_page()
            page.on(
                "console",
                lambda m: problems.append(f"{m.type}: {m.text}") if m.type in ("error", "warning") else None,
            )
            page.on("pageerror", lambda e: problems.append(f"pageerror: {e}"))
            page.goto(index_html.resolve().as_uri())
            page.wait_for_selector("[data-doc-id]")
            page.fill("#reviewer", reviewer)
            page.locator("#reviewer").press("Escape")
            for key in ("j", "1", "j", "2"):
                page.keyboard.press(key)
            if overview:
                page.locator("#overview > summary").click()
            page.evaluate("window.scrollTo(0, 0)")
            page.wait_for_timeout(2600)  # let the label toast fade
            out_png.parent.mkdir(parents=True, exist_ok=True)
            page.screenshot(path=str(out_png), full_page=full_page)
        finally:
            browser.close()
    return problems


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("index_html", type=Path, help="the audit page, e.g. runs/demo/audit/index.html")
    ap.add_argument("out_png", type=Path, help="where to write the PNG, e.g. docs/audit.png")
    ap.add_argument(
        "--full-page", action="store_true", help="capture the whole page, not the 1400x1000 viewport"
    )
    ap.add_argument("--no-overview", action="store_true", help="keep the Overview (charts) closed")
    ap.add_argument("--reviewer", default="reviewer", help="the name typed into the reviewer field")
    args = ap.parse_args(argv)
    if not args.index_html.is_file():
        print(
            f"error: {args.index_html} not found. Run `selector audit MANIFEST --out DIR` first.",
            file=sys.stderr,
        )
        return 2
    if not Path(CHROMIUM).exists():
        print(
            f"error: Chromium not found at {CHROMIUM}. Install it: apt-get install chromium.", file=sys.stderr
        )
        return 2
    try:
        import playwright  # noqa: F401
    except ImportError:
        print("error: playwright is not installed. Install it: pip install playwright.", file=sys.stderr)
        return 2
    problems = screenshot(args.index_html, args.out_png, args.full_page, not args.no_overview, args.reviewer)
    for msg in problems:
        print(f"console {msg}", file=sys.stderr)
    print(f"wrote {args.out_png}", file=sys.stderr)
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
