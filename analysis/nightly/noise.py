"""How far a night's numbers move by chance: the judging rules and the noise
thresholds, estimated from the baseline nights themselves.

The **noise threshold** of a metric (time or steps to target): each baseline
night's relative change against the median of the other baseline nights,
pooled over cells (``cell`` scope) or as each night's median over cells
(``all cells``); the threshold is their median plus ``k`` times their MAD
(scaled to a standard deviation), and never less than the floor. See
``docs/nightly.md``.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from analysis.cells import MIN_SUCCESS, cells
from analysis.labels import label_series
from harness.errors import ParamError
from harness.store.records import TrialStatus

KEY = ["series", "optimizer", "variant", "lr"]
# metric -> (cells column, words)
METRICS = {
    "time": ("time_median_s", "time to target"),
    "steps": ("steps_median", "steps to target"),
}
MAD_SCALE = 1.4826  # MAD x this estimates a normal standard deviation
MIN_CELLS_FOR_ALL = 3  # the all-cells change needs at least this many cells


@dataclass(frozen=True)
class Rules:
    """How a night is judged."""

    baseline_nights: int = 7  # the baseline: median of at most this many good nights
    k: float = 3.0  # noise threshold: median + k x MAD of the baseline's own changes
    floor_time: float = 0.20  # ... but never below this relative change of time
    floor_steps: float = 0.10  # ... or of steps
    floor_seconds: float = 0.25  # and a cell's time must move by more than this
    min_success: float = MIN_SUCCESS  # share of a cell's trials that must reach

    def floor(self, metric: str) -> float:
        """The smallest relative change of ``metric`` (``time``, ``steps``) ever flagged."""
        return self.floor_time if metric == "time" else self.floor_steps

    def check(self) -> None:
        """Raise ``ParamError`` (naming the field) for a value outside its range."""
        if self.baseline_nights < 1:
            raise ParamError("baseline_nights", f"{self.baseline_nights} is not >= 1")
        for name in ("k", "floor_time", "floor_steps", "floor_seconds"):
            value = getattr(self, name)
            if not value >= 0:
                raise ParamError(name, f"{value} is not >= 0")
        if not 0 < self.min_success <= 1:
            raise ParamError("min_success", f"{self.min_success} is outside (0, 1]")


def night_cells(trials: pd.DataFrame, min_success: float = MIN_SUCCESS) -> pd.DataFrame:
    """``cells.cells`` of some nights' trials pooled (one ``source``)."""
    df = trials.drop(columns=["source"], errors="ignore").assign(source="nightly")
    return cells(label_series(df), min_success)


class NightCells:
    """``night_cells`` of sets of a history's nights, each set computed once: a
    judgement asks for the same nights again and again (each baseline night
    alone, the others pooled, all of them, for every night judged on the way)."""

    def __init__(self, history: pd.DataFrame, min_success: float = MIN_SUCCESS) -> None:
        self.history = history
        self.min_success = min_success
        self._done: dict[frozenset[str], pd.DataFrame] = {}

    def of(self, run_ids: Iterable[str]) -> pd.DataFrame:
        """The cells of the nights ``run_ids`` pooled (a copy: the caller's own)."""
        key = frozenset(run_ids)
        if key not in self._done:
            rows = self.history[self.history["run_id"].isin(key)]
            self._done[key] = night_cells(rows, self.min_success)
        return self._done[key].copy()


def _threshold(values: list[float], k: float, floor: float) -> dict[str, Any]:
    if not values:
        return {"samples": 0, "median": math.nan, "mad": math.nan, "up": floor, "down": -floor}
    arr = np.asarray(values, dtype=float)
    med = float(np.median(arr))
    mad = MAD_SCALE * float(np.median(np.abs(arr - med)))
    return {
        "samples": len(arr),
        "median": med,
        "mad": mad,
        "up": max(floor, med + k * mad),
        "down": min(-floor, med - k * mad),
    }


def _changes(now: pd.DataFrame, then: pd.DataFrame, column: str) -> pd.Series:
    """Relative change of ``column`` per cell reached in both frames, by KEY."""
    merged = now.merge(then, on=KEY, suffixes=("", "_then"))
    reached = TrialStatus.REACHED.value
    ok = (merged["outcome"] == reached) & (merged["outcome_then"] == reached)
    ratio = merged.loc[ok, column] / merged.loc[ok, f"{column}_then"]
    return (ratio - 1.0)[ratio.notna() & (ratio > 0)]


def noise(
    history: pd.DataFrame, baseline: list[str], rules: Rules, cells_of: NightCells | None = None
) -> pd.DataFrame:
    """Per metric, the noise thresholds: over the baseline nights, each night's
    relative change against the median of the others (``cell`` scope: pooled
    over cells; ``all cells``: each night's median over cells), summarised by
    their median and scaled MAD, with the thresholds ``up`` and ``down``."""
    cells_of = cells_of or NightCells(history, rules.min_success)
    per_cell: dict[str, list[float]] = {m: [] for m in METRICS}
    per_night: dict[str, list[float]] = {m: [] for m in METRICS}
    if len(baseline) >= 2:
        for run_id in baseline:
            one = cells_of.of([run_id])
            rest = cells_of.of(r for r in baseline if r != run_id)
            for metric, (column, _) in METRICS.items():
                changes = _changes(one, rest, column)
                per_cell[metric] += changes.tolist()
                if len(changes) >= MIN_CELLS_FOR_ALL:
                    per_night[metric].append(float(changes.median()))
    rows = [
        {"metric": m, "scope": scope, **_threshold(values[m], rules.k, rules.floor(m))}
        for m in METRICS
        for scope, values in (("cell", per_cell), ("all cells", per_night))
    ]
    return pd.DataFrame(rows)


def flip_shares(
    history: pd.DataFrame, baseline: list[str], rules: Rules, cells_of: NightCells | None = None
) -> pd.DataFrame:
    """Per cell (``KEY``), ``flip_share``: the share of baseline nights whose own
    outcome differs from the outcome of all baseline nights pooled. Empty with
    fewer than two baseline nights."""
    if len(baseline) < 2:
        return pd.DataFrame(columns=[*KEY, "flip_share"])
    cells_of = cells_of or NightCells(history, rules.min_success)
    pooled = cells_of.of(baseline)[[*KEY, "outcome"]]
    differs = []
    for run_id in baseline:
        one = cells_of.of([run_id])
        merged = pooled.merge(one[[*KEY, "outcome"]], on=KEY, how="left", suffixes=("", "_night"))
        differs.append((merged["outcome"] != merged["outcome_night"]).to_numpy())
    out = pooled[KEY].copy()
    out["flip_share"] = sum(d.astype(float) for d in differs) / len(baseline)
    return out.reset_index(drop=True)
