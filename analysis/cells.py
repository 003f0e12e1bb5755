"""Cells, bands and best LRs: pure functions from labelled trials to tidy frames.

Vocabulary (see ``docs/analysis.md``; series in ``analysis.labels``):

- A **cell** is one series at one learning rate; with several seeds it holds
  several trials.
- A cell **succeeds** when at least ``min_success`` (default half) of its
  finished trials reached the target. ``error`` trials are counted but not
  judged: they failed in the harness, not in training.
- A series' **band** runs from the lowest to the highest succeeding LR; LRs
  inside it that failed are its ``holes``. Its width is in decades,
  ``log10(high / low)``.
- The **best LR** is the succeeding cell with the fastest median time to
  target; ties go to fewer median steps, then to the lower LR.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from analysis.labels import labelled
from harness.grid.specs import SETUP_FIELDS
from harness.rules.frontier import Cell, unguarded
from harness.store.records import STATUSES, TrialStatus

SERIES = ["source", "series", "optimizer", "variant"]
CELL = [*SERIES, "lr"]
MIN_SUCCESS = 0.5
BAND_COLUMNS = ["n_lrs", "n_success_lrs", "lr_low", "lr_high", "decades", "holes"]
_BEST_COLUMNS = ["best_lr", "best_time_s", "best_steps", "best_success_rate"]


# The columns that make a stored trial's series in the frontier guard's sense
# (harness.rules.frontier): every field of its trial id but the LR, within one source
GUARD_SERIES = [
    "source",
    *(f for f in SETUP_FIELDS if f != "sweep"),
    "schedule",
    "target_metric",
    "target_acc",
    "budget_s",
    "max_epochs",
]


def guard_series(trials: pd.DataFrame) -> pd.Series:
    """Each trial's series id in the frontier guard's sense (``GUARD_SERIES``;
    each seed its own series), as text."""
    present = [c for c in GUARD_SERIES if c in trials.columns]
    keys = ["|".join(map(str, row)) for row in trials[present].itertuples(index=False)]
    return pd.Series(keys, index=trials.index, dtype=object)


def guard_view(trials: pd.DataFrame) -> pd.DataFrame:
    """Per source: what the frontier guard did and what it rests on. Trials it
    ``rechecked`` (and how many of them reached; the seconds their pruned first
    runs cost), pruned trials in series with no reached cell (``unguarded``:
    their verdicts rest on the pruning rule alone), and the ``holes`` its
    assumption of one band per series meets (a failing cell between two
    reached cells of one series)."""
    df = trials if "source" in trials.columns else trials.assign(source=trials["sweep"])
    df = df[df["status"] != TrialStatus.ERROR.value]
    rechecked = df["rechecked"].fillna(False).astype(bool) if "rechecked" in df else False
    df = df.assign(
        guard_series=guard_series(df), is_rechecked=rechecked, is_pruned=pruned_flags(df)
    )
    rows = []
    for source, g in df.groupby("source", sort=False):
        cells = [
            Cell(*cell)
            for cell in zip(
                g["trial_id"], g["guard_series"], g["lr"], g["status"], g["is_pruned"], strict=True
            )
        ]
        alone = unguarded(cells)
        again = g[g["is_rechecked"]]
        rows.append(
            {
                "source": source,
                "rechecked": len(again),
                "rechecked_reached": int((again["status"] == TrialStatus.REACHED.value).sum()),
                "recheck_first_runs_s": float(again["pruned_at_s"].fillna(0.0).sum()),
                "unguarded_series": len(alone),
                "unguarded_pruned": sum(alone.values()),
                "holes": sum(_holes(s) for _, s in g.groupby("guard_series", sort=False)),
            }
        )
    return pd.DataFrame(rows)


def _holes(series: pd.DataFrame) -> int:
    """Failing LRs between the lowest and the highest reached LR of one series."""
    ladder = series.sort_values("lr")
    reached = (ladder["status"] == TrialStatus.REACHED.value).to_numpy()
    if not reached.any():
        return 0
    first, last = reached.argmax(), len(reached) - 1 - reached[::-1].argmax()
    return int((~reached[first : last + 1]).sum())


def with_plot_values(trials: pd.DataFrame) -> pd.DataFrame:
    """Labelled trials plus where each is drawn: ``plot_time_s`` is the time to
    target, or the budget for a trial that missed it; ``plot_steps`` is the steps
    to target, or the source's step ceiling (the most steps any of its trials
    took). ``error`` trials are not drawn (NaN)."""
    df = labelled(trials).copy()
    reached = df["status"] == TrialStatus.REACHED.value
    failed = df["status"].isin([TrialStatus.BUDGET.value, TrialStatus.DIVERGED.value])
    steps = df["steps"].astype("float64")
    to_target = df["steps_to_target"].astype("float64")
    ceiling = np.fmax(steps, to_target).groupby(df["source"]).transform("max")
    df["steps_ceiling"] = ceiling
    df["plot_time_s"] = np.where(reached, df["time_to_target_s"], np.nan)
    df.loc[failed, "plot_time_s"] = df.loc[failed, "budget_s"]
    df["plot_steps"] = np.where(reached, to_target, np.nan)
    df.loc[failed, "plot_steps"] = ceiling[failed]
    return df


def cell_outcome(
    reached: int, budget: int, diverged: int, finished: int, min_success: float
) -> str:
    """A cell's outcome from its trial counts: ``reached`` when at least
    ``min_success`` of its finished trials did, else the more common miss
    (``diverged`` on a tie); ``error`` when none finished."""
    if finished == 0:
        return TrialStatus.ERROR.value
    if reached / finished >= min_success:
        return TrialStatus.REACHED.value
    return TrialStatus.DIVERGED.value if diverged >= budget else TrialStatus.BUDGET.value


def pruned_flags(trials: pd.DataFrame) -> pd.Series:
    """Per trial, True when the pruning rule stopped it early (False for rows
    written before the ``pruned`` column, which read it as null)."""
    if "pruned" not in trials.columns:
        return trials["trial_id"].map(lambda _: False).astype(bool)
    return trials["pruned"].fillna(False).astype(bool)


def cells(trials: pd.DataFrame, min_success: float = MIN_SUCCESS) -> pd.DataFrame:
    """One row per series and LR: trial counts by status, ``success_rate`` (over
    finished trials), the median / min / max time and steps to target over the
    trials that reached it, the drawn values (median and spread, failures at the
    budget or step ceiling), and the cell's ``outcome``."""
    df = with_plot_values(trials)
    for status in STATUSES:
        df[f"n_{status}"] = (df["status"] == status).astype(int)
    df["n_pruned"] = pruned_flags(df).astype(int)
    reached = df["status"] == TrialStatus.REACHED.value
    df["reached_time"] = df["time_to_target_s"].where(reached)
    df["reached_steps"] = df["steps_to_target"].astype("float64").where(reached)
    grouped = df.groupby(CELL, sort=False, dropna=False)
    out = grouped.agg(
        n=("trial_id", "size"),
        n_reached=("n_reached", "sum"),
        n_budget=("n_budget", "sum"),
        n_diverged=("n_diverged", "sum"),
        n_error=("n_error", "sum"),
        n_pruned=("n_pruned", "sum"),
        time_median_s=("reached_time", "median"),
        time_min_s=("reached_time", "min"),
        time_max_s=("reached_time", "max"),
        steps_median=("reached_steps", "median"),
        steps_min=("reached_steps", "min"),
        steps_max=("reached_steps", "max"),
        plot_time_s=("plot_time_s", "median"),
        plot_time_lo_s=("plot_time_s", "min"),
        plot_time_hi_s=("plot_time_s", "max"),
        plot_steps=("plot_steps", "median"),
        plot_steps_lo=("plot_steps", "min"),
        plot_steps_hi=("plot_steps", "max"),
        budget_s=("budget_s", "max"),
        steps_ceiling=("steps_ceiling", "max"),
    ).reset_index()
    finished = out["n"] - out["n_error"]
    out["success_rate"] = (out["n_reached"] / finished.where(finished > 0)).astype("float64")
    out["outcome"] = [
        cell_outcome(r, b, d, f, min_success)
        for r, b, d, f in zip(
            out["n_reached"], out["n_budget"], out["n_diverged"], finished, strict=True
        )
    ]
    return pd.DataFrame(out)


def is_lr_sweep(cells: pd.DataFrame) -> bool:
    """True when some series ran at more than one LR: there is a valley to show."""
    return int(cells.groupby(SERIES)["lr"].nunique().max()) > 1


def ensure_cells(frame: pd.DataFrame, min_success: float = MIN_SUCCESS) -> pd.DataFrame:
    """``frame`` if it is already ``cells``, else the ``cells`` of its trials."""
    return frame if "outcome" in frame.columns else cells(frame, min_success)


def span(ok: pd.Series) -> dict[str, Any]:
    """Band columns (``BAND_COLUMNS``) from a boolean Series indexed by sorted LR
    (True: it succeeds)."""
    good = ok[ok].index
    if not len(good):
        return {
            "n_lrs": len(ok),
            "n_success_lrs": 0,
            "lr_low": np.nan,
            "lr_high": np.nan,
            "decades": np.nan,
            "holes": 0,
        }
    low, high = good.min(), good.max()
    return {
        "n_lrs": len(ok),
        "n_success_lrs": len(good),
        "lr_low": low,
        "lr_high": high,
        "decades": float(np.log10(high / low)),
        "holes": int((~ok[(ok.index >= low) & (ok.index <= high)]).sum()),
    }


def band(frame: pd.DataFrame, min_success: float = MIN_SUCCESS) -> pd.DataFrame:
    """Per series: the LRs swept and succeeding, the band's ``lr_low`` and
    ``lr_high`` (NaN when nothing succeeded), its width in ``decades`` and its
    ``holes`` (failing LRs inside it). Takes trials or ``cells``."""
    c = ensure_cells(frame, min_success)
    rows = [
        {
            **dict(zip(SERIES, key, strict=True)),
            **span(group.set_index("lr")["outcome"].eq(TrialStatus.REACHED.value).sort_index()),
        }
        for key, group in c.groupby(SERIES, sort=False)
    ]
    return pd.DataFrame(rows, columns=[*SERIES, *BAND_COLUMNS])


def ranked_lrs(frame: pd.DataFrame, k: int = 1, min_success: float = MIN_SUCCESS) -> pd.DataFrame:
    """Per series, its ``k`` best succeeding cells, fastest median time to target
    first (ties to fewer median steps, then the lower LR), with a ``rank`` from 1.
    Series with no success have no rows. Takes trials or ``cells``."""
    c = ensure_cells(frame, min_success)
    ok = c[c["outcome"] == TrialStatus.REACHED.value].sort_values(
        ["time_median_s", "steps_median", "lr"], kind="stable"
    )
    top = ok.groupby(SERIES, sort=False).head(k).copy()
    top["rank"] = top.groupby(SERIES, sort=False).cumcount() + 1
    order = c[SERIES].drop_duplicates()
    order["_order"] = range(len(order))
    top = top.merge(order, on=SERIES).sort_values(["_order", "rank"], kind="stable")
    top = top.drop(columns="_order")
    return pd.DataFrame(top).reset_index(drop=True)


def best_lr(frame: pd.DataFrame, min_success: float = MIN_SUCCESS) -> pd.DataFrame:
    """Per series: the best LR (``ranked_lrs`` rank 1), with its median time,
    median steps and success rate; NaN where nothing succeeded. Takes trials or
    ``cells``."""
    c = ensure_cells(frame, min_success)
    series = c[SERIES].drop_duplicates()
    top = ranked_lrs(c, 1, min_success).rename(
        columns={
            "lr": "best_lr",
            "time_median_s": "best_time_s",
            "steps_median": "best_steps",
            "success_rate": "best_success_rate",
        }
    )
    return series.merge(top[[*SERIES, *_BEST_COLUMNS]], on=SERIES, how="left").reset_index(
        drop=True
    )


def envelope(frame: pd.DataFrame, min_success: float = MIN_SUCCESS) -> pd.DataFrame:
    """Per source, variant and LR: the fastest and the slowest succeeding
    optimizer and their median times to target (NaN and empty names where none
    succeeded), and how many succeeded of how many swept. Takes trials or ``cells``."""
    c = ensure_cells(frame, min_success)
    rows = []
    for (source, variant, lr), group in c.groupby(["source", "variant", "lr"], sort=False):
        ok = group[group["outcome"] == TrialStatus.REACHED.value].sort_values(
            ["time_median_s", "steps_median"], kind="stable"
        )
        fast = ok.iloc[0] if len(ok) else None
        slow = ok.iloc[-1] if len(ok) else None
        rows.append(
            {
                "source": source,
                "variant": variant,
                "lr": lr,
                "n_series": len(group),
                "n_reached": len(ok),
                "fastest": fast["optimizer"] if fast is not None else "",
                "fastest_time_s": fast["time_median_s"] if fast is not None else float("nan"),
                "slowest": slow["optimizer"] if slow is not None else "",
                "slowest_time_s": slow["time_median_s"] if slow is not None else float("nan"),
            }
        )
    out = pd.DataFrame(rows)
    return out.sort_values(["source", "variant", "lr"], kind="stable", ignore_index=True)


def best_curves(
    trials: pd.DataFrame, curves: pd.DataFrame, min_success: float = MIN_SUCCESS
) -> pd.DataFrame:
    """The curves of every trial (every seed) at each series' best LR, with the
    series columns; empty for series with no success."""
    df = labelled(trials)
    best = best_lr(cells(df, min_success)).dropna(subset=["best_lr"])
    chosen = df.merge(best[[*SERIES, "best_lr"]], on=SERIES)
    chosen = chosen[chosen["lr"] == chosen["best_lr"]]
    keep = [*SERIES, "trial_id", "lr", "seed", "target_acc"]
    on = ["source", "trial_id"] if "source" in curves.columns else ["trial_id"]
    out = chosen[keep].merge(curves, on=on, suffixes=("", "_curve"))
    keys = zip(df["source"], df["series"], strict=True)
    order = {key: i for i, key in enumerate(dict.fromkeys(keys))}
    out["_rank"] = [order[k] for k in zip(out["source"], out["series"], strict=True)]
    out = out.sort_values(["_rank", "seed", "step"], kind="stable", ignore_index=True)
    return out.drop(columns="_rank")
