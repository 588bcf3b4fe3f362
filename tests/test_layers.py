"""The layer order, read from the code's own imports (docs/architecture.md): a module imports only
from its own layer or the layers below it, and no modules import each other in a circle. Every
import counts, those inside functions too."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SRC = ROOT / "src"

# bottom to top; a module may import its own layer and every layer before it
LAYERS = (
    ("base", ("texpress", "texpress.errors", "texpress.console", "texpress.params", "texpress.samples",
              "texpress.files", "texpress.mlstore")),
    ("codec", ("texpress.codec",)),
    ("data", ("texpress.data",)),
    ("evaluate", ("texpress.evaluate",)),
    ("train", ("texpress.train",)),
    ("slim", ("texpress.slim",)),
    ("registry", ("texpress.registry",)),
    ("bulk and pipelines", ("texpress.bulk", "pipelines")),
    ("cli, flows and benchmarks", ("texpress.cli", "flows", "benchmarks")),
)


def module_name(path: Path) -> str:
    rel = path.relative_to(SRC if path.is_relative_to(SRC) else ROOT).with_suffix("")
    parts = rel.parts[:-1] if rel.name == "__init__" else rel.parts
    return ".".join(parts)


def layer_of(module: str) -> int | None:
    """The layer index of a module (the longest matching prefix), None outside the project."""
    best, best_len = None, -1
    for index, (_, prefixes) in enumerate(LAYERS):
        for prefix in prefixes:
            if (module == prefix or module.startswith(prefix + ".")) and len(prefix) > best_len:
                best, best_len = index, len(prefix)
    return best


def project_files() -> list[Path]:
    files = sorted((SRC / "texpress").rglob("*.py"))
    for folder in ("pipelines", "flows", "benchmarks"):
        files += sorted((ROOT / folder).rglob("*.py"))
    return files


def imported_modules(path: Path) -> set[str]:
    """Every project module `path` imports, at the top or inside a function."""
    out = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            out.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:  # relative: resolve against this module's package
                here = module_name(path)
                package = here.split(".")[: len(here.split(".")) - node.level + (path.name == "__init__.py")]
                base = ".".join(package + ([node.module] if node.module else []))
            else:
                base = node.module or ""
            out.add(base)
            out.update(f"{base}.{a.name}" for a in node.names)  # `from pkg import module`
    return {m for m in out if layer_of(m) is not None}


def known(module: str, modules: set[str]) -> str | None:
    """The project module that `module` names (a module, or the module that defines a name)."""
    while module and module not in modules:
        module = module.rpartition(".")[0]
    return module or None


def graph() -> dict[str, set[str]]:
    files = {module_name(p): p for p in project_files()}
    edges = {}
    for name, path in files.items():
        targets = {known(m, set(files)) for m in imported_modules(path)}
        edges[name] = {t for t in targets if t and t != name}
    return edges


def test_every_module_has_a_layer():
    assert [m for m in graph() if layer_of(m) is None] == []


def test_no_import_runs_up_a_layer():
    wrong = [f"{a} ({LAYERS[layer_of(a)][0]}) imports {b} ({LAYERS[layer_of(b)][0]})"
             for a, targets in graph().items() for b in sorted(targets) if layer_of(b) > layer_of(a)]
    assert wrong == []


def test_no_import_circle():
    edges = graph()
    # a package's __init__ is imported on the way to its modules: it may name its own modules
    edges = {a: {b for b in bs if not (a.count(".") < b.count(".") and b.startswith(a + "."))} for a, bs in edges.items()}
    state: dict[str, int] = {}
    circles = []

    def visit(node: str, trail: list[str]) -> None:
        state[node] = 1
        for nxt in sorted(edges.get(node, ())):
            if state.get(nxt) == 1:
                circles.append(" -> ".join(trail[trail.index(nxt):] + [node, nxt]) if nxt in trail else f"{node} -> {nxt}")
            elif nxt not in state:
                visit(nxt, trail + [node])
        state[node] = 2

    for node in sorted(edges):
        if node not in state:
            visit(node, [])
    assert circles == []


@pytest.mark.parametrize("module, layer", [("texpress.codec.api", "codec"), ("texpress.slim.prune", "slim"),
                                           ("texpress.mlstore", "base"), ("pipelines.train", "bulk and pipelines"),
                                           ("texpress.cli.codec", "cli, flows and benchmarks")])
def test_layers_of_known_modules(module, layer):
    assert LAYERS[layer_of(module)][0] == layer


def test_the_check_sees_an_import_that_runs_up(tmp_path):
    """The check itself can fail: a codec module that imports the registry is caught."""
    bad = tmp_path / "bad.py"
    bad.write_text("def f():\n    from texpress.registry.refs import resolve_checkpoint\n")
    assert "texpress.registry.refs" in imported_modules(bad)
    assert layer_of("texpress.registry.refs") > layer_of("texpress.codec.api")
