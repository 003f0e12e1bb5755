"""The report's summary tables: pure functions from labelled trials (and
``cells``, see ``analysis.cells``) to tidy frames.

- ``optimizer_table``: per series, trials by status, the band and the best LR.
- ``union_band``: per source, where at least one optimizer succeeds.
- ``sweep_summary``: per source, what ran where, with which versions, how long.
- ``compare_sources``: each series' best LR across several results directories.
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from analysis.cells import (
    BAND_COLUMNS,
    MIN_SUCCESS,
    SERIES,
    band,
    best_lr,
    cells,
    ensure_cells,
    pruned_flags,
    span,
)
from analysis.labels import AXES, labelled
from harness.store.records import STATUSES, TrialStatus

if TYPE_CHECKING:
    from harness.store.records import Manifest


def optimizer_table(trials: pd.DataFrame, min_success: float = MIN_SUCCESS) -> pd.DataFrame:
    """The per-optimizer table: trials by status, the success band, the best LR,
    ``wasted_s``, the wall seconds spent on trials that did not reach the
    target (startup included), and how many the pruning rule stopped early."""
    df = labelled(trials)
    c = cells(df, min_success)
    counts = (
        df.assign(
            **{s: (df["status"] == s).astype(int) for s in STATUSES},
            wasted=df["wall_s"].where(df["status"] != TrialStatus.REACHED.value, 0.0),
            pruned=pruned_flags(df).astype(int),
        )
        .groupby(SERIES, sort=False)
        .agg(
            trials=("trial_id", "size"),
            **{s: (s, "sum") for s in STATUSES},
            wasted_s=("wasted", "sum"),
            pruned=("pruned", "sum"),
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
    c = ensure_cells(frame, min_success)
    rows = []
    for (source, variant), group in c.groupby(["source", "variant"], sort=False):
        reached = group["outcome"] == TrialStatus.REACHED.value
        edges = span(reached.groupby(group["lr"]).any())
        by = group[reached]
        rows.append(
            {
                "source": source,
                "variant": variant,
                **edges,
                "low_by": ", ".join(by.loc[by["lr"] == edges["lr_low"], "series"]),
                "high_by": ", ".join(by.loc[by["lr"] == edges["lr_high"], "series"]),
            }
        )
    return pd.DataFrame(
        rows,
        columns=["source", "variant", *BAND_COLUMNS, "low_by", "high_by"],
    )


def compute_saved(trials: pd.DataFrame) -> pd.DataFrame:
    """Per source: the trials the pruning rule stopped, the training seconds
    they ran, and an estimate of the seconds their full runs would have taken:
    each to the sooner of its time budget and its ``max_epochs`` at its own
    speed (``step_time_s``). The frontier guard's rechecks count the seconds
    of their pruned first runs as spent. ``saved_share`` is the saving over
    what all the ``budget`` trials would have trained unpruned."""
    df = trials if "source" in trials.columns else trials.assign(source=trials["sweep"])
    pruned = pruned_flags(df)
    per_epoch = df["steps"].astype("float64") / df["epochs"].replace(0.0, np.nan)
    by_epochs = df["max_epochs"] * per_epoch * df["step_time_s"].astype("float64")
    full = np.fmin(df["budget_s"], by_epochs).where(pruned, df["train_s"])
    rechecked = df["rechecked"].fillna(False).astype(bool) if "rechecked" in df else pruned & False
    frame = df.assign(
        _pruned=pruned.astype(int),
        _rechecked=rechecked.astype(int),
        # a rechecked trial's pruned first run: spent, on top of its full run
        _first=df["pruned_at_s"].astype("float64").fillna(0.0).where(rechecked, 0.0),
        _ran=df["train_s"].where(pruned, 0.0),
        _full=full.where(pruned, 0.0),
        _budget_full=full.where(df["status"] == TrialStatus.BUDGET.value, 0.0),
    )
    out = (
        frame.groupby("source", sort=False)
        .agg(
            trials=("trial_id", "size"),
            pruned=("_pruned", "sum"),
            rechecked=("_rechecked", "sum"),
            recheck_first_runs_s=("_first", "sum"),
            pruned_train_s=("_ran", "sum"),
            unpruned_estimate_s=("_full", "sum"),
            budget_trials_estimate_s=("_budget_full", "sum"),
        )
        .reset_index()
    )
    out["saved_s"] = (
        out["unpruned_estimate_s"] - out["pruned_train_s"] - out["recheck_first_runs_s"]
    )
    out["saved_share"] = out["saved_s"] / out["budget_trials_estimate_s"].replace(0.0, np.nan)
    return pd.DataFrame(out)


def sweep_summary(trials: pd.DataFrame, manifests: dict[str, Manifest | None]) -> pd.DataFrame:
    """Per source: sweep name, devices, hosts, library versions, trials by status,
    ``trial_time_s`` (the sum of trial wall times), ``wall_s`` (the runs' wall
    time from the manifest; else the span from the first trial's start to the
    last one's end) and the number of runs (resumes)."""
    df = trials if "source" in trials.columns else trials.assign(source=trials["sweep"])
    rows = []
    for source, group in df.groupby("source", sort=False):
        manifest = manifests.get(source)
        runs = manifest.runs if manifest is not None else ()
        stamped = [v for v in group["versions"].dropna() if v]
        versions = json.loads(stamped[0]) if stamped else {}
        walls = [r.wall_s for r in runs]
        if runs and all(w is not None for w in walls):
            wall = float(sum(w for w in walls if w is not None))
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


# What a trial ran under, besides its setup: a resume may change any of these
# while trial ids stay the same.
CONDITIONS = ("device", "cpus", "gpus", "versions", "data_fingerprint")


def run_conditions(trials: pd.DataFrame) -> pd.DataFrame:
    """Per source, each combination of ``CONDITIONS`` its trials ran under, with
    the number of trials, and ``differs``: the conditions that vary within that
    source (empty when it ran under one combination)."""
    df = trials if "source" in trials.columns else trials.assign(source=trials["sweep"])
    present = [c for c in CONDITIONS if c in df.columns]
    keyed = df[["source", *present]].astype("string").fillna("")
    combos = keyed.value_counts(sort=False).rename("trials").reset_index()
    varying = {
        source: ", ".join(c for c in present if group[c].nunique() > 1)
        for source, group in combos.groupby("source", sort=False)
    }
    combos["differs"] = combos["source"].map(varying)
    return pd.DataFrame(combos)


def compare_sources(
    table: pd.DataFrame, summary: pd.DataFrame, trials: pd.DataFrame
) -> pd.DataFrame:
    """Across sources: each series' best LR, time and steps per source, with the
    time and steps as ratios to the first source (``time_ratio`` < 1 is faster),
    the source's devices, and ``differs``: what differs from the first source for
    that series (``device``, or a grid axis such as ``target_acc``), since a time
    ratio across devices or setups is not a like-for-like comparison."""
    df = labelled(trials)
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
