"""The sweep's up-front optimizer check, run in a child process.

``harness.models.check_optimizers`` builds each optimizer of a grid and takes
one update with it, which needs Keras and so TensorFlow. The sweep's driver
needs neither for anything else, so it runs the check in a child process,
loads data and starts Ray meanwhile, and waits for the child's verdict before
it opens the store. A bad keyword still fails as one line, before any trial,
and the driver never imports TensorFlow: its memory stays at about 260 MB
instead of 880 MB (``benchmarks/driver_memory.py``), which matters on a
cluster's head node and on a machine whose trials share its memory. The
child gets the grid at once and imports Keras while Ray starts, so on two
cores the driver waits about 1.4 s for its verdict, not the 6 s the check
takes on its own.

Usage::

    check = BackgroundCheck.start(grid)
    ...                      # load data, start Ray
    check.wait()             # raises GridError as check_optimizers would
"""

from __future__ import annotations

import json
import subprocess
import sys
from dataclasses import dataclass
from typing import Any

from harness.errors import GridError
from harness.specs import GridSpec


def _payload(grid: GridSpec) -> str | None:
    """The grid's optimizers as JSON for the child; None when a keyword's
    value is not plain JSON (the check then runs in this process)."""
    try:
        return json.dumps(
            {
                "source": grid.source,
                "optimizers": [{"name": o.name, "kwargs": o.kwargs} for o in grid.optimizers],
            },
            allow_nan=False,
        )
    except (TypeError, ValueError):
        return None


@dataclass
class BackgroundCheck:
    """``check_optimizers`` of a grid, running in a child process."""

    grid: GridSpec
    proc: subprocess.Popen | None  # None: not started, ``wait`` checks in this process

    @classmethod
    def start(cls, grid: GridSpec) -> BackgroundCheck:
        payload = _payload(grid)
        if payload is None:
            return cls(grid, None)
        proc = subprocess.Popen(
            [sys.executable, "-m", "harness.optcheck"],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,  # TensorFlow's start-up notices
            text=True,
        )
        try:  # the child reads it at once, then imports Keras while we go on
            assert proc.stdin is not None
            proc.stdin.write(payload)
            proc.stdin.close()
        except OSError:  # it died already: ``wait`` checks in this process
            pass
        return cls(grid, proc)

    def wait(self) -> None:
        """The child's verdict: returns, or raises the ``GridError`` that
        ``check_optimizers`` raises. A child that fails to answer (killed, no
        Python) gives way to the check in this process."""
        if self.proc is not None:
            proc, self.proc = self.proc, None
            try:
                assert proc.stdout is not None
                with proc.stdout:
                    out = proc.stdout.read()
                proc.wait()
                verdict = json.loads(out.strip().splitlines()[-1])  # the child's last line
            except (OSError, ValueError, IndexError):
                verdict = None
            if isinstance(verdict, dict):
                if verdict:
                    raise GridError(self.grid.source, verdict["field"], verdict["message"])
                return
        from harness.models import check_optimizers

        check_optimizers(self.grid.source, self.grid.optimizers)

    def close(self) -> None:
        """Stop the child if its verdict is no longer needed."""
        if self.proc is not None:
            proc, self.proc = self.proc, None
            proc.kill()
            proc.wait()
            if proc.stdout is not None:
                proc.stdout.close()


def _main() -> None:
    """The child: read the optimizers as JSON on stdin, print ``{}`` or the first
    problem's ``{"field": ..., "message": ...}``."""
    from harness.models import check_optimizers
    from harness.specs import OptimizerSpec

    given: dict[str, Any] = json.loads(sys.stdin.read())
    optimizers = [OptimizerSpec(o["name"], o["kwargs"]) for o in given["optimizers"]]
    try:
        check_optimizers(given["source"], optimizers)
    except GridError as exc:
        print(json.dumps({"field": exc.field, "message": exc.message}))
        return
    print("{}")


if __name__ == "__main__":
    _main()
