"""No import circles between the project's modules (issue 39).

A circle (a imports b, b imports a) only works while one side imports lazily, inside a
function or at the bottom of the file; move one line and it fails at import time, and a
reader cannot tell which module is below the other. So every import counts here, at the
top, inside functions and under ``TYPE_CHECKING`` alike, read from the source (AST) without
importing anything.

``from pkg import name`` is an edge to ``pkg.name`` when that is a module, else to ``pkg``.
The implicit import of a parent package (``a.b.c`` runs ``a/__init__``) is not an edge:
Python has the parent in ``sys.modules`` before any child runs, so it cannot circle.
"""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("artifact_schemas", "sae_core", "stimuli_builder", "study_app", "analysis")


def _modules() -> dict[str, Path]:
    found = {}
    for package in PACKAGES:
        for path in sorted((ROOT / package).rglob("*.py")):
            parts = path.relative_to(ROOT).with_suffix("").parts
            if "migrations" in parts:  # Alembic loads these by file path, never by import
                continue
            name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
            found[name] = path
    return found


def _target(name: str, modules: dict[str, Path]) -> str | None:
    """The project module ``name`` is, or the nearest project package above it."""
    while name and name not in modules:
        name = name.rpartition(".")[0]
    return name or None


def import_graph(modules: dict[str, Path]) -> dict[str, dict[str, int]]:
    """module -> {imported project module: first line importing it}."""
    graph: dict[str, dict[str, int]] = {}
    for name, path in modules.items():
        edges = graph.setdefault(name, {})
        is_package = path.name == "__init__.py"
        for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
            targets: list[str] = []
            if isinstance(node, ast.Import):
                targets = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:  # relative: from the package this module is in
                    anchor = name.split(".")
                    anchor = anchor[: len(anchor) - node.level + (1 if is_package else 0)]
                    base = ".".join([*anchor, *([base] if base else [])])
                targets = [f"{base}.{a.name}" if f"{base}.{a.name}" in modules else base for a in node.names]
            for target in targets:
                found = _target(target, modules)
                if found and found != name and not name.startswith(found + "."):
                    edges.setdefault(found, node.lineno)
    return graph


def circles(graph: dict[str, dict[str, int]]) -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan's algorithm)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in graph.get(v, {}):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return found


def _describe(component: list[str], graph: dict[str, dict[str, int]], modules: dict[str, Path]) -> str:
    inside = set(component)
    lines = [
        f"  {a} ({modules[a].relative_to(ROOT)}:{line}) imports {b}"
        for a in component
        for b, line in sorted(graph[a].items())
        if b in inside
    ]
    return "circle between " + ", ".join(component) + ":\n" + "\n".join(lines)


def test_no_module_imports_itself_round_a_circle() -> None:
    modules = _modules()
    graph = import_graph(modules)
    found = circles(graph)
    assert not found, "\n".join(_describe(c, graph, modules) for c in found)


def test_the_walk_sees_a_circle_held_open_by_a_lazy_import(tmp_path: Path) -> None:
    # The finder itself: a top-level import one way and a function-level one back, as
    # analysis.report and report_figures were before issue 39.
    (tmp_path / "report.py").write_text("from pkg.figures import draw\n")
    (tmp_path / "figures.py").write_text("def draw():\n    from pkg.report import Report\n")
    (tmp_path / "alone.py").write_text("import pkg.report\n")
    modules = {f"pkg.{p.stem}": p for p in tmp_path.glob("*.py")}
    graph = import_graph(modules)
    assert graph["pkg.figures"] == {"pkg.report": 2}
    assert circles(graph) == [["pkg.figures", "pkg.report"]]
