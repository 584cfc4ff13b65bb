"""The layout's rules, checked on the source: every import points inward (no cycle among
the modules of ``guard`` and ``stores``), and no shipped module reaches for test helpers.

Every import counts: at module level, inside functions and under ``TYPE_CHECKING``, since
each is a dependency a reader has to follow. A module importing its own parent package
is not an edge (Python runs the parent's ``__init__`` first either way).
"""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = ("guard", "stores")
#: Modules only tests load; nothing shipped may import them.
TEST_ONLY = {"guard.integrations.pytest_plugin", "stores.testing"}


def modules() -> dict[str, tuple[Path, bool]]:
    found = {}
    for package in PACKAGES:
        for path in (ROOT / package).rglob("*.py"):
            parts = list(path.relative_to(ROOT).with_suffix("").parts)
            is_package = parts[-1] == "__init__"
            if is_package:
                parts.pop()
            found[".".join(parts)] = (path, is_package)
    return found


def import_graph() -> dict[str, set[str]]:
    known = modules()
    graph: dict[str, set[str]] = {name: set() for name in known}
    for name, (path, is_package) in known.items():
        here = name.split(".") if is_package else name.split(".")[:-1]
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.Import):
                targets = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:
                    base = ".".join([*here[: len(here) - node.level + 1], *filter(None, [base])])
                targets = [base, *(f"{base}.{alias.name}" for alias in node.names)]
            else:
                continue
            graph[name].update(
                t for t in targets if t in known and t != name and not name.startswith(t + ".")
            )
    return graph


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components of more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    found: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        for nxt in graph[node]:
            if nxt not in index:
                visit(nxt)
                low[node] = min(low[node], low[nxt])
            elif nxt in stack:
                low[node] = min(low[node], index[nxt])
        if low[node] == index[node]:
            component = []
            while (top := stack.pop()) != node:
                component.append(top)
            if component:
                found.append(sorted([node, *component]))

    for node in graph:
        if node not in index:
            visit(node)
    return found


def test_no_import_cycle_among_the_guards_modules() -> None:
    graph = import_graph()
    assert graph.get("guard._request.state")  # it read them
    assert cycles(graph) == []


def test_the_cycle_finder_finds_a_cycle() -> None:
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]


def test_no_shipped_module_imports_test_only_modules() -> None:
    importers = {name for name, imported in import_graph().items() if imported & TEST_ONLY}
    assert importers == set()


def test_no_shipped_module_reads_test_state() -> None:
    # Flask's TESTING (``app.testing``) must change nothing the guard does: a setting that
    # can leak into a deployment never weakens it, and tests see production behaviour.
    readers = []
    for name, (path, _) in modules().items():
        if name in TEST_ONLY:
            continue
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            reads = (isinstance(node, ast.Attribute) and node.attr == "testing") or (
                isinstance(node, ast.Constant) and node.value == "TESTING"
            )
            if reads:
                readers.append(f"{name}:{node.lineno}")
    assert readers == []
