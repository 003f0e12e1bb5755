"""Compose a runnable grid: parse its file, then resolve its learning rates,
from earlier results where it says so (``lr = { best = DIR }``,
``lr = { finder = DIR }``).

The one place that joins the grid stage with the analysis of an earlier sweep,
above both, so that neither imports the other. The CLI's ``sweep``, ``show``
and ``nightly`` all start here.
"""

from __future__ import annotations

from pathlib import Path

from analysis.bestlr import resolve_best_lrs
from analysis.finder.finder_lrs import resolve_finder_lrs
from analysis.load import load_finder, load_results
from harness.errors import GridError, LrbenchError
from harness.grid.parse import load_grid
from harness.grid.resolved import ResolvedGrid
from harness.grid.specs import MAX_TRIALS, Fixed, FromBest, FromFinder


def prepare_grid(path: str | Path, max_trials: int = MAX_TRIALS) -> ResolvedGrid:
    """Read and validate a grid file, and resolve its learning rates: its own,
    those it chooses from the earlier sweep when it says ``lr = { best = DIR }``,
    or the ladders around each optimizer's range-test suggestion when it says
    ``lr = { finder = DIR }``. DIR is read where the grid gives it, credentials
    included (``location``); the grid returned names it as shown and stored
    (``results``)."""
    grid = load_grid(path, max_trials)
    match grid.lr:
        case Fixed():
            return ResolvedGrid.fixed(grid)
        case FromBest(location=location):
            try:
                trials = load_results(location).trials
            except LrbenchError as exc:
                raise GridError(grid.source, "lr.best", str(exc)) from None
            return resolve_best_lrs(grid, trials)
        case FromFinder(location=location):
            try:
                points = load_finder(location)
            except LrbenchError as exc:
                raise GridError(grid.source, "lr.finder", str(exc)) from None
            return resolve_finder_lrs(grid, points)
