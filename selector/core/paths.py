"""Where the project's own files live, in a source checkout or in an installed wheel."""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from pathlib import Path

_PKG = Path(__file__).resolve().parent.parent  # selector/
_REPO = _PKG.parent
# in an installed wheel _REPO is site-packages, whose configs/ (if any) belongs to someone else
_CHECKOUT = (_REPO / "pyproject.toml").is_file()


def _first_existing(*candidates: Path) -> Path:
    """The first candidate that exists (a checkout's own file, else the wheel's copy); checkout paths count
    only in a checkout."""
    for c in candidates:
        if not _CHECKOUT and c.is_relative_to(_REPO) and not c.is_relative_to(_PKG):
            continue
        if c.exists():
            return c
    return candidates[0]


def configs_dir() -> Path:
    """The `configs/` folder: the checkout's, else the copy bundled into the wheel."""
    return _first_existing(_REPO / "configs", _PKG / "_bundled" / "configs")


def default_config_path() -> Path:
    return configs_dir() / "default.toml"


def demo_config_path() -> Path:
    """`configs/demo.toml`: the default config with teacher shares for a corpus that is 30% on-theme."""
    return configs_dir() / "demo.toml"


def default_classifier_dir() -> Path:
    """`classifiers/default/`: the classifier the project ships, trained by scripts/train_default.py."""
    return _first_existing(_REPO / "classifiers" / "default", _PKG / "_bundled" / "classifiers" / "default")


def demo_corpus_dir() -> Path:
    """The embedded demo corpus: a few hundred short documents the project wrote."""
    return _PKG / "demo"


def make_temp_dir(parent: Path, prefix: str) -> Path:
    """A temporary directory beside an output, with the permissions a plain mkdir would give (mkdtemp makes
    it private, and the output it is renamed into should be readable like the rest of the run)."""
    import os
    import tempfile

    tmp = Path(tempfile.mkdtemp(prefix=prefix, dir=parent))
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(tmp, 0o777 & ~umask)
    return tmp


def replace_dir(tmp: Path, out: Path) -> None:
    """Put the finished directory `tmp` in place of `out`: an old `out` is moved aside, not deleted, until the
    new one is in place, so a reader never sees a half-written output."""
    import os
    import shutil

    old = out.with_name(f".{out.name}.old-{os.getpid()}")
    if out.exists():
        os.replace(out, old)
    os.replace(tmp, out)
    shutil.rmtree(old, ignore_errors=True)


def atomic_write(path: Path, data: bytes | str) -> None:
    """Write a file under a temporary name beside it, then rename it into place: a reader sees the old file
    or the whole new one, never a part (a leftover `.NAME.tmp-PID` from a killed writer is swept by its owner)."""
    import os

    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    try:
        tmp.write_bytes(data.encode() if isinstance(data, str) else data)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def foreign_files(out: Path, owned: Callable[[str], bool]) -> list[str]:
    """The files under the directory `out` (relative POSIX paths, sorted) that `owned(path)` does not claim:
    what replacing or rewriting `out` would delete or mix with a command's own output."""
    if not out.is_dir():
        return []
    return sorted(
        p.relative_to(out).as_posix()
        for p in out.rglob("*")
        if not p.is_dir() and not owned(p.relative_to(out).as_posix())
    )


def foreign_files_message(out: Path, foreign: list[str], command: str, consequence: str) -> str:
    """The refusal for `foreign_files`: names the first file, the count, and what to do."""
    more = f" and {len(foreign) - 1} more" if len(foreign) > 1 else ""
    return (
        f"{out} holds {foreign[0]}{more}, which `{command}` did not write and {consequence}. Move "
        f"{'them' if more else 'it'} out of {out}, or choose another --out."
    )


def file_sha256(path: Path) -> str:
    """The SHA-256 of a file's bytes, read in 1 MiB chunks: what cards and manifests name a file by."""
    h = hashlib.sha256()
    with path.open("rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()
