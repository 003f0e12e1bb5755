"""Width scaling: time, steps and step time to target against model size.

Pure functions (DataFrame in, tidy DataFrame out) for sweeps whose grid has
several widths per optimizer and LR, such as ``grids/paper-scaling.toml``.
A scaling **series** is one optimizer at one LR (and one setup of any other
varying axis); its points are its widths.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pandas as pd

from analysis.cells import MIN_SUCCESS
from analysis.labels import fmt_lr, optimizer_rank, setup_labels
from harness.store.records import TrialStatus

KEYS = ["source", "series", "optimizer", "lr"]
# (column of scaling_points, label) of what is fitted against size
MEASURES = {
    "time_to_target_s": "time to target (s)",
    "steps_to_target": "steps to target",
    "step_time_s": "seconds per step",
}
SIZES = {"width": "width multiplier", "n_params": "weights"}


def scaling_points(trials: pd.DataFrame, min_success: float = MIN_SUCCESS) -> pd.DataFrame:
    """One row per scaling series and width: ``n_params``, trial counts,
    ``success_rate``, ``outcome`` (``reached`` when at least ``min_success`` of the
    finished seeds reached the target), and medians of ``time_to_target_s`` and
    ``steps_to_target`` (over the seeds that reached it) and of ``step_time_s``
    (over every finished seed)."""
    df = trials.copy()
    if "source" not in df.columns:
        df.insert(0, "source", df["sweep"])
    setup = setup_labels(df, exclude=("width",))
    df["series"] = [
        f"{opt} @ lr {fmt_lr(lr)}" + (f" ({s})" if s else "")
        for opt, lr, s in zip(df["optimizer"], df["lr"], setup, strict=True)
    ]
    finished = df["status"] != TrialStatus.ERROR.value
    reached = df["status"] == TrialStatus.REACHED.value
    df["_reached"] = reached.astype(int)
    df["_finished"] = finished.astype(int)
    df["_time"] = df["time_to_target_s"].where(reached)
    df["_steps"] = df["steps_to_target"].astype("float64").where(reached)
    df["_step_time"] = df["step_time_s"].where(finished)
    df["_rank"] = df["optimizer"].map(optimizer_rank)
    out = (
        df.sort_values(["_rank", "lr", "width"], kind="stable")
        .groupby([*KEYS, "width"], sort=False)
        .agg(
            n_params=("n_params", "median"),
            n=("trial_id", "size"),
            n_reached=("_reached", "sum"),
            n_finished=("_finished", "sum"),
            time_to_target_s=("_time", "median"),
            steps_to_target=("_steps", "median"),
            step_time_s=("_step_time", "median"),
        )
        .reset_index()
    )
    out["success_rate"] = out["n_reached"] / out["n_finished"].where(out["n_finished"] > 0)
    out["outcome"] = [
        TrialStatus.REACHED.value if rate >= min_success else "missed"
        for rate in out["success_rate"].fillna(0)
    ]
    return pd.DataFrame(out)


def fit_linear(x: Any, y: Any) -> dict[str, float]:
    """Least-squares ``y = slope * x + intercept`` and its R² (NaN below 2 points;
    R² is NaN when y does not vary)."""
    x, y = np.asarray(x, float), np.asarray(y, float)
    if len(x) < 2 or np.ptp(x) == 0:
        return {"slope": math.nan, "intercept": math.nan, "r2": math.nan}
    slope, intercept = np.polyfit(x, y, 1)
    return {
        "slope": float(slope),
        "intercept": float(intercept),
        "r2": _r2(y, slope * x + intercept),
    }


def fit_power(x: Any, y: Any) -> dict[str, float]:
    """Least-squares fit of ``log y = exponent * log x + log coefficient``: the
    exponent says how far from linear (1) the growth is. Needs positive values."""
    x, y = np.asarray(x, float), np.asarray(y, float)
    keep = (x > 0) & (y > 0)
    x, y = x[keep], y[keep]
    if len(x) < 2 or np.ptp(x) == 0:
        return {"exponent": math.nan, "coefficient": math.nan, "r2_log": math.nan}
    exponent, log_c = np.polyfit(np.log(x), np.log(y), 1)
    r2 = _r2(np.log(y), exponent * np.log(x) + log_c)
    return {"exponent": float(exponent), "coefficient": float(np.exp(log_c)), "r2_log": r2}


def _r2(y: np.ndarray, predicted: np.ndarray) -> float:
    total = float(np.sum((y - y.mean()) ** 2))
    return float(1 - np.sum((y - predicted) ** 2) / total) if total > 0 else math.nan


def scaling_fits(points: pd.DataFrame) -> pd.DataFrame:
    """Per scaling series, measure (time, steps, step time) and size (width,
    n_params): the linear fit (slope, intercept, R²) and the log-log fit
    (exponent, R²) over the widths that reached the target (step time: every
    width). Series with a single width are left out."""
    rows = []
    for key, group in points.groupby(KEYS, sort=False):
        if group["width"].nunique() < 2:
            continue
        for measure in MEASURES:
            use = (
                group
                if measure == "step_time_s"
                else group[group["outcome"] == TrialStatus.REACHED.value]
            )
            use = use.dropna(subset=[measure])
            for size in SIZES:
                rows.append(
                    {
                        **dict(zip(KEYS, key, strict=True)),
                        "measure": measure,
                        "size": size,
                        "n_points": len(use),
                        "n_sizes": int(group["width"].nunique()),
                        **fit_linear(use[size], use[measure]),
                        **fit_power(use[size], use[measure]),
                    }
                )
    columns = [*KEYS, "measure", "size", "n_points", "n_sizes", "slope", "intercept", "r2"]
    return pd.DataFrame(rows, columns=[*columns, "exponent", "coefficient", "r2_log"])


def has_scaling(trials: pd.DataFrame) -> bool:
    """True when some optimizer and LR ran at more than one width."""
    keys = [c for c in ("source", "sweep", "optimizer", "optimizer_kwargs", "lr") if c in trials]
    return bool(len(trials)) and int(trials.groupby(keys)["width"].nunique().max()) > 1
