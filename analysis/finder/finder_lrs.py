"""``lr = { finder = DIR, rule, decades, num }``: each optimizer's own ladder of
LRs around what a rule reads off its LR range test, and, once the ladder has
run, how the suggestion compares with the best LR the ladder confirmed.

Pure functions of a grid and DataFrames; ``lrbench.compose`` reads the range
tests and calls ``resolve_finder_lrs``, ``analysis.report.writer`` calls
``confirm_table`` with the sweep's manifest (which stores the ladders).
"""

from __future__ import annotations

import math
from dataclasses import asdict
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from analysis.cells import best_lr, cells
from analysis.finder import suggest as F
from analysis.labels import labelled
from harness.errors import GridError
from harness.grid.resolved import ResolvedGrid, SuggestedLr
from harness.grid.specs import FromFinder, GridSpec, kwargs_json

if TYPE_CHECKING:
    from harness.store.records import Manifest

# GridSpec axes that make more than one range-test setup per optimizer
_SETUP_AXES = {
    "dataset": "datasets",
    "train_size": "datasets",
    "model": "models",
    "width": "widths",
    "model_kwargs": "models",
    "batch_size": "batch sizes",
    "loss": "losses",
}


def _grid_keys(grid: GridSpec, opt: Any) -> pd.Series:
    """The range-test setup keys (``analysis.finder.suggest.setup_key``) of ``opt`` in ``grid``."""
    rows = []
    for setup in grid.setups((opt,), grid.seeds[0]):
        row = asdict(setup)
        row["model_kwargs"] = kwargs_json(row["model_kwargs"])
        row["optimizer_kwargs"] = kwargs_json(row["optimizer_kwargs"])
        rows.append(row)
    return F.setup_key(pd.DataFrame(rows)).drop_duplicates()


def resolve_finder_lrs(grid: GridSpec, points: pd.DataFrame) -> ResolvedGrid:
    """``grid`` (``lr = { finder = DIR }``) resolved (``ResolvedGrid.from_finder``):
    for each optimizer, the range test in ``points`` (the stored finder rows
    of DIR) of the grid's setup, the rule's suggestion, and the ladder around it.

    One line (``GridError`` on ``lr.finder`` or ``lr.rule``) when the grid has
    several setups per optimizer, when an optimizer has no range test there (or
    several), and when the rule gives it no suggestion.
    """
    finder = grid.lr
    if not isinstance(finder, FromFinder):
        raise TypeError(
            f"resolve_finder_lrs takes a grid with lr = {{ finder = DIR }}: {grid.source}"
        )
    first = _grid_keys(grid, grid.optimizers[0])
    if len(first) > 1:
        setups = grid.setups((grid.optimizers[0],), grid.seeds[0])
        varying = sorted(
            {
                axis
                for name, axis in _SETUP_AXES.items()
                if len({str(getattr(s, name)) for s in setups}) > 1
            }
        )
        raise GridError(
            grid.source,
            "lr.finder",
            f"gives each optimizer one ladder, but this grid has {len(first)} setups per "
            f"optimizer (several {', '.join(varying)}); give each setup its own grid",
        )
    found = F.suggestions(points) if len(points) else None
    if found is not None:
        found = found[found["rule"] == finder.rule].assign(_key=F.setup_key(found))
    chosen = []
    for opt in grid.optimizers:
        key = _grid_keys(grid, opt).iloc[0]
        mine = found[found["_key"] == key] if found is not None else None
        if mine is None or mine.empty:
            raise GridError(
                grid.source,
                "lr.finder",
                f"{finder.results} has no range test of {opt.label} on this grid's setup; "
                f"run `lrbench find-lr {grid.source} --out {finder.results}`",
            )
        if len(mine) > 1:
            ramps = "; ".join(
                f"seed {r.seed}, {r.start_lr:g} .. {r.end_lr:g} in {r.num_steps} steps"
                for r in mine.itertuples()
            )
            raise GridError(
                grid.source,
                "lr.finder",
                f"{finder.results} has {len(mine)} range tests of {opt.label} on this grid's "
                f"setup ({ramps}); keep one per setup there",
            )
        run = mine.iloc[0]
        suggested = float(run["suggested_lr"])
        if not math.isfinite(suggested):
            raise GridError(
                grid.source,
                "lr.rule",
                f"{finder.rule} gives no suggestion for {opt.label}: its range test in "
                f"{finder.results} stopped ({run['stop_reason']}) after {run['steps']} steps, "
                "too few for the rule; pick another rule or rerun find-lr with --steps",
            )
        chosen.append(
            SuggestedLr(
                optimizer=opt.name,
                optimizer_kwargs=dict(opt.kwargs),
                rule=finder.rule,
                suggested_lr=suggested,
                finder_id=str(run["finder_id"]),
                lrs=finder.ladder(suggested),
            )
        )
    return ResolvedGrid.from_finder(grid, chosen)


def confirm_table(
    trials: pd.DataFrame, manifests: dict[str, Manifest | None], min_success: float
) -> pd.DataFrame:
    """Per source whose grid said ``lr = { finder = DIR }`` and per optimizer
    (series, constant schedule): the rule and its ``suggested_lr``, the ladder
    (``ladder_low``, ``ladder_high``, ``ladder_num``), the ``best_lr`` it
    confirmed, ``decades_from_best`` (``log10(suggested / best)``, > 0: the
    suggestion is above the best), the cell at the suggestion itself
    (``suggested_outcome``, ``suggested_success_rate``; empty and NaN where the
    ladder did not run it: an even ``num``) and ``best_at_edge`` (the best is
    the ladder's lowest or highest LR: the optimum may lie beyond it). Empty
    when no source used a finder ladder."""
    df = labelled(trials)
    if "schedule" in df:
        df = df[df["schedule"] == "constant"]
    rows = []
    for source, manifest in manifests.items():
        grid = manifest.resolved_grid() if manifest is not None else None
        if grid is None or not isinstance(grid.spec.lr, FromFinder):
            continue
        for s in grid.suggested:
            mine = df[
                (df["source"] == source)
                & (df["optimizer"] == s.optimizer)
                & (df["optimizer_kwargs"] == kwargs_json(s.optimizer_kwargs))
            ]
            ladder = sorted(s.lrs)
            base = {
                "source": source,
                "optimizer": s.optimizer,
                "rule": s.rule,
                "suggested_lr": s.suggested_lr,
                "ladder_low": ladder[0],
                "ladder_high": ladder[-1],
                "ladder_num": len(ladder),
            }
            if mine.empty:
                rows.append({**base, "series": s.optimizer, "trials": 0})
                continue
            c = cells(mine, min_success)
            best = best_lr(c).set_index("series")["best_lr"]
            for series, group in c.groupby("series", sort=False):
                b = float(best[series])
                at = group[np.isclose(group["lr"], s.suggested_lr, rtol=1e-5, atol=0)]
                rows.append(
                    {
                        **base,
                        "series": series,
                        "trials": int(group["n"].sum()),
                        "best_lr": b,
                        "decades_from_best": math.log10(s.suggested_lr / b)
                        if math.isfinite(b)
                        else math.nan,
                        "suggested_outcome": at["outcome"].iloc[0] if len(at) else "",
                        "suggested_success_rate": float(at["success_rate"].iloc[0])
                        if len(at)
                        else math.nan,
                        "best_at_edge": bool(np.isclose(b, [ladder[0], ladder[-1]]).any())
                        if math.isfinite(b)
                        else None,
                    }
                )
    columns = [
        "source",
        "series",
        "optimizer",
        "rule",
        "suggested_lr",
        "ladder_low",
        "ladder_high",
        "ladder_num",
        "trials",
        "best_lr",
        "decades_from_best",
        "suggested_outcome",
        "suggested_success_rate",
        "best_at_edge",
    ]
    out = pd.DataFrame(rows, columns=columns)
    out["suggested_outcome"] = out["suggested_outcome"].fillna("")
    out["best_at_edge"] = pd.array(out["best_at_edge"], dtype="boolean")
    return out
