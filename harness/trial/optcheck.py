"""The sweep's up-front checks of a grid's code, run in a child process.

``harness.trial.models.check_optimizers`` builds each optimizer of a grid and takes
one update with it; ``harness.trial.models.check_models`` builds each model at each
width for the shapes of the grid's data, without training, and counts its
weights. Both need Keras and so TensorFlow. The sweep's driver needs neither
for anything else, so it runs the checks in a child process, loads data and
starts Ray meanwhile, and waits for the child's verdict before it opens the
store. A bad keyword or a builder that fails is still one line, before any
trial, and the driver never imports TensorFlow: its memory stays at about
260 MB instead of 880 MB (``benchmarks/driver_memory.py``), which matters on a
cluster's head node and on a machine whose trials share its memory. The child
gets the grid at once and imports Keras while the data loads and Ray starts,
so on two cores the driver waits about 1.4 s for the optimizers' verdict, not
the 6 s the check takes on its own.

Usage::

    check = BackgroundCheck.start(grid)  # the optimizers' check starts
    ...                                  # load data
    check.send(shapes)                   # the models' check, for the data's shapes
    ...                                  # start Ray
    sizes = check.wait()                 # raises GridError as the checks would

The child reads JSON lines on stdin: the grid's optimizers, then its models
and data shapes (or end of input: optimizers only). It prints one JSON line:
``{"field": ..., "message": ...}`` for the first problem, else the sizes.
"""

from __future__ import annotations

import contextlib
import json
import subprocess
import sys
from dataclasses import asdict, dataclass
from typing import Any

from harness import userref
from harness.errors import GridError
from harness.grid.specs import GridSpec, ModelSpec, OptimizerSpec
from harness.trial.models import DataShape, ModelSize, check_models, check_optimizers


def _optimizers(grid: GridSpec) -> str | None:
    """The grid's optimizers as a JSON line for the child; None when a
    keyword's value is not plain JSON (the checks then run in this process)."""
    try:
        return json.dumps(
            {
                "source": grid.source,
                "dirs": userref.search_dirs(grid.source),
                "optimizers": [{"name": o.name, "kwargs": o.kwargs} for o in grid.optimizers],
            },
            allow_nan=False,
        )
    except (TypeError, ValueError):
        return None


def _models(grid: GridSpec, shapes: list[DataShape]) -> str | None:
    try:
        return json.dumps(
            {"models": [asdict(m) for m in grid.models], "shapes": [asdict(s) for s in shapes]},
            allow_nan=False,
        )
    except (TypeError, ValueError):
        return None


def check_in_process(grid: GridSpec, shapes: list[DataShape] | None) -> list[ModelSize]:
    """The checks the child runs, in this process (imports TensorFlow)."""
    check_optimizers(grid.source, grid.optimizers)
    if shapes is None:
        return []
    return check_models(grid.source, grid.models, shapes, userref.search_dirs(grid.source))


@dataclass
class BackgroundCheck:
    """``check_optimizers`` and ``check_models`` of a grid, in a child process."""

    grid: GridSpec
    proc: subprocess.Popen | None  # None: not started, ``wait`` checks in this process
    shapes: list[DataShape] | None = None  # sent: the models are checked for these

    @classmethod
    def start(cls, grid: GridSpec) -> BackgroundCheck:
        """Start the child; it checks the optimizers at once."""
        payload = _optimizers(grid)
        if payload is None:
            return cls(grid, None)
        proc = subprocess.Popen(
            [sys.executable, "-m", "harness.trial.optcheck"],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,  # TensorFlow's start-up notices
            text=True,
        )
        check = cls(grid, proc)
        check._write(payload)  # the child reads it at once, then imports Keras
        return check

    def _write(self, line: str | None, close: bool = False) -> None:
        proc = self.proc
        if proc is None or proc.stdin is None or proc.stdin.closed:
            return
        try:
            if line is not None:
                proc.stdin.write(line + "\n")
                proc.stdin.flush()
            if close:
                proc.stdin.close()
        except OSError:  # it died already: ``wait`` checks in this process
            pass

    def send(self, shapes: list[DataShape]) -> None:
        """Have the models checked (and sized) for these data shapes."""
        self.shapes = list(shapes)
        payload = _models(self.grid, self.shapes)
        if payload is None:  # not plain JSON: ``wait`` checks in this process
            self.close()
            return
        self._write(payload, close=True)

    def wait(self) -> list[ModelSize]:
        """The child's verdict: the models' sizes, or the ``GridError`` the checks
        raise. A child that fails to answer (killed, no Python) gives way to
        the checks in this process."""
        if self.proc is not None:
            proc = self.proc
            self._write(None, close=True)
            self.proc = None
            try:
                assert proc.stdout is not None
                with proc.stdout:
                    out = proc.stdout.read()
                proc.wait()
                verdict = json.loads(out.strip().splitlines()[-1])  # the child's last line
            except (OSError, ValueError, IndexError):
                verdict = None
            if isinstance(verdict, dict):
                if "field" in verdict:
                    raise GridError(self.grid.source, verdict["field"], verdict["message"])
                return [ModelSize(**s) for s in verdict.get("sizes", [])]
        return check_in_process(self.grid, self.shapes)

    def close(self) -> None:
        """Stop the child if its verdict is no longer needed."""
        if self.proc is not None:
            proc, self.proc = self.proc, None
            proc.kill()
            proc.wait()
            for stream in (proc.stdin, proc.stdout):
                if stream is not None and not stream.closed:
                    with contextlib.suppress(OSError):
                        stream.close()


def _main() -> None:
    """The child: read the optimizers, check them, then read the models and
    shapes (if sent) and check them; print the verdict as one JSON line."""
    given: dict[str, Any] = json.loads(sys.stdin.readline())
    source = given["source"]
    optimizers = [OptimizerSpec(o["name"], o["kwargs"]) for o in given["optimizers"]]
    try:
        check_optimizers(source, optimizers)
        line = sys.stdin.readline()
        sizes: list[ModelSize] = []
        if line.strip():
            more = json.loads(line)
            models = [
                ModelSpec(m["name"], tuple(m["widths"]), m["kwargs"], m["builder"])
                for m in more["models"]
            ]
            shapes = [
                DataShape(**{**s, "input_shape": tuple(s["input_shape"])}) for s in more["shapes"]
            ]
            sizes = check_models(source, models, shapes, given["dirs"])
    except GridError as exc:
        print(json.dumps({"field": exc.field, "message": exc.message}))
        return
    print(json.dumps({"sizes": [asdict(s) for s in sizes]}))


if __name__ == "__main__":
    _main()
