"""``lr = { best = DIR }``: each optimizer's best learning rates in an earlier
sweep's trials, by the analysis' own rule (``ranked_lrs``: fastest median time
to target among the cells that succeed; ties to fewer steps, then to the lower
LR). A pure function of the grid and a trials DataFrame; ``lrbench.compose``
reads the earlier sweep and calls it."""

from __future__ import annotations

from typing import TYPE_CHECKING

from analysis.cells import ranked_lrs
from analysis.labels import label_series
from harness.errors import GridError
from harness.grid.resolved import ChosenLr, ResolvedGrid, Skipped
from harness.grid.specs import FromBest, GridSpec, kwargs_json
from harness.store.records import TrialStatus

if TYPE_CHECKING:
    import pandas as pd


def resolve_best_lrs(grid: GridSpec, trials: pd.DataFrame) -> ResolvedGrid:
    """``grid`` (``lr = { best = DIR }``) resolved: its LRs chosen from
    ``trials``, the rows of the sweep DIR names (``ResolvedGrid.from_best``).

    An optimizer with no succeeding LR there is skipped, and so is one the
    sweep never ran. No optimizer left to run is a ``GridError`` on ``lr.best``.
    """
    best = grid.lr
    if not isinstance(best, FromBest):
        raise TypeError(f"resolve_best_lrs takes a grid with lr = {{ best = DIR }}: {grid.source}")
    trials = label_series(trials)
    chosen: list[ChosenLr] = []
    skipped: list[Skipped] = []
    for opt in grid.optimizers:
        kwargs = kwargs_json(opt.kwargs)  # as the trials table stores them
        mine = trials[(trials["optimizer"] == opt.name) & (trials["optimizer_kwargs"] == kwargs)]
        if mine.empty:
            skipped.append(Skipped(opt.label, "absent", best.results))
            continue
        variants = sorted(set(mine["variant"]))
        if len(variants) > 1:
            raise GridError(
                grid.source,
                "lr.best",
                f"{best.results} has several setups of {opt.label} ({'; '.join(variants)}); "
                "point lr.best at a sweep with one setup per optimizer",
            )
        top = ranked_lrs(mine, best.top_k, best.min_success)
        if top.empty:
            reached = int((mine["status"] == TrialStatus.REACHED.value).sum())
            skipped.append(
                Skipped(opt.label, "no_success", best.results, len(mine), reached, best.min_success)
            )
            continue
        chosen += [
            ChosenLr(
                optimizer=opt.name,
                optimizer_kwargs=dict(opt.kwargs),
                lr=float(row.lr),
                rank=int(row.rank),
                time_s=float(row.time_median_s),
                steps=float(row.steps_median),
                success_rate=float(row.success_rate),
            )
            for row in top.itertuples()
        ]
    if not chosen:
        raise GridError(
            grid.source,
            "lr.best",
            f"no optimizer of this grid succeeded in {best.results}: none has a learning "
            f"rate that reached the target ({'; '.join(s.text for s in skipped)})",
        )
    return ResolvedGrid.from_best(grid, chosen, skipped)
