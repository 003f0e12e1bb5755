"""Modules imported on first use: ``lazy(name)``, a stand-in for a heavy library.

The rule: only TensorFlow, Keras, Ray, matplotlib (with seaborn) and TensorBoard
are imported lazily, through ``lazy``; so is a module of lrbench's own that
imports one of them at its top (its classes subclass Keras' or Ray's).
Everything else (NumPy, pandas, pyarrow, the standard library, lrbench's other
modules) is imported at the top of the module that uses it. The one exception
is the CLI's start-up path: the modules that ``import lrbench.cli`` and loading
a grid (``harness.grid.parse``) import hold pandas, pyarrow and the analysis
modules lazily too, so that ``--help`` and a bad grid file's error come back at
once. ``tests/harness/test_lazy.py`` checks the rule.

A module holds its lazy libraries at module level, the real imports under
``TYPE_CHECKING`` so that type checkers see the real modules::

    from typing import TYPE_CHECKING

    from harness.lazy import lazy

    if TYPE_CHECKING:
        import keras
        from ray import tune
    else:
        keras = lazy("keras", before=import_keras_quietly)
        tune = lazy("ray.tune")

The stand-in is a module object. The first read of one of its attributes runs
``before`` (once: TensorFlow's notices turned down, say), imports the real
module, copies the real module's namespace into the stand-in and answers from
it; later reads find their names there directly, and a name the copy lacks (a
submodule imported later) is looked up on the real module. A name rebound in
the real module after that copy is not seen through the stand-in, so a test
patches the stand-in's module-level name, not the library. A module that
cannot be imported raises its ``ModuleNotFoundError`` at that first use.
"""

from __future__ import annotations

import importlib
import threading
import types
from collections.abc import Callable
from typing import Any


class LazyModule(types.ModuleType):
    """A module that imports ``name`` on the first read of an attribute."""

    def __init__(self, name: str, before: Callable[[], object] | None = None) -> None:
        super().__init__(name)
        self._lazy_name = name
        self._lazy_before = before
        self._lazy_ran_before = False
        self._lazy_lock = threading.RLock()
        self._lazy_module: types.ModuleType | None = None

    def _lazy_load(self) -> types.ModuleType:
        """The real module, imported (after ``before``) the first time."""
        with self._lazy_lock:
            if self._lazy_module is None:
                if self._lazy_before is not None and not self._lazy_ran_before:
                    self._lazy_before()
                    self._lazy_ran_before = True
                module = importlib.import_module(self._lazy_name)
                self.__dict__.update(module.__dict__)
                self._lazy_module = module
            return self._lazy_module

    def __getattr__(self, item: str) -> Any:
        module = self._lazy_module
        if module is None:
            module = self._lazy_load()
        return getattr(module, item)

    def __dir__(self) -> list[str]:
        return dir(self._lazy_load())

    def __repr__(self) -> str:
        if self._lazy_module is None:
            return f"<lazy module {self._lazy_name!r} (not imported yet)>"
        return repr(self._lazy_module)

    def __reduce__(self) -> tuple[Any, ...]:
        # pickled (a function that refers to it, sent to a Ray worker) as a new stand-in
        return (lazy, (self._lazy_name, self._lazy_before))


def lazy(name: str, before: Callable[[], object] | None = None) -> types.ModuleType:
    """A stand-in for the module ``name`` that imports it on first use; ``before``
    runs once, just before that import (``harness.trial.quiet.import_keras_quietly``
    for Keras and TensorFlow)."""
    return LazyModule(name, before)
