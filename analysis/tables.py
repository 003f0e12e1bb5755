"""Pure analysis: a trials DataFrame in, a tidy DataFrame out.

Vocabulary (see ``docs/analysis.md``):

- A **series** is one optimizer's valley: the trials of one results directory
  (``source``) and one optimizer, split further by any other grid axis that
  varies within that optimizer (width, loss, batch size, ...; the ``variant``).
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

import json
import math
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import pandas as pd

STATUSES = ("reached", "budget", "diverged", "error")
# Grid axes that, when they vary within one optimizer of one sweep, split its
# valley into several series.
AXES = (
    "dataset",
    "train_size",
    "model",
    "width",
    "model_kwargs",
    "optimizer_kwargs",
    "batch_size",
    "loss",
    "schedule",
    "target_metric",
    "target_acc",
    "budget_s",
    "max_epochs",
)
OPTIMIZER_ORDER = ("gd", "momentum", "adam", "adagrad", "adadelta", "rmsprop")
SERIES = ["source", "series", "optimizer", "variant"]
CELL = [*SERIES, "lr"]
MIN_SUCCESS = 0.5
_BAND_COLUMNS = ["n_lrs", "n_success_lrs", "lr_low", "lr_high", "decades", "holes"]
_BEST_COLUMNS = ["best_lr", "best_time_s", "best_steps", "best_success_rate"]


def _kwargs(value: Any) -> dict[str, Any]:
    return json.loads(value) if isinstance(value, str) else dict(value or {})


def _value_text(column: str, value: Any, keys: set[str] | None = None) -> str:
    """``column=value`` text; for a ``*_kwargs`` column, its ``key=value`` items
    (only ``keys``, when given: the ones that vary)."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return f"{column}=all" if column == "train_size" else f"{column}=none"
    if column.endswith("_kwargs"):
        items = _kwargs(value)
        if keys is not None:
            items = {k: items.get(k, "default") for k in keys}
        return ", ".join(f"{k}={v}" for k, v in sorted(items.items())) or f"{column}={{}}"
    if isinstance(value, float):
        return f"{column}={value:g}"
    return f"{column}={value}"


def fmt_lr(lr: float) -> str:
    """A learning rate as short text: 1e-5, 3e-4, 0.003, 0.3, 10, 100, 1e4."""
    if 1e-3 <= abs(lr) < 1e4 or lr == 0:
        return f"{float(f'{lr:.2g}'):g}"
    mantissa, exponent = f"{lr:.1e}".split("e")
    mantissa = mantissa.rstrip("0").rstrip(".")
    return f"{mantissa}e{int(exponent)}"


def setup_labels(df: pd.DataFrame, exclude: tuple[str, ...] = ()) -> pd.Series:
    """Per row, the grid axes (``AXES`` less ``exclude``) that vary within its
    source and optimizer, as ``key=value`` text (``""`` where none vary)."""
    import pandas as pd

    labels = pd.Series("", index=df.index, dtype=object)
    for _, group in df.groupby(["source", "optimizer"], sort=False):
        varying = [
            c
            for c in AXES
            if c not in exclude
            and c in group.columns
            and group[c].astype(str).nunique(dropna=False) > 1
        ]
        if varying:
            keys = {c: _varying_keys(group[c]) for c in varying if c.endswith("_kwargs")}
            labels[group.index] = [
                "; ".join(_value_text(c, row[c], keys.get(c)) for c in varying)
                for _, row in group[varying].iterrows()
            ]
    return labels


def _varying_keys(column: pd.Series) -> set[str]:
    """The keys whose values differ across a column of keyword dicts."""
    dicts = [_kwargs(v) for v in column]
    names = set().union(*dicts)
    return {k for k in names if len({json.dumps(d.get(k)) for d in dicts}) > 1}


def optimizer_rank(name: str) -> tuple[int, str]:
    """Sort key: the reference experiment's optimizers first, in its order."""
    order = {n: i for i, n in enumerate(OPTIMIZER_ORDER)}
    return (order.get(name, len(order)), name)


def label_series(trials: pd.DataFrame) -> pd.DataFrame:
    """A copy of ``trials`` with ``source`` (the sweep name if absent), ``variant``
    and ``series`` columns, sorted by source, optimizer order, variant and LR."""
    import pandas as pd

    df = trials.copy()
    if "source" not in df.columns:
        df.insert(0, "source", df["sweep"])
    df["variant"] = setup_labels(df)
    df["series"] = [
        f"{opt} ({var})" if var else opt
        for opt, var in zip(df["optimizer"], df["variant"], strict=True)
    ]
    sources = list(dict.fromkeys(df["source"]))
    df["_source_rank"] = df["source"].map({s: i for i, s in enumerate(sources)})
    df["_opt_rank"] = df["optimizer"].map(optimizer_rank)
    df = df.sort_values(["_source_rank", "_opt_rank", "variant", "lr", "seed"], kind="stable")
    return pd.DataFrame(df.drop(columns=["_source_rank", "_opt_rank"])).reset_index(drop=True)


def _labelled(trials: pd.DataFrame) -> pd.DataFrame:
    """``trials`` as ``label_series`` returns them (unchanged if already labelled)."""
    return trials if "series" in trials.columns else label_series(trials)


def with_plot_values(trials: pd.DataFrame) -> pd.DataFrame:
    """Labelled trials plus where each is drawn: ``plot_time_s`` is the time to
    target, or the budget for a trial that missed it; ``plot_steps`` is the steps
    to target, or the source's step ceiling (the most steps any of its trials
    took). ``error`` trials are not drawn (NaN)."""
    import numpy as np

    df = _labelled(trials).copy()
    reached = df["status"] == "reached"
    failed = df["status"].isin(["budget", "diverged"])
    steps = df["steps"].astype("float64")
    to_target = df["steps_to_target"].astype("float64")
    ceiling = np.fmax(steps, to_target).groupby(df["source"]).transform("max")
    df["steps_ceiling"] = ceiling
    df["plot_time_s"] = np.where(reached, df["time_to_target_s"], np.nan)
    df.loc[failed, "plot_time_s"] = df.loc[failed, "budget_s"]
    df["plot_steps"] = np.where(reached, to_target, np.nan)
    df.loc[failed, "plot_steps"] = ceiling[failed]
    return df


def _cell_outcome(reached: int, budget: int, diverged: int, finished: int, min_success: float):
    if finished == 0:
        return "error"
    if reached / finished >= min_success:
        return "reached"
    return "diverged" if diverged >= budget else "budget"


def cells(trials: pd.DataFrame, min_success: float = MIN_SUCCESS) -> pd.DataFrame:
    """One row per series and LR: trial counts by status, ``success_rate`` (over
    finished trials), the median / min / max time and steps to target over the
    trials that reached it, the drawn values (median and spread, failures at the
    budget or step ceiling), and the cell's ``outcome``."""
    import pandas as pd

    df = with_plot_values(trials)
    for status in STATUSES:
        df[f"n_{status}"] = (df["status"] == status).astype(int)
    df["reached_time"] = df["time_to_target_s"].where(df["status"] == "reached")
    df["reached_steps"] = df["steps_to_target"].astype("float64").where(df["status"] == "reached")
    grouped = df.groupby(CELL, sort=False, dropna=False)
    out = grouped.agg(
        n=("trial_id", "size"),
        n_reached=("n_reached", "sum"),
        n_budget=("n_budget", "sum"),
        n_diverged=("n_diverged", "sum"),
        n_error=("n_error", "sum"),
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
        _cell_outcome(r, b, d, f, min_success)
        for r, b, d, f in zip(
            out["n_reached"], out["n_budget"], out["n_diverged"], finished, strict=True
        )
    ]
    return pd.DataFrame(out)


def is_lr_sweep(cells: pd.DataFrame) -> bool:
    """True when some series ran at more than one LR: there is a valley to show."""
    return int(cells.groupby(SERIES)["lr"].nunique().max()) > 1


def _ensure_cells(frame: pd.DataFrame, min_success: float) -> pd.DataFrame:
    return frame if "outcome" in frame.columns else cells(frame, min_success)


def _span(ok: pd.Series) -> dict[str, Any]:
    """Band columns from a boolean Series indexed by sorted LR (True: it succeeds)."""
    import numpy as np

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
    import pandas as pd

    c = _ensure_cells(frame, min_success)
    rows = [
        {
            **dict(zip(SERIES, key, strict=True)),
            **_span(group.set_index("lr")["outcome"].eq("reached").sort_index()),
        }
        for key, group in c.groupby(SERIES, sort=False)
    ]
    return pd.DataFrame(rows, columns=[*SERIES, *_BAND_COLUMNS])


def ranked_lrs(frame: pd.DataFrame, k: int = 1, min_success: float = MIN_SUCCESS) -> pd.DataFrame:
    """Per series, its ``k`` best succeeding cells, fastest median time to target
    first (ties to fewer median steps, then the lower LR), with a ``rank`` from 1.
    Series with no success have no rows. Takes trials or ``cells``."""
    import pandas as pd

    c = _ensure_cells(frame, min_success)
    ok = c[c["outcome"] == "reached"].sort_values(
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
    c = _ensure_cells(frame, min_success)
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


def optimizer_table(trials: pd.DataFrame, min_success: float = MIN_SUCCESS) -> pd.DataFrame:
    """The per-optimizer table: trials by status, the success band, the best LR,
    and ``wasted_s``, the wall seconds spent on trials that did not reach the
    target (startup included)."""
    import pandas as pd

    df = _labelled(trials)
    c = cells(df, min_success)
    counts = (
        df.assign(
            **{s: (df["status"] == s).astype(int) for s in STATUSES},
            wasted=df["wall_s"].where(df["status"] != "reached", 0.0),
        )
        .groupby(SERIES, sort=False)
        .agg(
            trials=("trial_id", "size"),
            **{s: (s, "sum") for s in STATUSES},
            wasted_s=("wasted", "sum"),
        )
        .reset_index()
    )
    table = counts.merge(band(c), on=SERIES).merge(best_lr(c), on=SERIES)
    return pd.DataFrame(table)


def union_band(frame: pd.DataFrame, min_success: float = MIN_SUCCESS) -> pd.DataFrame:
    """Per source (and variant): the LRs where at least one optimizer succeeds.
    ``lr_low``/``lr_high`` and ``decades`` as for a band; ``holes`` counts LRs
    inside it where no optimizer succeeds; ``low_by``/``high_by`` name the
    optimizers that succeed at its edges. Takes trials or ``cells``."""
    import pandas as pd

    c = _ensure_cells(frame, min_success)
    rows = []
    for (source, variant), group in c.groupby(["source", "variant"], sort=False):
        span = _span(group["outcome"].eq("reached").groupby(group["lr"]).any())
        by = group[group["outcome"] == "reached"]
        rows.append(
            {
                "source": source,
                "variant": variant,
                **span,
                "low_by": ", ".join(by.loc[by["lr"] == span["lr_low"], "series"]),
                "high_by": ", ".join(by.loc[by["lr"] == span["lr_high"], "series"]),
            }
        )
    return pd.DataFrame(
        rows,
        columns=["source", "variant", *_BAND_COLUMNS, "low_by", "high_by"],
    )


def envelope(frame: pd.DataFrame, min_success: float = MIN_SUCCESS) -> pd.DataFrame:
    """Per source, variant and LR: the fastest and the slowest succeeding
    optimizer and their median times to target (NaN and empty names where none
    succeeded), and how many succeeded of how many swept. Takes trials or ``cells``."""
    import pandas as pd

    c = _ensure_cells(frame, min_success)
    rows = []
    for (source, variant, lr), group in c.groupby(["source", "variant", "lr"], sort=False):
        ok = group[group["outcome"] == "reached"].sort_values(
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
    df = _labelled(trials)
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


def sweep_summary(trials: pd.DataFrame, manifests: dict[str, dict[str, Any]]) -> pd.DataFrame:
    """Per source: sweep name, devices, hosts, library versions, trials by status,
    ``trial_time_s`` (the sum of trial wall times), ``wall_s`` (the runs' wall
    time from the manifest; else the span from the first trial's start to the
    last one's end) and the number of runs (resumes)."""
    import pandas as pd

    df = trials if "source" in trials.columns else trials.assign(source=trials["sweep"])
    rows = []
    for source, group in df.groupby("source", sort=False):
        manifest = manifests.get(source) or {}
        runs = manifest.get("runs", [])
        stamped = [v for v in group["versions"].dropna() if v]
        versions = json.loads(stamped[0]) if stamped else {}
        if runs and all("wall_s" in r for r in runs):
            wall = float(sum(r["wall_s"] for r in runs))
        else:
            start = group["started_at"].min()
            end = (group["started_at"] + pd.to_timedelta(group["wall_s"], unit="s")).max()
            wall = float((end - start).total_seconds()) if pd.notna(start) else float("nan")
        rows.append(
            {
                "source": source,
                "sweep": ", ".join(dict.fromkeys(group["sweep"])),
                "devices": "; ".join(sorted(d for d in group["device"].dropna().unique() if d)),
                "hosts": ", ".join(sorted(h for h in group["host"].dropna().unique() if h)),
                "python": versions.get("python", ""),
                "tensorflow": versions.get("tensorflow", ""),
                "keras": versions.get("keras", ""),
                "ray": versions.get("ray", ""),
                "lrbench": versions.get("lrbench", ""),
                "trials": len(group),
                **{s: int((group["status"] == s).sum()) for s in STATUSES},
                "trial_time_s": float(group["wall_s"].sum()),
                "wall_s": wall,
                "runs": len(runs),
                "started": group["started_at"].min(),
            }
        )
    return pd.DataFrame(rows)


def compare_sources(
    table: pd.DataFrame, summary: pd.DataFrame, trials: pd.DataFrame
) -> pd.DataFrame:
    """Across sources: each series' best LR, time and steps per source, with the
    time and steps as ratios to the first source (``time_ratio`` < 1 is faster),
    the source's devices, and ``differs``: what differs from the first source for
    that series (``device``, or a grid axis such as ``target_acc``), since a time
    ratio across devices or setups is not a like-for-like comparison."""
    import pandas as pd

    df = _labelled(trials)
    first = table["source"].iloc[0]
    keep = ["source", "series", "best_lr", "best_time_s", "best_steps", "reached", "trials"]
    out = table[keep].merge(summary[["source", "devices"]], on="source", how="left")
    base = out[out["source"] == first].set_index("series")
    out["time_ratio"] = out["best_time_s"] / out["series"].map(base["best_time_s"])
    out["steps_ratio"] = out["best_steps"] / out["series"].map(base["best_steps"])

    def setup(source: str, series: str) -> dict[str, frozenset[str]]:
        rows = df[(df["source"] == source) & (df["series"] == series)]
        return {c: frozenset(rows[c].astype(str)) for c in ("device", *AXES) if c in rows}

    differs = []
    for source, series in zip(out["source"], out["series"], strict=True):
        if series not in base.index:
            differs.append("not in first")
            continue
        mine, theirs = setup(source, series), setup(first, series)
        differs.append(", ".join(c for c in mine if mine[c] != theirs.get(c)))
    out["differs"] = differs
    return pd.DataFrame(out)
