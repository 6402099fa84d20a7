"""Regenerate the CLI reference in docs/cli.md from `selector COMMAND --help` (tests/test_cli.py checks it).

python scripts/cli_reference.py          # rewrite docs/cli.md in place
"""

from __future__ import annotations

import re
import sys
from pathlib import Path

from click.testing import CliRunner

from selector.cli import cli

BEGIN, END = "<!-- cli-reference:begin -->", "<!-- cli-reference:end -->"
PAGE = Path(__file__).resolve().parent.parent / "docs" / "cli.md"


def reference() -> str:
    runner = CliRunner()
    parts = []
    for name in [None, *sorted(cli.commands)]:
        args = ([name] if name else []) + ["--help"]
        text = runner.invoke(cli, args, prog_name="selector", terminal_width=100).output.rstrip()
        title = f"selector {name}" if name else "selector"
        parts.append(f"## `{title}`\n\n```\n{text}\n```\n")
    return "\n".join(parts)


def between(text: str, begin: str, end: str) -> str:
    """The text between two markers (tests compare it with the generated reference)."""
    return text[text.index(begin) + len(begin) : text.index(end)]


def rewrite_between(page: Path, begin: str, end: str, body: str) -> None:
    """Replace what lies between the markers in `page` with `body`."""
    text = page.read_text()
    if begin not in text or end not in text:
        sys.exit(f"{page} has no {begin} ... {end} markers")
    new = re.sub(
        re.escape(begin) + ".*?" + re.escape(end), lambda m: f"{begin}\n{body}{end}", text, flags=re.DOTALL
    )
    page.write_text(new)


def main() -> None:
    if sys.argv[1:]:
        sys.exit("usage: python scripts/cli_reference.py   (rewrites the CLI reference in docs/cli.md)")
    rewrite_between(PAGE, BEGIN, END, reference())


if __name__ == "__main__":
    main()
