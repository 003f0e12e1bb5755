"""``lr = { best = DIR }``: take each optimizer's best learning rates from an
earlier sweep's results, by the analysis' own rule (``analysis.tables.ranked_lrs``:
fastest median time to target among the cells that succeed; ties to fewer
steps, then to the lower LR)."""

from __future__ import annotations

import json
from dataclasses import replace

from harness.errors import GridError, LrbenchError
from harness.grid import ChosenLr, GridSpec


def resolve_best_lrs(grid: GridSpec) -> GridSpec:
    """``grid`` with ``chosen_lrs`` (and ``skipped``) filled from ``grid.best_lr``.

    An optimizer whose source has no succeeding LR is skipped with a reason; an
    optimizer the source never ran is skipped too. A source that cannot be read,
    or that leaves no optimizer to run, is a ``GridError`` on ``lr.best``.
    """
    from analysis.load import load_results
    from analysis.tables import label_series, ranked_lrs

    best = grid.best_lr
    assert best is not None
    try:
        trials = label_series(load_results(best.results).trials)
    except LrbenchError as exc:
        raise GridError(grid.source, "lr.best", str(exc)) from None
    chosen: list[ChosenLr] = []
    skipped: list[str] = []
    for opt in grid.optimizers:
        # stored as TrialRecord.to_row writes it: json.dumps(kwargs, sort_keys=True)
        kwargs = json.dumps(dict(opt.kwargs), sort_keys=True)
        mine = trials[(trials["optimizer"] == opt.name) & (trials["optimizer_kwargs"] == kwargs)]
        if mine.empty:
            skipped.append(f"{opt.label}: not in {best.results}")
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
            n = len(mine)
            skipped.append(
                f"{opt.label}: none of its {n} trials in {best.results} reached the target"
                if (mine["status"] != "reached").all()
                else f"{opt.label}: no LR in {best.results} reached the target in "
                f"{best.min_success:.0%} of its seeds"
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
            f"no optimizer of this grid has a learning rate that reached the target in "
            f"{best.results} ({'; '.join(skipped)})",
        )
    return replace(grid, chosen_lrs=tuple(chosen), skipped=tuple(skipped))
