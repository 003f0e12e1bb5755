"""The ``lrbench`` command line: thin commands over the library, one module per
command group (``runs``: sweep, show, find-lr, compact, migrate; ``reports``:
report, replay, export; ``nightly_cmd``: nightly run, judge, accept), registered
here in the order ``--help`` lists them. ``app`` is the console script.

The modules behind the commands are held by ``harness.lazy.lazy`` and loaded
when a command runs, so ``--help`` comes back at once, without NumPy, pandas,
pyarrow, TensorFlow or Ray.
"""

from __future__ import annotations

from lrbench.cli import nightly_cmd, reports, runs
from lrbench.cli.app import app

app.command()(runs.sweep)
app.command()(runs.show)
app.command("find-lr")(runs.find_lr)
app.command()(reports.report)
app.command()(runs.compact)
app.command()(runs.migrate)
app.command()(reports.replay)
app.add_typer(nightly_cmd.nightly, name="nightly")
app.command()(reports.export)

__all__ = ["app"]
