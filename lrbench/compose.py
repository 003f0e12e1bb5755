"""Compose a runnable grid: parse its file, then resolve the inputs that come
from earlier results (``lr = { best = DIR }``, ``lr = { finder = DIR }``).

The one place that joins the grid stage with the analysis of an earlier sweep,
above both, so that neither imports the other. The CLI's ``sweep``, ``show``,
``find-lr`` and ``nightly`` all start here.
"""

from __future__ import annotations

from pathlib import Path

from harness.errors import GridError, LrbenchError
from harness.grid.parse import load_grid
from harness.grid.specs import MAX_TRIALS, GridSpec


def prepare_grid(
    path: str | Path, max_trials: int = MAX_TRIALS, resolve_finder: bool = True
) -> GridSpec:
    """Read and validate a grid file, and choose its LRs from the earlier sweep
    when it says ``lr = { best = DIR }``, or around each optimizer's range-test
    suggestion when it says ``lr = { finder = DIR }`` (unless not
    ``resolve_finder``: ``find-lr`` runs those range tests, it does not read them).
    DIR is read where the grid gives it, credentials included (``location``);
    the grid returned names it as shown and stored (``results``)."""
    grid = load_grid(path, max_trials)
    if grid.finder_lr is not None and resolve_finder:
        from analysis.finder.finder_lrs import resolve_finder_lrs
        from analysis.load import load_finder

        try:
            points = load_finder(grid.finder_lr.location)
        except LrbenchError as exc:
            raise GridError(grid.source, "lr.finder", str(exc)) from None
        return resolve_finder_lrs(grid, points)
    if grid.best_lr is None:
        return grid
    from analysis.bestlr import resolve_best_lrs
    from analysis.load import load_results

    try:
        trials = load_results(grid.best_lr.location).trials
    except LrbenchError as exc:
        raise GridError(grid.source, "lr.best", str(exc)) from None
    return resolve_best_lrs(grid, trials)
