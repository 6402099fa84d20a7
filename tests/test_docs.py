"""The documentation: the README stays a front page, links between pages resolve, and the configuration
reference in docs/configuration.md matches the config dataclasses (as tests/test_cli.py keeps docs/cli.md
in sync with --help)."""

from __future__ import annotations

import re
import sys
from pathlib import Path

import pytest

from .conftest import REPO

sys.path.insert(0, str(REPO / "scripts"))
import config_reference  # noqa: E402
from cli_reference import between  # noqa: E402

PAGES = [REPO / "README.md", *sorted((REPO / "docs").glob("*.md"))]
LINK = re.compile(r"!?\[[^\]]*\]\(([^)\s]+)\)")


def slug(heading: str) -> str:
    """GitHub's anchor for a heading: lowercase, punctuation dropped but - and _, spaces to -."""
    text = re.sub(r"[^\w\- ]", "", heading.strip().lower())
    return text.replace(" ", "-")


def prose(path: Path) -> str:
    """The page without its fenced code blocks (a `#` comment in a block is not a heading)."""
    return re.sub(r"^```.*?^```", "", path.read_text(), flags=re.DOTALL | re.MULTILINE)


def anchors(path: Path) -> set[str]:
    seen: dict[str, int] = {}
    out = set()
    for m in re.finditer(r"^#{1,6} (.+)$", prose(path), flags=re.MULTILINE):
        s = slug(m.group(1))
        n = seen.get(s, 0)
        out.add(s if n == 0 else f"{s}-{n}")
        seen[s] = n + 1
    return out


def relative_links(path: Path) -> list[str]:
    return [t for t in LINK.findall(prose(path)) if not re.match(r"[a-z]+:", t)]


def test_slug_is_githubs():
    assert slug("Scoring on a Ray cluster: `--executor ray`") == "scoring-on-a-ray-cluster---executor-ray"
    assert slug("`[themes.<name>]`") == "themesname"
    assert slug("Learning from labels: the label-efficiency curve (2026-12-03)") == (
        "learning-from-labels-the-label-efficiency-curve-2026-12-03"
    )


@pytest.mark.parametrize("page", PAGES, ids=lambda p: p.name)
def test_every_relative_link_points_to_a_file_and_an_anchor(page):
    broken = []
    for target in relative_links(page):
        file, _, anchor = target.partition("#")
        dest = (page.parent / file).resolve() if file else page
        if not dest.exists():
            broken.append(
                f"{target}: no file {dest.relative_to(REPO) if dest.is_relative_to(REPO) else dest}"
            )
        elif anchor and dest.suffix == ".md" and anchor not in anchors(dest):
            broken.append(f"{target}: no heading with anchor #{anchor} in {dest.name}")
    assert not broken, f"{page.name}: " + "; ".join(broken)


def test_readme_is_a_front_page_that_links_every_docs_page():
    text = (REPO / "README.md").read_text()
    assert len(text.splitlines()) <= 250
    linked = {t.partition("#")[0] for t in relative_links(REPO / "README.md")}
    for page in (REPO / "docs").glob("*.md"):
        assert f"docs/{page.name}" in linked, f"README.md's docs table lacks docs/{page.name}"
    assert "bash scripts/test.sh" in text


def test_configuration_reference_is_in_sync_with_the_config_dataclasses():
    text = (REPO / "docs" / "configuration.md").read_text()
    section = between(text, config_reference.BEGIN, config_reference.END)
    assert section.strip() == config_reference.reference().strip(), "run: python scripts/config_reference.py"


def test_every_config_key_has_a_meaning_and_no_meaning_is_stale():
    keys = config_reference.documented_keys()
    assert keys - set(config_reference.MEANINGS) == set(), (
        "add the key to MEANINGS in scripts/config_reference.py"
    )
    assert set(config_reference.MEANINGS) - keys == set(), "remove the stale key from MEANINGS"


def test_configuration_reference_names_every_key_of_the_default_config():
    """Every key configs/default.toml sets is documented (the reference is generated from the dataclasses,
    this checks the two agree on names)."""
    import tomllib

    raw = tomllib.loads((REPO / "configs" / "default.toml").read_text())
    keys = config_reference.documented_keys()
    for section, table in raw.items():
        if section == "themes":
            set_keys = {f"themes.{k}" for theme in table.values() for k in theme}
        else:
            set_keys = {f"{section}.{k}" for k in table}
        assert set_keys <= keys, sorted(set_keys - keys)
