"""Regenerate the README's CLI reference from `selector COMMAND --help` (tests/test_cli.py checks it).

python scripts/cli_reference.py          # rewrite README.md in place
"""

from __future__ import annotations

import re
import sys
from pathlib import Path

from click.testing import CliRunner

from selector.cli import cli

BEGIN, END = "<!-- cli-reference:begin -->", "<!-- cli-reference:end -->"


def reference() -> str:
    runner = CliRunner()
    parts = []
    for name in [None, *sorted(cli.commands)]:
        args = ([name] if name else []) + ["--help"]
        text = runner.invoke(cli, args, prog_name="selector", terminal_width=100).output.rstrip()
        title = f"selector {name}" if name else "selector"
        parts.append(f"### `{title}`\n\n```\n{text}\n```\n")
    return "\n".join(parts)


def main() -> None:
    if sys.argv[1:]:
        sys.exit("usage: python scripts/cli_reference.py   (rewrites the CLI reference in README.md)")
    readme = Path(__file__).resolve().parent.parent / "README.md"
    text = readme.read_text()
    if BEGIN not in text:
        sys.exit(f"{readme} has no {BEGIN} marker")
    new = re.sub(
        re.escape(BEGIN) + ".*?" + re.escape(END),
        lambda m: f"{BEGIN}\n{reference()}{END}",
        text,
        flags=re.DOTALL,
    )
    readme.write_text(new)


if __name__ == "__main__":
    main()
