"""``harness.lazy``: a module imported on first use, and the rule of what lrbench
imports that way (Ray, TensorFlow and Keras never reached from ``analysis``
through a lazy module either)."""

from __future__ import annotations

import ast
import json
import os
import pickle
import subprocess
import sys
import textwrap
import threading
import time
import types

import pytest

from harness.lazy import lazy
from tests.test_architecture import (
    MODULES,
    PACKAGES,
    ROOT,
    external_imports,
    heavy_analysis_imports,
    import_graph,
)

# What lrbench's modules may hold lazily (``harness.lazy``'s rule); the modules on
# the CLI's start-up path may hold anything lazily (pandas, pyarrow, analysis...)
LAZY_LIBRARIES = {"tensorflow", "keras", "ray", "matplotlib", "seaborn", "tensorboard"}


@pytest.fixture
def module_dir(tmp_path, monkeypatch):
    """A folder on ``sys.path`` for made-up modules; ``write(name, body)``
    writes one (``a.b`` as a package); they leave ``sys.modules`` afterwards."""
    monkeypatch.syspath_prepend(str(tmp_path))
    written: list[str] = []

    def write(name: str, body: str) -> str:
        *packages, last = name.split(".")
        folder = tmp_path
        for part in packages:
            folder = folder / part
            folder.mkdir(exist_ok=True)
            (folder / "__init__.py").touch()
        (folder / f"{last}.py").write_text(textwrap.dedent(body))
        written.append(name.split(".")[0])
        return name

    yield write
    for name in [m for m in sys.modules if m.split(".")[0] in written]:
        del sys.modules[name]


def test_nothing_is_imported_until_an_attribute_is_read(tmp_path):
    """In a fresh interpreter: the stand-in exists, the module is not imported
    (its body has not run) until the first attribute read."""
    (tmp_path / "lazy_probe.py").write_text(
        "import sys\nsys.lazy_probe_ran = True\nVALUE = 42\ndef double(x):\n    return 2 * x\n"
    )
    code = textwrap.dedent(
        """
        import json, sys
        from harness.lazy import lazy
        probe = lazy("lazy_probe")
        pending = lazy("tomllib")  # a real library, never touched here
        before = {
            "imported": "lazy_probe" in sys.modules,
            "ran": hasattr(sys, "lazy_probe_ran"),
            "repr": repr(probe),
            "name": probe.__name__,
            "tomllib": "tomllib" in sys.modules,
        }
        value = probe.VALUE
        after = {
            "imported": "lazy_probe" in sys.modules,
            "value": value,
            "double": probe.double(21),
            "repr": repr(probe),
            "tomllib": "tomllib" in sys.modules,
        }
        print(json.dumps([before, after]))
        """
    )
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(tmp_path), str(ROOT)])}
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, env=env, check=True
    )
    before, after = json.loads(done.stdout)
    assert before == {
        "imported": False,
        "ran": False,
        "repr": "<lazy module 'lazy_probe' (not imported yet)>",
        "name": "lazy_probe",
        "tomllib": False,
    }
    assert after["imported"] and after["value"] == 42 and after["double"] == 42
    assert after["repr"].startswith("<module 'lazy_probe' from ")
    assert not after["tomllib"]


def test_the_hook_runs_once_before_the_import(module_dir):
    name = module_dir("lazy_hooked", "import sys\nSEEN = sys.lazy_hook_calls[:]\nVALUE = 'v'\n")
    calls: list[bool] = []
    sys.lazy_hook_calls = calls
    try:
        module = lazy(name, before=lambda: calls.append(name in sys.modules))
        assert calls == []
        assert module.VALUE == "v"
        assert module.SEEN == [False]  # the hook ran, before the module's body
        assert module.VALUE == "v" and module.SEEN == [False]
        assert calls == [False]  # once
    finally:
        del sys.lazy_hook_calls


def test_the_hook_runs_once_when_threads_read_at_the_same_time(module_dir):
    name = module_dir("lazy_raced", "import time\ntime.sleep(0.05)\nVALUE = 7\n")
    calls: list[int] = []

    def hook() -> None:
        calls.append(1)
        time.sleep(0.05)

    module = lazy(name, before=hook)
    seen: list[int] = []
    threads = [threading.Thread(target=lambda: seen.append(module.VALUE)) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert seen == [7] * 8 and calls == [1]


def test_after_the_import_it_reads_as_the_module(module_dir):
    name = module_dir(
        "lazy_pkg.inner",
        """
        CONSTANT = 3
        class Thing:
            pass
        def make():
            return Thing()
        """,
    )
    module = lazy(name)
    assert isinstance(module, types.ModuleType)
    assert isinstance(module.make(), module.Thing)
    assert module.CONSTANT == 3
    assert module.__name__ == name and module.__file__.endswith("inner.py")
    real = sys.modules[name]
    assert module.Thing is real.Thing
    assert "make" in dir(module)
    # a name the real module gains later (a submodule imported afterwards) is found too
    module_dir("lazy_pkg.inner2", "X = 1\n")
    package = lazy("lazy_pkg")
    assert package.inner.CONSTANT == 3
    import lazy_pkg.inner2  # noqa: F401

    assert package.inner2.X == 1


def test_a_missing_module_fails_at_first_use_naming_it():
    module = lazy("lazy_no_such_module")  # no error yet
    with pytest.raises(ModuleNotFoundError, match="lazy_no_such_module"):
        module.anything  # noqa: B018
    with pytest.raises(ModuleNotFoundError, match="lazy_no_such_module"):
        module.anything  # noqa: B018  # and again: nothing half-done is kept


def test_a_pickled_stand_in_unpickles_as_one_still_lazy(module_dir):
    """A function that refers to one can be sent to another process (Ray)."""
    name = module_dir("lazy_pickled", "VALUE = 5\n")
    copy = pickle.loads(pickle.dumps(lazy(name)))
    assert repr(copy).startswith("<lazy module") and name not in sys.modules
    assert copy.VALUE == 5


# The rule, over lrbench's own modules ----------------------------------------


def lazy_calls(module: str) -> list[tuple[str, int]]:
    """The module names ``module`` passes to ``lazy(...)``, with their lines."""
    tree = ast.parse(MODULES[module].read_text())
    return [
        (node.args[0].value, node.lineno)
        for node in ast.walk(tree)
        if isinstance(node, ast.Call)
        and isinstance(node.func, ast.Name)
        and node.func.id == "lazy"
        and node.args
        and isinstance(node.args[0], ast.Constant)
        and isinstance(node.args[0].value, str)
    ]


def _project(name: str) -> str | None:
    """The project module ``name`` is, or is in; None for a library."""
    parts = name.split(".")
    while parts:
        if ".".join(parts) in MODULES:
            return ".".join(parts)
        parts.pop()
    return None


@pytest.fixture(scope="module")
def startup_imports() -> set[str]:
    """Every module that ``import lrbench.cli`` and loading a grid import."""
    code = (
        "import json, sys, lrbench.cli, harness.grid.parse\n"
        "harness.grid.parse.load_grid('grids/paper.toml')\n"
        "print(json.dumps(sorted(sys.modules)))"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True
    )
    return set(json.loads(done.stdout))


@pytest.fixture(scope="module")
def startup_modules(startup_imports) -> set[str]:
    """lrbench's modules on the CLI's start-up path."""
    return {m for m in startup_imports if m.split(".")[0] in PACKAGES}


def test_the_start_up_path_imports_no_heavy_library(startup_imports):
    heavy = ("tensorflow", "keras", "ray", "pandas", "pyarrow", "matplotlib", "tensorboard")
    assert not sorted(m for m in startup_imports if m.split(".")[0] in heavy)


def top_libraries(module: str) -> set[str]:
    """The libraries ``module`` imports at its top (not under ``TYPE_CHECKING``)."""
    found = set()
    for stmt in ast.parse(MODULES[module].read_text()).body:
        if isinstance(stmt, ast.Import):
            found.update(alias.name.split(".")[0] for alias in stmt.names)
        elif isinstance(stmt, ast.ImportFrom) and not stmt.level and stmt.module:
            found.add(stmt.module.split(".")[0])
    return found


def lazy_allowed(target: str) -> bool:
    """One of the heavy libraries, or a module of ours that imports one at its top."""
    inner = _project(target)
    if inner is None:
        return target.split(".")[0] in LAZY_LIBRARIES
    return bool(top_libraries(inner) & LAZY_LIBRARIES)


def test_only_the_heavy_libraries_are_lazy_off_the_start_up_path(startup_modules):
    wrong = [
        f"{MODULES[m].relative_to(ROOT)}:{line}: lazy({target!r})"
        for m in sorted(MODULES)
        if m not in startup_modules
        for target, line in lazy_calls(m)
        if not lazy_allowed(target)
    ]
    assert not wrong, "import these at the top of the module (harness.lazy's rule):\n" + "\n".join(
        wrong
    )


def test_a_lazy_heavy_import_in_analysis_is_caught(tmp_path, monkeypatch):
    probe = tmp_path / "probe.py"
    probe.write_text(
        "from typing import TYPE_CHECKING\n"
        "from harness.lazy import lazy\n"
        "if TYPE_CHECKING:\n"
        "    from ray import tune\n"
        "else:\n"
        "    tune = lazy('ray.tune')\n"
        "    driver = lazy('harness.sweep.driver')\n"
    )
    monkeypatch.setitem(MODULES, "analysis.lazy_probe", probe)
    graph = import_graph()
    heavy = heavy_analysis_imports(graph, {m: external_imports(m) for m in MODULES})
    assert "analysis.lazy_probe -> ray" in heavy
    assert any(h.startswith("analysis.lazy_probe -> harness.sweep.driver") for h in heavy)


def test_the_rule_tells_heavy_libraries_from_the_rest():
    assert lazy_allowed("keras") and lazy_allowed("matplotlib.pyplot")
    assert lazy_allowed("harness.trial.keras_schedules")  # subclasses Keras' at its top
    assert not lazy_allowed("pandas") and not lazy_allowed("pyarrow.fs")
    assert not lazy_allowed("analysis.display")


def test_keras_and_tensorflow_load_through_the_quiet_hook():
    """Every lazy Keras or TensorFlow (or a module of ours that imports Keras at
    its top) names a ``before`` hook: ``harness.trial.quiet``'s quiet import."""
    unhooked = []
    for path in sorted(MODULES.values()):
        for node in ast.walk(ast.parse(path.read_text())):
            if not (
                isinstance(node, ast.Call)
                and isinstance(node.func, ast.Name)
                and node.func.id == "lazy"
                and node.args
                and isinstance(node.args[0], ast.Constant)
            ):
                continue
            target = node.args[0].value
            inner = _project(target)
            tops = top_libraries(inner) if inner else {target.split(".")[0]}
            hooked = any(k.arg == "before" for k in node.keywords) or len(node.args) > 1
            if tops & {"keras", "tensorflow"} and not hooked:
                unhooked.append(f"{path.relative_to(ROOT)}:{node.lineno}: lazy({target!r})")
    assert not unhooked, "give these before=import_keras_quietly (or tensorflow's):\n" + (
        "\n".join(unhooked)
    )
