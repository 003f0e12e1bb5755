"""Nightly regression detection: pure functions from the history
(``History.read()``) to the judgement of one night against its baseline.

Vocabulary (see ``docs/nightly.md``):

- A **night** is one committed run of a grid (``run_id``); a date may hold several.
- A night is **good** when it is complete: every trial of its grid finished
  (none ended in ``error``).
- A night's **baseline** is the last ``baseline_nights`` good nights before it
  with the same grid (digest) on the same device. Without one (the first night,
  a changed grid, a new device) nothing is judged and nothing is a regression.
- **Cells** are those of ``analysis.tables``: a series at one LR, its trials
  pooled over seeds and, in the baseline, over nights. A cell's outcome is
  ``reached`` when at least ``min_success`` of its finished trials reached the
  target, and its time and steps are medians over the trials that reached it.
- **Regressions**: a cell whose baseline outcome is ``reached`` and tonight's is
  not (``status``); a series whose success band lost an LR at either edge
  (``band``); a cell's time or steps to target above the baseline's by more
  than the noise threshold (``time``, ``steps``), and the same for the median
  change over all cells (``all cells``). The mirror images are improvements.
- The **noise threshold** of a metric comes from the baseline itself: each
  baseline night's relative change against the median of the other baseline
  nights, pooled over cells; the threshold is their median plus ``k`` times
  their MAD (scaled to a standard deviation), and never less than the floor.
  A cell's time must also move by more than ``floor_seconds``: sub-second
  times jitter by a good fraction of themselves.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from analysis import tables as T
from harness.errors import LrbenchError

if TYPE_CHECKING:
    import pandas as pd

KEY = ["series", "optimizer", "variant", "lr"]
# metric -> (cells column, words)
METRICS = {
    "time": ("time_median_s", "time to target"),
    "steps": ("steps_median", "steps to target"),
}
KINDS = ("status", "band", "time", "steps")
VERDICTS = ("regression", "improvement", "change")
MAD_SCALE = 1.4826  # MAD x this estimates a normal standard deviation
MIN_CELLS_FOR_ALL = 3  # the all-cells change needs at least this many cells
FINDING_COLUMNS = [
    "kind",
    "verdict",
    "series",
    "lr",
    "before",
    "after",
    "change",
    "threshold",
    "message",
]
NIGHT_COLUMNS = [
    "run_id",
    "date",
    "started_at",
    "grid",
    "grid_digest",
    "revision",
    "complete",
    "device",
    "trials",
    "reached",
    "budget",
    "diverged",
    "error",
    "env",
]


@dataclass(frozen=True)
class Rules:
    """How a night is judged."""

    baseline_nights: int = 7  # the baseline: median of at most this many good nights
    k: float = 3.0  # noise threshold: median + k x MAD of the baseline's own changes
    floor_time: float = 0.20  # ... but never below this relative change of time
    floor_steps: float = 0.10  # ... or of steps
    floor_seconds: float = 0.25  # and a cell's time must move by more than this
    min_success: float = T.MIN_SUCCESS  # share of a cell's trials that must reach

    def floor(self, metric: str) -> float:
        """The smallest relative change of ``metric`` (``time``, ``steps``) ever flagged."""
        return self.floor_time if metric == "time" else self.floor_steps

    def check(self) -> None:
        """Raise ``LrbenchError`` for a value outside its range."""
        if self.baseline_nights < 1:
            raise LrbenchError(f"--baseline-nights: {self.baseline_nights} is not >= 1")
        if not self.k >= 0:
            raise LrbenchError(f"--k: {self.k} is not >= 0")
        for name, value in (
            ("--floor-time", self.floor_time),
            ("--floor-steps", self.floor_steps),
            ("--floor-seconds", self.floor_seconds),
        ):
            if not value >= 0:
                raise LrbenchError(f"{name}: {value} is not >= 0")
        if not 0 < self.min_success <= 1:
            raise LrbenchError(f"--min-success: {self.min_success} is outside (0, 1]")


@dataclass(frozen=True)
class Judgement:
    """One night set against its baseline. Every frame is tidy."""

    night: dict[str, Any]  # tonight's row of ``nights()``
    baseline: list[str]  # run ids of the baseline nights, oldest first
    note: str  # what tonight was compared with, in words
    nights: pd.DataFrame  # the nights of tonight's grid and device up to tonight
    cells: pd.DataFrame  # per cell: baseline and tonight, and each verdict
    bands: pd.DataFrame  # per series: baseline band and tonight's
    noise: pd.DataFrame  # per metric and scope: the samples and thresholds
    findings: pd.DataFrame  # FINDING_COLUMNS, regressions first
    env: pd.DataFrame  # environment keys that differ across the nights shown
    trend: pd.DataFrame  # per night and cell: outcome, time and steps

    @property
    def regressions(self) -> pd.DataFrame:
        """The findings that are regressions."""
        return self.findings[self.findings["verdict"] == "regression"]

    @property
    def improvements(self) -> pd.DataFrame:
        """The findings that are improvements."""
        return self.findings[self.findings["verdict"] == "improvement"]

    @property
    def verdict(self) -> str:
        """``regression``, ``clean``, or ``no baseline``."""
        if not self.baseline:
            return "no baseline"
        return "regression" if len(self.regressions) else "clean"


def nights(history: pd.DataFrame) -> pd.DataFrame:
    """One row per committed run, oldest first: its identity, grid, revision,
    whether it is complete, its device (from its environment, else its trials'
    most common), trial counts by status, and its environment (a dict)."""
    import pandas as pd

    rows = []
    for run_id, group in history.groupby("run_id", sort=False):
        first = group.iloc[0]
        env = json.loads(first["env"]) if isinstance(first["env"], str) and first["env"] else {}
        counts = group["status"].value_counts()
        device = env.get("device") or (group["device"].mode().iloc[0] if len(group) else "")
        rows.append(
            {
                "run_id": run_id,
                "date": first["date"],
                "started_at": first["run_started_at"],
                "grid": first["sweep"],
                "grid_digest": first["grid_digest"],
                "revision": first["revision"] or "",
                "complete": bool(first["complete"]),
                "device": device,
                "trials": len(group),
                **{s: int(counts.get(s, 0)) for s in T.STATUSES},
                "env": env,
            }
        )
    df = pd.DataFrame(rows, columns=NIGHT_COLUMNS)
    return df.sort_values(["started_at", "run_id"], kind="stable", ignore_index=True)


def night_cells(trials: pd.DataFrame, min_success: float = T.MIN_SUCCESS) -> pd.DataFrame:
    """``tables.cells`` of some nights' trials pooled (one ``source``)."""
    df = trials.drop(columns=["source"], errors="ignore").assign(source="nightly")
    return T.cells(T.label_series(df), min_success)


def _threshold(values: list[float], k: float, floor: float) -> dict[str, Any]:
    import numpy as np

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
    ok = (merged["outcome"] == "reached") & (merged["outcome_then"] == "reached")
    ratio = merged.loc[ok, column] / merged.loc[ok, f"{column}_then"]
    return (ratio - 1.0)[ratio.notna() & (ratio > 0)]


def noise(history: pd.DataFrame, baseline: list[str], rules: Rules) -> pd.DataFrame:
    """Per metric, the noise thresholds: over the baseline nights, each night's
    relative change against the median of the others (``cell`` scope: pooled
    over cells; ``all cells``: each night's median over cells), summarised by
    their median and scaled MAD, with the thresholds ``up`` and ``down``."""
    import pandas as pd

    per_cell: dict[str, list[float]] = {m: [] for m in METRICS}
    per_night: dict[str, list[float]] = {m: [] for m in METRICS}
    if len(baseline) >= 2:
        for run_id in baseline:
            one = night_cells(history[history["run_id"] == run_id], rules.min_success)
            others = history[history["run_id"].isin([r for r in baseline if r != run_id])]
            rest = night_cells(others, rules.min_success)
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


def _pct(x: float) -> str:
    return f"{x:+.0%}"


def _value(x: Any, metric: str) -> str:
    if x is None or (isinstance(x, float) and math.isnan(x)):
        return ""
    return f"{x:.3g} s" if metric == "time" else f"{x:.0f}"


def _finding(kind: str, verdict: str, series: str, lr: float, **rest: Any) -> dict[str, Any]:
    return {
        "kind": kind,
        "verdict": verdict,
        "series": series,
        "lr": lr,
        "before": rest.get("before", ""),
        "after": rest.get("after", ""),
        "change": rest.get("change", math.nan),
        "threshold": rest.get("threshold", math.nan),
        "message": rest["message"],
    }


def _status_verdict(before: Any, after: Any) -> str:
    if not isinstance(before, str) or not isinstance(after, str) or before == after:
        return ""
    if before == "reached":
        return "regression"
    if after == "reached":
        return "improvement"
    return "change"


def compare_cells(
    base: pd.DataFrame, tonight: pd.DataFrame, thresholds: pd.DataFrame, floor_seconds: float = 0.0
) -> pd.DataFrame:
    """Per cell: the baseline's outcome, reached count, time and steps beside
    tonight's, the relative changes, and a verdict per kind (``status``,
    ``time``, ``steps``: ``regression``, ``improvement``, ``change`` or ``""``)."""
    keep = [*KEY, "n", "n_reached", "n_error", "outcome", "time_median_s", "steps_median"]
    merged = base[keep].merge(tonight[keep], on=KEY, how="outer", suffixes=("_base", ""))
    merged["status"] = [
        _status_verdict(b, a)
        for b, a in zip(merged["outcome_base"], merged["outcome"], strict=True)
    ]
    cell = thresholds[thresholds["scope"] == "cell"].set_index("metric")
    both = (merged["outcome_base"] == "reached") & (merged["outcome"] == "reached")
    for metric, (column, _) in METRICS.items():
        change = (merged[column] / merged[f"{column}_base"] - 1.0).where(both)
        moved = (merged[column] - merged[f"{column}_base"]).abs().where(both).fillna(0.0)
        big = moved > (floor_seconds if metric == "time" else 0.0)
        up, down = cell.loc[metric, "up"], cell.loc[metric, "down"]
        merged[f"{metric}_change"] = change
        merged[metric] = [
            "regression" if c > up and b else "improvement" if c < down and b else ""
            for c, b in zip(change.fillna(0.0), big, strict=True)
        ]
    merged["_rank"] = merged["optimizer"].map(T.optimizer_rank)
    merged = merged.sort_values(["_rank", "variant", "lr"], kind="stable")
    return merged.drop(columns="_rank").reset_index(drop=True)


def _cell_findings(cells: pd.DataFrame, thresholds: pd.DataFrame) -> list[dict[str, Any]]:
    found = []
    cell = thresholds[thresholds["scope"] == "cell"].set_index("metric")
    for row in cells.itertuples(index=False):
        where = f"{row.series} at lr {T.fmt_lr(row.lr)}"
        if row.status:
            base_finished = int(row.n_base - row.n_error_base)
            found.append(
                _finding(
                    "status",
                    row.status,
                    row.series,
                    row.lr,
                    before=row.outcome_base,
                    after=row.outcome,
                    message=f"{where}: {row.outcome_base} -> {row.outcome} (baseline: reached "
                    f"in {int(row.n_reached_base)} of {base_finished} trials)",
                )
            )
        for metric, (column, words) in METRICS.items():
            verdict = getattr(row, metric)
            if not verdict:
                continue
            change = getattr(row, f"{metric}_change")
            limit = cell.loc[metric, "up" if verdict == "regression" else "down"]
            before, after = getattr(row, f"{column}_base"), getattr(row, column)
            found.append(
                _finding(
                    metric,
                    verdict,
                    row.series,
                    row.lr,
                    before=_value(before, metric),
                    after=_value(after, metric),
                    change=change,
                    threshold=limit,
                    message=f"{where}: {words} {_value(before, metric)} -> "
                    f"{_value(after, metric)} ({_pct(change)}; threshold {_pct(limit)})",
                )
            )
    return found


def _all_cells_findings(cells: pd.DataFrame, thresholds: pd.DataFrame) -> list[dict[str, Any]]:
    found = []
    scope = thresholds[thresholds["scope"] == "all cells"].set_index("metric")
    for metric, (_, words) in METRICS.items():
        changes = cells[f"{metric}_change"].dropna()
        if len(changes) < MIN_CELLS_FOR_ALL:
            continue
        median = float(changes.median())
        up, down = scope.loc[metric, "up"], scope.loc[metric, "down"]
        verdict = "regression" if median > up else "improvement" if median < down else ""
        if verdict:
            limit = up if verdict == "regression" else down
            found.append(
                _finding(
                    metric,
                    verdict,
                    "all cells",
                    math.nan,
                    change=median,
                    threshold=limit,
                    message=f"all cells: median change of {words} {_pct(median)} over "
                    f"{len(changes)} cells (threshold {_pct(limit)})",
                )
            )
    return found


def band_text(low: float, high: float) -> str:
    """A band as ``low .. high``, or ``none``."""
    if math.isnan(low):
        return "none"
    return f"{T.fmt_lr(low)} .. {T.fmt_lr(high)}"


def compare_bands(base: pd.DataFrame, tonight: pd.DataFrame) -> pd.DataFrame:
    """Per series: the baseline's success band and tonight's, the change of
    width in decades, and a ``verdict``: ``regression`` when the band lost an
    LR at either edge (or vanished), ``improvement`` when it only grew."""
    keep = [*T.SERIES, "lr_low", "lr_high", "decades"]
    merged = T.band(base)[keep].merge(
        T.band(tonight)[keep], on=T.SERIES, how="outer", suffixes=("_base", "")
    )
    verdicts = []
    for row in merged.itertuples(index=False):
        lo0, hi0, lo1, hi1 = row.lr_low_base, row.lr_high_base, row.lr_low, row.lr_high
        if math.isnan(lo0):
            verdicts.append("" if math.isnan(lo1) else "improvement")
        elif math.isnan(lo1) or lo1 > lo0 or hi1 < hi0:
            verdicts.append("regression")
        else:
            verdicts.append("improvement" if lo1 < lo0 or hi1 > hi0 else "")
    merged["verdict"] = verdicts
    merged["change_decades"] = merged["decades"] - merged["decades_base"]
    return merged.drop(columns="source")


def _band_findings(bands: pd.DataFrame) -> list[dict[str, Any]]:
    found = []
    for row in bands[bands["verdict"] != ""].itertuples(index=False):
        before = band_text(row.lr_low_base, row.lr_high_base)
        after = band_text(row.lr_low, row.lr_high)
        found.append(
            _finding(
                "band",
                row.verdict,
                row.series,
                math.nan,
                before=before,
                after=after,
                change=row.change_decades,
                message=f"{row.series}: success band {before} -> {after}"
                + (
                    ""
                    if math.isnan(row.change_decades)
                    else f" ({row.change_decades:+.2g} decades)"
                ),
            )
        )
    return found


def _flat(env: dict[str, Any], prefix: str = "") -> dict[str, str]:
    out: dict[str, str] = {}
    for key, value in env.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict):
            out.update(_flat(value, f"{name}."))
        elif key == "gpus" and isinstance(value, list):
            out[name] = "; ".join(f"{g.get('name')} (driver {g.get('driver')})" for g in value)
        else:
            out[name] = "" if value is None else str(value)
    return out


def env_changes(shown: pd.DataFrame) -> pd.DataFrame:
    """The environment keys (``versions.tensorflow``, ``device``, ``revision``,
    ``data.mnist5k`` ...) whose values differ across the given nights: one row
    per key, one column per night (its run id)."""
    import pandas as pd

    flat = {
        row.run_id: {"revision": row.revision, **_flat(row.env)}
        for row in shown.itertuples(index=False)
    }
    keys = sorted(set().union(*flat.values())) if flat else []
    rows = []
    for key in keys:
        values = [flat[r].get(key, "") for r in flat]
        if len(set(values)) > 1:
            rows.append({"key": key, **dict(zip(flat, values, strict=True))})
    return pd.DataFrame(rows, columns=["key", *flat])


def trend(history: pd.DataFrame, run_ids: list[str], min_success: float) -> pd.DataFrame:
    """Per night (of ``run_ids``) and cell: outcome, median time and steps to
    target, oldest night first."""
    trials = history[history["run_id"].isin(run_ids)]
    # one night is one source of ``tables.cells``: every night's cells in one pass
    labelled = T.label_series(
        trials.drop(columns=["source"], errors="ignore").assign(source=trials["run_id"])
    )
    cells = T.cells(labelled, min_success).rename(columns={"source": "run_id"})
    started = trials.groupby("run_id")["run_started_at"].first()
    cells.insert(1, "started_at", cells["run_id"].map(started))
    order = {r: i for i, r in enumerate(run_ids)}
    cells = cells.sort_values("run_id", key=lambda c: c.map(order), kind="stable")
    columns = ["run_id", "started_at", *KEY, "outcome", "time_median_s", "steps_median"]
    return cells[[*columns, "budget_s"]].reset_index(drop=True)


def _pick(all_nights: pd.DataFrame, run_id: str | None) -> int:
    if all_nights.empty:
        raise LrbenchError("the history holds no nights yet; run `lrbench nightly GRID` first")
    if run_id is None:
        return len(all_nights) - 1
    found = all_nights.index[all_nights["run_id"] == run_id]
    if not len(found):
        known = ", ".join(all_nights["run_id"].tail(5))
        raise LrbenchError(f"--run: {run_id} is not in the history (latest: {known})")
    return int(found[0])


def _no_baseline_note(earlier: pd.DataFrame, night: dict[str, Any]) -> str:
    grid = earlier[earlier["grid_digest"] == night["grid_digest"]]
    if grid.empty:
        return (
            f"first night of grid {night['grid']!r} (digest {night['grid_digest']}): "
            "no baseline yet, nothing judged; tonight starts the baseline"
        )
    on_device = grid[grid["device"] == night["device"]]
    if on_device.empty:
        return (
            f"first night on device {night['device']!r} (earlier nights ran on "
            f"{', '.join(sorted(set(grid['device'])))}): no baseline on it yet, nothing judged"
        )
    return (
        f"no good night yet: the {len(on_device)} earlier nights of this grid on this device "
        "all had error trials; nothing judged"
    )


def judge(
    history: pd.DataFrame, rules: Rules | None = None, run_id: str | None = None
) -> Judgement:
    """Judge one night of ``history`` (default: the latest) against its baseline."""
    import pandas as pd

    rules = rules or Rules()
    all_nights = nights(history)
    at = _pick(all_nights, run_id)
    night = all_nights.iloc[at].to_dict()
    earlier = all_nights.iloc[:at]
    same = earlier[
        (earlier["grid_digest"] == night["grid_digest"]) & (earlier["device"] == night["device"])
    ]
    baseline = list(same.loc[same["complete"], "run_id"].tail(rules.baseline_nights))
    shown_nights = pd.concat([same, all_nights.iloc[[at]]], ignore_index=True)
    tonight_trials = history[history["run_id"] == night["run_id"]]
    tonight = night_cells(tonight_trials, rules.min_success)
    context = all_nights.iloc[max(0, at - max(len(baseline), 1)) : at + 1]
    env = env_changes(context)
    trend_frame = trend(history, list(shown_nights["run_id"]), rules.min_success)
    thresholds = noise(history, baseline, rules)
    if not baseline:
        empty = night_cells(tonight_trials.iloc[0:0], rules.min_success)
        return Judgement(
            night=night,
            baseline=[],
            note=_no_baseline_note(earlier, night),
            nights=shown_nights,
            cells=compare_cells(empty, tonight, thresholds, rules.floor_seconds),
            bands=compare_bands(empty, tonight).assign(verdict=""),
            noise=thresholds,
            findings=pd.DataFrame(columns=FINDING_COLUMNS),
            env=env,
            trend=trend_frame,
        )
    base = night_cells(history[history["run_id"].isin(baseline)], rules.min_success)
    cells = compare_cells(base, tonight, thresholds, rules.floor_seconds)
    bands = compare_bands(base, tonight)
    found = [
        *_cell_findings(cells, thresholds),
        *_all_cells_findings(cells, thresholds),
        *_band_findings(bands),
    ]
    findings = pd.DataFrame(found, columns=FINDING_COLUMNS)
    if len(findings):
        findings["_v"] = findings["verdict"].map(VERDICTS.index)
        findings["_k"] = findings["kind"].map(KINDS.index)
        findings = findings.sort_values(["_v", "_k"], kind="stable").drop(columns=["_v", "_k"])
    dates = same[same["run_id"].isin(baseline)]["date"]
    span = (
        dates.iloc[0] if dates.iloc[0] == dates.iloc[-1] else f"{dates.iloc[0]} .. {dates.iloc[-1]}"
    )
    note = (
        f"the median of {len(baseline)} good night{'s' if len(baseline) > 1 else ''} ({span}) "
        f"of grid {night['grid']!r} on {night['device']}"
    )
    return Judgement(
        night=night,
        baseline=baseline,
        note=note,
        nights=shown_nights,
        cells=cells,
        bands=bands,
        noise=thresholds,
        findings=findings.reset_index(drop=True),
        env=env,
        trend=trend_frame,
    )
