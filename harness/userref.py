"""References to a user's code: ``module:function`` or ``path/to/file.py:function``.

A grid names a model builder or a dataset loader this way, as console-script
entry points and ``uvicorn app:main`` do. The module is imported with the grid
file's directory and the working directory on ``sys.path``, like a local
module; the file form imports ``file.py`` as the module ``file`` from its
folder. On Ray's workers the module arrives through Ray's ``runtime_env``
(``py_modules``): ``shipped`` names what to send, the module's top-level
package folder or its single file.

Nothing here imports the user's module unless asked to (``resolve``): the
sweep's driver fingerprints a builder's source (``fingerprint``) and ships it
without running it, so it never imports TensorFlow on the user's behalf.
"""

from __future__ import annotations

import contextlib
import hashlib
import importlib
import importlib.machinery
import importlib.util
import os
import re
import sys
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from harness.errors import last_line, one_line

_DOTTED = re.compile(r"[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)*")


class RefError(Exception):
    """A reference that cannot be parsed, found or imported; the message is one line."""


@dataclass(frozen=True)
class Ref:
    """A parsed reference: the module to import and the attribute in it."""

    text: str  # as the grid wrote it
    module: str  # dotted module name ("mine" for "path/to/mine.py")
    attr: str  # dotted attribute path in the module
    file: str | None  # the .py file of the file form, as written

    @property
    def top(self) -> str:
        """The top-level package or module name (what ``py_modules`` ships)."""
        return self.module.split(".")[0]


def parse(text: str) -> Ref:
    """Split ``module:function`` or ``path/to/file.py:function``; RefError if neither."""
    module, sep, attr = text.rpartition(":")
    if not sep or not module or not _DOTTED.fullmatch(attr):
        raise RefError(f"{text!r} is not 'module:function' or 'path/to/file.py:function'")
    if module.endswith(".py"):
        stem = Path(module).stem
        if not _DOTTED.fullmatch(stem) or "." in stem:
            raise RefError(f"{module!r}: a file's name must be a Python identifier")
        return Ref(text, stem, attr, module)
    if not _DOTTED.fullmatch(module):
        raise RefError(f"{module!r} is not a module name (or a path ending in .py)")
    return Ref(text, module, attr, None)


def search_dirs(grid_source: str) -> list[str]:
    """Where a grid's references are looked up: the grid file's directory, then
    the working directory."""
    dirs = [str(Path(grid_source).resolve().parent), str(Path.cwd())]
    return list(dict.fromkeys(dirs))


def add_to_path(dirs: Iterable[str]) -> None:
    """Put ``dirs`` at the front of ``sys.path``, in order (each once)."""
    dirs = list(dict.fromkeys(dirs))
    sys.path[:] = dirs + [p for p in sys.path if p not in dirs]


def _file_dir(ref: Ref, dirs: list[str]) -> str:
    """The folder holding the file of a file-form reference."""
    assert ref.file is not None
    path = Path(ref.file)
    for base in [] if path.is_absolute() else dirs:
        if (Path(base) / path).is_file():
            return str((Path(base) / path).parent.resolve())
    if path.is_absolute() and path.is_file():
        return str(path.parent)
    raise RefError(f"{ref.file}: no such file (looked in {', '.join(dirs)})")


def module_file(ref: Ref, dirs: list[str]) -> Path:
    """The source file of the referenced module, found without running it."""
    if ref.file is not None:
        return Path(_file_dir(ref, dirs)) / Path(ref.file).name
    found = _find_spec(ref, dirs)
    if found.origin is None or not Path(found.origin).is_file():
        raise RefError(f"module {ref.module!r} has no source file")
    return Path(found.origin)


def _find_spec(ref: Ref, dirs: list[str]) -> Any:
    # a submodule's spec imports its parent packages (their __init__ runs)
    add_to_path(dirs)
    _forget_if_moved(ref.top)
    try:
        found = importlib.util.find_spec(ref.module)
    except Exception as exc:  # a parent package's __init__ may raise anything
        raise RefError(f"cannot import {ref.module!r}: {one_line(exc)}") from None
    if found is None:
        raise RefError(f"no module named {ref.module!r} (looked in {', '.join(dirs)})")
    return found


def fingerprint(text: str, dirs: list[str]) -> str:
    """A short hash of the referenced code: every ``.py`` file of the package
    Ray ships for it when it lives in ``dirs`` (a helper module of the builder
    changes it too), else the module's own file."""
    ref = parse(text)
    shipped_path = Path(shipped(text, dirs))
    inside = any(shipped_path.is_relative_to(d) for d in dirs)
    if inside and shipped_path.is_dir():
        files = sorted(p for p in shipped_path.rglob("*.py") if "__pycache__" not in p.parts)
    else:
        files = [module_file(ref, dirs)]
    digest = hashlib.sha256()
    for path in files:
        if len(files) > 1:
            digest.update(str(path.relative_to(shipped_path)).encode() + b"\0")
        digest.update(path.read_bytes())
    return digest.hexdigest()[:16]


def shipped(text: str, dirs: list[str]) -> str:
    """What Ray's ``py_modules`` must send for the reference to import on a
    worker: its top-level package folder, or its single module file."""
    ref = parse(text)
    if ref.file is not None:
        return str(Path(_file_dir(ref, dirs)) / Path(ref.file).name)
    top = _find_spec(Ref(text, ref.top, ref.attr, None), dirs)
    if top.submodule_search_locations:  # a package: its folder
        return str(Path(next(iter(top.submodule_search_locations))).resolve())
    if top.origin is None:
        raise RefError(f"module {ref.top!r} has no source file to send to Ray's workers")
    return str(Path(top.origin).resolve())


@contextlib.contextmanager
def quiet_stderr() -> Iterator[None]:
    """Send file descriptor 2 to /dev/null for a while: TensorFlow prints its
    C++ start-up notices (oneDNN, CUDA probing) there while it is imported,
    before its logging is set up, so ``TF_CPP_MIN_LOG_LEVEL`` cannot hide them
    and they would bury the one line lrbench says. Used around importing
    Keras and a user's module (which may import TensorFlow)."""
    sys.stderr.flush()
    saved = os.dup(2)
    try:
        with open(os.devnull, "w") as null:
            os.dup2(null.fileno(), 2)
            yield
    finally:
        sys.stderr.flush()
        os.dup2(saved, 2)
        os.close(saved)


def _forget_if_moved(top: str) -> None:
    """Drop an imported package (and its submodules) that the path now finds
    elsewhere: another project's module of the same name, imported earlier in
    this process, must not stand in for this one."""
    cached = sys.modules.get(top)
    if cached is None:
        return
    found = importlib.machinery.PathFinder.find_spec(top, sys.path)
    if found is None:
        return
    where = found.origin or next(iter(found.submodule_search_locations or []), None)
    was = getattr(cached, "__file__", None) or next(iter(getattr(cached, "__path__", [])), None)
    if where and was and Path(where).resolve() != Path(was).resolve():
        for name in [m for m in sys.modules if m == top or m.startswith(top + ".")]:
            del sys.modules[name]


def resolve(text: str, dirs: Iterable[str] = ()) -> Callable[..., Any]:
    """Import the referenced module (``dirs`` first on the path) and return the
    callable. RefError, one line, when it does not import or is not there."""
    ref = parse(text)
    dirs = list(dirs)
    if ref.file is not None and dirs:
        dirs = [_file_dir(ref, dirs), *dirs]
    add_to_path(dirs)
    _forget_if_moved(ref.top)
    if dirs:
        _find_spec(ref, dirs)  # a module that is not there: say where it was looked for
    try:
        with quiet_stderr():
            obj: Any = importlib.import_module(ref.module)
    except Exception as exc:  # a user's module may raise anything while it imports
        raise RefError(f"cannot import {ref.module!r}: {last_line(exc)}") from None
    for part in ref.attr.split("."):
        if not hasattr(obj, part):
            raise RefError(f"module {ref.module!r} has no attribute {ref.attr!r}")
        obj = getattr(obj, part)
    if not callable(obj):
        raise RefError(f"{text} is not a function (it is {type(obj).__name__!r})")
    return obj
