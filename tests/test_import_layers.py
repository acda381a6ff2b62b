"""Nothing low imports high: the package's import graph, read from the source with ``ast``, has no circle.

Every import counts, a lazy one inside a function included (the old ``cost`` -> ``export`` import was one); only
imports under ``if TYPE_CHECKING:`` are left out, since they never run. A unit is a top-level module
(``nasprune.cost``) or a subpackage (``nasprune.export``); imports inside one unit are its own business.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

import nasprune

PACKAGE = Path(nasprune.__file__).parent
# The measurement layer: below the count, the search and the export, it must import none of the upper units.
UPPER = ("nasprune.export", "nasprune.search", "nasprune.prune", "nasprune.report", "nasprune.cli",
         "nasprune.train", "nasprune.checkpoint", "nasprune.data", "nasprune.storage")


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _is_type_checking(test: ast.expr) -> bool:
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING")


class _Imports(ast.NodeVisitor):
    def __init__(self) -> None:
        self.names: set[str] = set()

    def visit_If(self, node: ast.If) -> None:
        if _is_type_checking(node.test):
            for child in node.orelse:
                self.visit(child)
            return
        self.generic_visit(node)

    def visit_Import(self, node: ast.Import) -> None:
        self.names.update(alias.name for alias in node.names)

    def visit_ImportFrom(self, node: ast.ImportFrom) -> None:
        assert node.level == 0, f"relative import of {node.module!r}: nasprune imports absolutely"
        self.names.add(node.module)


def _unit(module: str) -> str:
    return ".".join(module.split(".")[:2])


def import_graph() -> dict[str, set[str]]:
    """unit -> the other nasprune units it imports at run time."""
    graph: dict[str, set[str]] = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        visitor = _Imports()
        visitor.visit(ast.parse(path.read_text(encoding="utf-8"), filename=str(path)))
        unit = _unit(_module_name(path))
        deps = {_unit(m) for m in visitor.names if m == "nasprune" or m.startswith("nasprune.")}
        graph.setdefault(unit, set()).update(deps - {unit})
    return graph


def find_cycle(graph: dict[str, set[str]]) -> list[str]:
    """One circle of ``graph`` as a path ``[a, b, ..., a]``, or ``[]``."""
    state: dict[str, int] = {}  # 1 = on the current path, 2 = done
    path: list[str] = []

    def visit(node: str) -> list[str]:
        state[node] = 1
        path.append(node)
        for dep in sorted(graph.get(node, ())):
            if state.get(dep) == 1:
                return path[path.index(dep):] + [dep]
            if dep not in state and (cycle := visit(dep)):
                return cycle
        path.pop()
        state[node] = 2
        return []

    for node in sorted(graph):
        if node not in state and (cycle := visit(node)):
            return cycle
    return []


def test_the_graph_is_read():
    graph = import_graph()
    assert {"nasprune.cost", "nasprune.latency", "nasprune.onnxrt", "nasprune.export"} <= set(graph)
    assert "nasprune.onnxrt" in graph["nasprune.export"] and "nasprune.latency" in graph["nasprune.cost"]


def test_find_cycle_finds_a_circle():
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b"}, "b": set(), "c": {"a", "b"}}) == []


def test_the_package_has_no_import_circle():
    cycle = find_cycle(import_graph())
    assert not cycle, "import circle: " + " -> ".join(cycle)


@pytest.mark.parametrize("module", ["nasprune.cost", "nasprune.latency", "nasprune.onnxrt"])
def test_the_measurement_layer_imports_nothing_above_it(module):
    upward = sorted(d for d in import_graph()[module] if d in UPPER)
    assert not upward, f"{module} imports {upward}"


def test_the_layers_stack_onnxrt_latency_cost():
    graph = import_graph()
    assert graph["nasprune.onnxrt"] <= {"nasprune.errors"}  # the bottom: files and sessions only
    assert "nasprune.cost" not in graph["nasprune.latency"]
    assert "nasprune.latency" in graph["nasprune.cost"]
