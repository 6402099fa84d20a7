"""The package layout of docs/architecture.md: imports go from later stages to earlier ones, no module imports
itself through a cycle, and the CLI loads a stage only inside the command that runs it."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

PKG = Path(__file__).resolve().parent.parent / "selector"
# a package may import from packages of a lower rank only (and from itself); equal ranks do not import each other
RANK = {
    "core": 0,
    "read": 1,
    "score": 2,
    "train": 3,
    "select": 3,
    "export": 4,
    "label": 4,
    "audit": 5,
    "cli": 6,
}


def module_name(path: Path) -> str:
    parts = path.relative_to(PKG.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imports(path: Path) -> list[tuple[str, int, bool]]:
    """(imported selector module, line, at module level) for every import statement of `path`."""
    tree = ast.parse(path.read_text(), str(path))
    top = {id(n) for n in tree.body}
    top |= {id(c) for n in tree.body if isinstance(n, ast.If) for c in n.body}  # if TYPE_CHECKING: ...
    out = []
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            if node.module == "selector":
                mods = [f"selector.{a.name}" for a in node.names if a.name != "__version__"]
            elif node.module.startswith("selector."):
                mods = [node.module]
                mods += [
                    f"{node.module}.{a.name}"
                    for a in node.names
                    if (PKG.parent / f"{node.module}.{a.name}".replace(".", "/")).with_suffix(".py").exists()
                ]
            else:
                continue
            out += [(m, node.lineno, id(node) in top) for m in mods]
        elif isinstance(node, ast.ImportFrom) and node.level:
            pytest.fail(
                f"{path}:{node.lineno}: relative import; the package imports absolutely (selector.<stage>...)"
            )
        elif isinstance(node, ast.Import):
            out += [
                (a.name, node.lineno, id(node) in top) for a in node.names if a.name.startswith("selector")
            ]
    return out


MODULES = {module_name(p): p for p in sorted(PKG.rglob("*.py"))}


def stage(mod: str) -> str | None:
    parts = mod.split(".")
    return parts[1] if len(parts) > 1 and parts[1] in RANK else None


def test_every_module_belongs_to_a_stage() -> None:
    loose = [m for m in MODULES if m != "selector" and stage(m) is None]
    assert not loose, f"modules outside the stage packages of docs/architecture.md: {loose}"


@pytest.mark.parametrize("mod", sorted(MODULES))
def test_imports_go_to_earlier_stages(mod: str) -> None:
    src = stage(mod)
    if src is None:
        return
    for target, line, _ in imports(MODULES[mod]):
        dst = stage(target)
        if dst is None or dst == src:
            continue
        assert RANK[dst] < RANK[src], (
            f"{MODULES[mod]}:{line} imports {target}: {src} (rank {RANK[src]}) may import only earlier stages "
            f"({', '.join(k for k, r in RANK.items() if r < RANK[src])}); see docs/architecture.md"
        )


def test_no_import_cycle() -> None:
    graph: dict[str, set[str]] = {
        m: {t for t, _, _ in imports(p) if t in MODULES and t != m} for m, p in MODULES.items()
    }
    # a package's __init__ re-exports nothing here, so importing a.b does not import a's other modules
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(m: str) -> None:
        state[m] = 1
        stack.append(m)
        for t in sorted(graph[m]):
            if state.get(t) == 1:
                cycle = stack[stack.index(t) :] + [t]
                pytest.fail("import cycle: " + " -> ".join(cycle))
            if t not in state:
                visit(t)
        stack.pop()
        state[m] = 2

    for m in sorted(graph):
        if m not in state:
            visit(m)


def test_package_inits_import_nothing() -> None:
    """Importing one module of a stage must not load the whole stage through its `__init__`."""
    for path in MODULES.values():
        if path.name == "__init__.py":
            assert not imports(path), f"{path} imports; keep stage __init__ files to their docstring"


def test_cli_loads_stages_inside_commands() -> None:
    top = [
        (t, line) for t, line, at_top in imports(PKG / "cli.py") if at_top and stage(t) not in (None, "core")
    ]
    assert not top, f"selector/cli.py imports stages at module level (load them in the command): {top}"
    probe = "import sys, selector.cli; print(sorted(m for m in ('torch', 'polars', 'sentence_transformers', 'faiss') if m in sys.modules))"
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]", f"importing selector.cli loads {out.strip()}; `selector --help` should not"
