"""The shape of the code: every module of ``lrbench``, ``harness`` and ``analysis``
imports on its own; the three layers import only downwards (``lrbench`` on top of
``analysis`` on top of ``harness``); ``analysis`` reaches neither Ray, TensorFlow
nor the trial and sweep code; their imports form no cycle; no two modules share a
name; and none reaches into another module's private names."""

from __future__ import annotations

import ast
import json
import os
import subprocess
import sys
from collections import deque
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("lrbench", "harness", "analysis")
# Each layer may import only the layers below it: lrbench > analysis > harness
BELOW = {"lrbench": {"analysis", "harness"}, "analysis": {"harness"}, "harness": set()}
# What analysis (pure reading and drawing) never reaches, even through harness
HEAVY = ("ray", "tensorflow", "keras")
NOT_FOR_ANALYSIS = ("harness.trial", "harness.sweep")


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


def lazy_target(node: ast.AST) -> str | None:
    """The module a ``lazy("name")`` call (``harness.lazy``) stands for; None
    for any other node."""
    if (
        isinstance(node, ast.Call)
        and isinstance(node.func, ast.Name)
        and node.func.id == "lazy"
        and node.args
        and isinstance(node.args[0], ast.Constant)
        and isinstance(node.args[0].value, str)
    ):
        return node.args[0].value
    return None


def _statements(node: ast.AST, *, type_checking: bool):
    """Every import under ``node`` (module level, in functions, classes, try
    blocks...), with whether it sits under ``if TYPE_CHECKING:``. A
    ``lazy("name")`` counts as ``import name``: it imports it on first use."""
    for child in ast.iter_child_nodes(node):
        if isinstance(child, ast.Import | ast.ImportFrom):
            yield child, type_checking
        elif (target := lazy_target(child)) is not None:
            yield ast.Import(names=[ast.alias(name=target)], lineno=child.lineno), type_checking
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
            # `from harness import sysinfo` imports the module harness.trial.sysinfo
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


def external_imports(module: str) -> set[str]:
    """The top-level names of the third-party packages ``module`` imports, at
    module level or in a function, leaving out ``if TYPE_CHECKING:``."""
    path = MODULES[module]
    found = set()
    for stmt, type_checking in _statements(ast.parse(path.read_text()), type_checking=False):
        if type_checking:
            continue
        if isinstance(stmt, ast.Import):
            found.update(alias.name.split(".")[0] for alias in stmt.names)
        elif not stmt.level and stmt.module:
            found.add(stmt.module.split(".")[0])
    return found - set(PACKAGES)


def upward_imports(graph: dict[str, dict[str, Import]]) -> list[str]:
    """Each import of a layer above the importing module's own (``BELOW``)."""
    found = []
    for source, targets in sorted(graph.items()):
        layer = source.split(".")[0]
        for target, imp in sorted(targets.items()):
            other = target.split(".")[0]
            if other != layer and other not in BELOW[layer]:
                found.append(f"{imp.where()}: {source} ({layer}) imports {target} ({other})")
    return found


def reached(graph: dict[str, dict[str, Import]], start: str) -> dict[str, list[str]]:
    """Every module ``start`` imports, directly or through others: module -> the
    chain of imports that gets there."""
    chains = {start: [start]}
    queue = deque([start])
    while queue:
        v = queue.popleft()
        for w in sorted(graph.get(v, {})):
            if w not in chains:
                chains[w] = [*chains[v], w]
                queue.append(w)
    return chains


def heavy_analysis_imports(
    graph: dict[str, dict[str, Import]], externals: dict[str, set[str]]
) -> list[str]:
    """Each ``analysis`` module that reaches Ray, TensorFlow, Keras or the trial
    and sweep code, with the chain of imports that does."""
    found = []
    for module in sorted(m for m in graph if m.split(".")[0] == "analysis"):
        for other, chain in reached(graph, module).items():
            if any(other == bad or other.startswith(bad + ".") for bad in NOT_FOR_ANALYSIS):
                found.append(" -> ".join(chain))
            for name in sorted(externals.get(other, set()) & set(HEAVY)):
                found.append(" -> ".join([*chain, name]))
    return found


def duplicate_names(modules: list[str]) -> list[str]:
    """Module names used twice: two modules, or a module and a package, whose last
    dotted parts are the same (a package goes by its folder's name)."""
    by_name: dict[str, list[str]] = {}
    for module in modules:
        by_name.setdefault(module.rpartition(".")[2], []).append(module)
    return [
        f"{name}: {', '.join(sorted(found))}"
        for name, found in sorted(by_name.items())
        if len(found) > 1
    ]


def test_each_layer_imports_only_the_layers_below_it():
    upward = upward_imports(import_graph())
    assert not upward, "imports of a layer above (lrbench > analysis > harness):\n" + "\n".join(
        upward
    )


def test_analysis_reaches_neither_ray_tensorflow_nor_trials_and_sweeps():
    graph = import_graph()
    heavy = heavy_analysis_imports(graph, {m: external_imports(m) for m in MODULES})
    assert not heavy, "analysis must stay pure reading and drawing:\n" + "\n".join(heavy)


def test_no_two_modules_share_a_name():
    twice = duplicate_names(sorted(MODULES))
    assert not twice, "module names used twice:\n" + "\n".join(twice)


def test_the_rules_catch_what_they_forbid():
    """Each rule, on a made-up graph that breaks it, names the offence."""

    class Where(Import):
        def where(self) -> str:
            return f"{self.source}:{self.line}"

    def graph_of(*edges: tuple[str, str]) -> dict[str, dict[str, Import]]:
        graph: dict[str, dict[str, Import]] = {}
        for a, b in edges:
            graph.setdefault(a, {})[b] = Where(a, b, (), 1)
            graph.setdefault(b, {})
        return graph

    up = upward_imports(graph_of(("harness.grid.parse", "analysis.load")))
    assert up == [
        "harness.grid.parse:1: harness.grid.parse (harness) imports analysis.load (analysis)"
    ]
    assert upward_imports(graph_of(("analysis.load", "lrbench.cli")))
    assert not upward_imports(
        graph_of(("lrbench.cli", "analysis.load"), ("analysis.load", "harness.errors"))
    )
    # through harness: analysis.cells -> harness.store.records -> harness.trial.models
    graph = graph_of(
        ("analysis.cells", "harness.store.records"),
        ("harness.store.records", "harness.trial.models"),
    )
    assert heavy_analysis_imports(graph, {}) == [
        "analysis.cells -> harness.store.records -> harness.trial.models"
    ]
    assert heavy_analysis_imports(graph_of(("analysis.cells", "harness.sweep.driver")), {})
    graph = graph_of(("analysis.cells", "harness.store.records"))
    assert heavy_analysis_imports(graph, {"harness.store.records": {"ray", "numpy"}}) == [
        "analysis.cells -> harness.store.records -> ray"
    ]
    assert not heavy_analysis_imports(graph, {"harness.store.records": {"numpy"}})
    assert duplicate_names(["harness.grid.plan", "analysis.report.plan"]) == [
        "plan: analysis.report.plan, harness.grid.plan"
    ]
    assert duplicate_names(["harness.store", "analysis.nightly.store"])  # a package's name
    cyclic = graph_of(("harness.a", "harness.b"), ("harness.b", "harness.a"))
    assert describe_cycles(cyclic)


# One interpreter imports the third-party libraries once, then forks a child per
# project module that imports that module alone: each child starts with no module
# of ours loaded, as a fresh interpreter would, without paying for numpy, pandas
# or TensorFlow again 80 times. A child's traceback comes back on a pipe.
IMPORT_ALONE = """
import importlib, json, os, sys, traceback
for name in sys.argv[1].split(","):
    importlib.import_module(name)
assert not [m for m in sys.modules if m.split(".")[0] in sys.argv[2].split(",")]
failed = {}
for module in sys.argv[3:]:
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:
        os.close(read)
        try:
            importlib.import_module(module)
            os._exit(0)
        except BaseException:
            os.write(write, traceback.format_exc()[-3000:].encode())
            os._exit(1)
    os.close(write)
    with os.fdopen(read) as pipe:
        error = pipe.read()
    if os.waitpid(pid, 0)[1] != 0:
        failed[module] = error or "exited with an error"
print(json.dumps(failed))
"""
THIRD_PARTY = ("numpy", "pandas", "pyarrow.dataset", "pyarrow.parquet", "typer", "rich")


@pytest.fixture(scope="module")
def import_failures() -> dict[str, str]:
    """Each project module that fails to import alone: its traceback."""
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3", "MPLBACKEND": "Agg"}
    done = subprocess.run(
        [sys.executable, "-c", IMPORT_ALONE, ",".join(THIRD_PARTY), ",".join(PACKAGES)]
        + sorted(MODULES),
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads(done.stdout.strip().splitlines()[-1])


@pytest.mark.parametrize("module", sorted(MODULES))
def test_each_module_imports_on_its_own(module, import_failures):
    assert module not in import_failures, import_failures.get(module)


def test_a_module_that_fails_alone_is_caught(tmp_path):
    """The forking check sees a module that imports only after another one."""
    (tmp_path / "first.py").write_text("import second\n")
    (tmp_path / "second.py").write_text("import first\nVALUE = first.__name__\n")
    (tmp_path / "broken.py").write_text("from first import missing\n")
    done = subprocess.run(
        [sys.executable, "-c", IMPORT_ALONE, "json", "first,second,broken", "first", "broken"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
    )
    failed = json.loads(done.stdout.strip().splitlines()[-1])
    assert sorted(failed) == ["broken"] and "ImportError" in failed["broken"]


def test_the_walker_finds_imports_everywhere_but_under_type_checking(tmp_path):
    code = (
        "from typing import TYPE_CHECKING\n"
        "import harness.grid.parse\n"
        "from harness import sysinfo\n"
        "from analysis.load import load_results\n"
        "if TYPE_CHECKING:\n"
        "    from harness.trial.train import run_trial\n"
        "else:\n"
        "    import harness.trial.data\n"
        "def f():\n"
        "    from harness.store.results import Store\n"
        "    class A:\n"
        "        def g(self):\n"
        "            try:\n"
        "                from harness.trial.models import build_model\n"
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
    assert _project_module("harness.grid.parse.GridSpec") == "harness.grid.parse"
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
