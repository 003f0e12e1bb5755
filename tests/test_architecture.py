"""The shape of the code: every module of ``harness`` and ``analysis`` imports on its
own, their imports form no cycle, and none reaches into another module's private
names."""

from __future__ import annotations

import ast
import os
import subprocess
import sys
from collections import deque
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("harness", "analysis")


def module_files() -> dict[str, Path]:
    """Every project module by dotted name (a package by its own name)."""
    found = {}
    for package in PACKAGES:
        for path in sorted((ROOT / package).rglob("*.py")):
            parts = list(path.relative_to(ROOT).with_suffix("").parts)
            if parts[-1] == "__init__":
                parts.pop()
            found[".".join(parts)] = path
    return found


MODULES = module_files()


@dataclass(frozen=True)
class Import:
    """One import statement's reference to a project module."""

    source: str  # the importing module
    target: str  # the imported project module
    names: tuple[str, ...]  # the names a ``from`` import takes from it
    line: int

    def where(self) -> str:
        return f"{MODULES[self.source].relative_to(ROOT)}:{self.line}"


def _is_type_checking(test: ast.expr) -> bool:
    """``if TYPE_CHECKING:`` or ``if typing.TYPE_CHECKING:``."""
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def _statements(node: ast.AST, *, type_checking: bool):
    """Every import statement under ``node`` (module level, in functions, classes,
    try blocks...), with whether it sits under ``if TYPE_CHECKING:``."""
    for child in ast.iter_child_nodes(node):
        if isinstance(child, ast.Import | ast.ImportFrom):
            yield child, type_checking
        elif isinstance(child, ast.If) and _is_type_checking(child.test):
            for stmt in child.body:
                yield from _statements(ast.Module(body=[stmt], type_ignores=[]), type_checking=True)
            for stmt in child.orelse:
                yield from _statements(
                    ast.Module(body=[stmt], type_ignores=[]), type_checking=type_checking
                )
        else:
            yield from _statements(child, type_checking=type_checking)


def _project_module(dotted: str) -> str | None:
    """The project module ``dotted`` names, or the closest enclosing one."""
    parts = dotted.split(".")
    while parts:
        name = ".".join(parts)
        if name in MODULES:
            return name
        parts.pop()
    return None


def imports_of(module: str) -> list[tuple[Import, bool]]:
    """The project imports of ``module``: (import, under TYPE_CHECKING)."""
    path = MODULES[module]
    tree = ast.parse(path.read_text(), filename=str(path))
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    found = []
    for stmt, type_checking in _statements(tree, type_checking=False):
        if isinstance(stmt, ast.Import):
            for alias in stmt.names:
                target = _project_module(alias.name)
                if target:
                    found.append((Import(module, target, (), stmt.lineno), type_checking))
            continue
        if stmt.level:  # relative: from . import x, from ..y import z
            base = package.split(".")[: len(package.split(".")) - (stmt.level - 1)]
            origin = ".".join([*base, *([stmt.module] if stmt.module else [])])
        else:
            origin = stmt.module or ""
        for alias in stmt.names:
            # `from harness import sysinfo` imports the module harness.sysinfo
            submodule = f"{origin}.{alias.name}"
            if submodule in MODULES:
                found.append((Import(module, submodule, (), stmt.lineno), type_checking))
                continue
            target = _project_module(origin)
            if target:
                found.append((Import(module, target, (alias.name,), stmt.lineno), type_checking))
    return found


def import_graph() -> dict[str, dict[str, Import]]:
    """module -> {imported project module: the first import of it}, leaving out the
    imports under ``if TYPE_CHECKING:`` (they never run)."""
    graph: dict[str, dict[str, Import]] = {module: {} for module in MODULES}
    for module in MODULES:
        for imp, type_checking in imports_of(module):
            if not type_checking and imp.target != module:
                graph[module].setdefault(imp.target, imp)
    return graph


def strongly_connected(graph: dict[str, dict[str, Import]]) -> list[list[str]]:
    """Tarjan's strongly connected components with more than one module."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    components: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in sorted(graph[v]):
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
                components.append(sorted(component))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return components


def shortest_cycle(graph: dict[str, dict[str, Import]], start: str, within: set[str]) -> list[str]:
    """The shortest import cycle through ``start`` inside one component."""
    previous: dict[str, str] = {}
    queue = deque([start])
    while queue:
        v = queue.popleft()
        for w in sorted(graph[v]):
            if w not in within:
                continue
            if w == start:
                path = [v]
                while path[-1] != start:
                    path.append(previous[path[-1]])
                return [*reversed(path), start]
            if w not in previous:
                previous[w] = v
                queue.append(w)
    raise AssertionError(f"no cycle through {start}")


def describe_cycles(graph: dict[str, dict[str, Import]]) -> list[str]:
    """One readable line per cycle: a shortest cycle through each module of each
    component, the lines that import each next module after it."""
    lines = []
    for component in strongly_connected(graph):
        seen: set[tuple[str, ...]] = set()
        lines.append(f"{len(component)} modules import each other: {', '.join(component)}")
        for start in component:
            cycle = shortest_cycle(graph, start, set(component))
            i = cycle.index(min(cycle[:-1]))  # the same cycle from any start reads the same
            key = tuple(cycle[i:-1] + cycle[:i])
            if key in seen:
                continue
            seen.add(key)
            ring = [*key, key[0]]
            steps = [f"{a} ({graph[a][b].where()})" for a, b in zip(ring, ring[1:], strict=False)]
            lines.append("  " + " -> ".join([*steps, ring[0]]))
    return lines


@pytest.mark.parametrize("module", sorted(MODULES))
def test_each_module_imports_on_its_own(module):
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"}
    done = subprocess.run(
        [sys.executable, "-c", f"import {module}"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
    )
    assert done.returncode == 0, done.stderr[-3000:]


def test_the_walker_finds_imports_everywhere_but_under_type_checking(tmp_path):
    code = (
        "from typing import TYPE_CHECKING\n"
        "import harness.grid\n"
        "from harness import sysinfo\n"
        "from analysis.load import load_results\n"
        "if TYPE_CHECKING:\n"
        "    from harness.trial import run_trial\n"
        "else:\n"
        "    import harness.data\n"
        "def f():\n"
        "    from harness.store import Store\n"
        "    class A:\n"
        "        def g(self):\n"
        "            try:\n"
        "                from harness.models import build_model\n"
        "            except ImportError:\n"
        "                pass\n"
    )
    tree = ast.parse(code)
    found = [
        (stmt.lineno, type_checking)
        for stmt, type_checking in _statements(tree, type_checking=False)
        if isinstance(stmt, ast.Import | ast.ImportFrom)
    ]
    assert found == [(1, False), (2, False), (3, False), (4, False), (6, True), (8, False),
                     (10, False), (14, False)]  # fmt: skip
    assert _project_module("harness.grid.GridSpec") == "harness.grid"
    assert _project_module("numpy") is None
    graph = {"a": {"b": None}, "b": {"c": None}, "c": {"a": None, "d": None}, "d": {}}
    assert strongly_connected(graph) == [["a", "b", "c"]]  # type: ignore[arg-type]
    assert shortest_cycle(graph, "b", {"a", "b", "c"}) == ["b", "c", "a", "b"]  # type: ignore[arg-type]


def test_no_import_cycles_between_project_modules():
    graph = import_graph()
    cycles = describe_cycles(graph)
    assert not cycles, "import cycles (an arrow: the module imports the next one):\n" + "\n".join(
        cycles
    )
    # the same verdict from the standard library
    from graphlib import TopologicalSorter

    TopologicalSorter({m: set(targets) for m, targets in graph.items()}).prepare()


def test_no_module_imports_another_modules_private_names():
    private = [
        f"{imp.where()}: {imp.source} imports {name} from {imp.target}"
        for module in MODULES
        for imp, _ in imports_of(module)
        for name in imp.names
        if name.startswith("_") and not name.startswith("__")
    ]
    # `from harness import _x` where _x is a module is an Import with no names
    private += [
        f"{imp.where()}: {imp.source} imports the private module {imp.target}"
        for module in MODULES
        for imp, _ in imports_of(module)
        if any(part.startswith("_") and not part.startswith("__") for part in imp.target.split("."))
    ]
    assert not private, "private names imported across modules:\n" + "\n".join(private)
