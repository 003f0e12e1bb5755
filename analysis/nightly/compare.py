"""A night's cells and bands set against its baseline's, and what is found.

- **Regressions**: a cell whose baseline outcome is ``reached`` and tonight's is
  not (``status``); a series whose success band lost an LR at either edge
  (``band``), unless that cell's own outcome flipped in the baseline nights
  (then it is a ``change``: the history says the cell is at its band's edge);
  a cell's time or steps to target above the baseline's by more
  than the noise threshold (``time``, ``steps``), and the same for the median
  change over all cells (``all cells``). The mirror images are improvements.
- A cell's time must also move by more than ``floor_seconds``: sub-second
  times jitter by a good fraction of themselves.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, fields
from typing import Any

import pandas as pd

from analysis.cells import SERIES, band
from analysis.labels import fmt_lr, optimizer_rank
from analysis.nightly.noise import KEY, METRICS, MIN_CELLS_FOR_ALL
from harness.store.records import TrialStatus

KINDS = ("status", "band", "time", "steps")
VERDICTS = ("regression", "improvement", "change")


@dataclass(frozen=True, kw_only=True)
class Finding:
    """One regression, improvement or status change of a night against its baseline."""

    kind: str  # one of KINDS
    verdict: str  # one of VERDICTS
    series: str  # the series, or "all cells"
    lr: float  # the cell's LR; NaN for a band or all cells
    before: str = ""  # the baseline's outcome, value or band, as text
    after: str = ""  # tonight's
    change: float = math.nan  # relative change (time, steps) or decades (band)
    threshold: float = math.nan  # the noise threshold it crossed
    message: str  # the finding in one line


FINDING_COLUMNS = [f.name for f in fields(Finding)]


def _pct(x: float) -> str:
    return f"{x:+.0%}"


def _value(x: Any, metric: str) -> str:
    if x is None or (isinstance(x, float) and math.isnan(x)):
        return ""
    return f"{x:.3g} s" if metric == "time" else f"{x:.0f}"


def _status_verdict(before: Any, after: Any) -> str:
    if not isinstance(before, str) or not isinstance(after, str) or before == after:
        return ""
    if before == TrialStatus.REACHED.value:
        return "regression"
    if after == TrialStatus.REACHED.value:
        return "improvement"
    return "change"


def compare_cells(
    base: pd.DataFrame,
    tonight: pd.DataFrame,
    thresholds: pd.DataFrame,
    floor_seconds: float = 0.0,
    flips: pd.DataFrame | None = None,
) -> pd.DataFrame:
    """Per cell: the baseline's outcome, reached count, time and steps beside
    tonight's, the relative changes, and a verdict per kind (``status``,
    ``time``, ``steps``: ``regression``, ``improvement``, ``change`` or ``""``).

    ``flips`` (``analysis.nightly.noise.flip_shares``) gives each cell's share
    of baseline nights whose own outcome differed from the baseline's: a cell
    that flipped there is at the edge of its band, so its status changing
    tonight is a ``change``, not a regression or an improvement."""
    keep = [*KEY, "n", "n_reached", "n_error", "outcome", "time_median_s", "steps_median"]
    merged = base[keep].merge(tonight[keep], on=KEY, how="outer", suffixes=("_base", ""))
    if flips is not None and len(flips):
        merged = merged.merge(flips[[*KEY, "flip_share"]], on=KEY, how="left")
    else:
        merged["flip_share"] = math.nan
    merged["status"] = [
        "change" if verdict and share > 0 else verdict
        for verdict, share in zip(
            (
                _status_verdict(b, a)
                for b, a in zip(merged["outcome_base"], merged["outcome"], strict=True)
            ),
            merged["flip_share"].fillna(0.0),
            strict=True,
        )
    ]
    cell = thresholds[thresholds["scope"] == "cell"].set_index("metric")
    reached = TrialStatus.REACHED.value
    both = (merged["outcome_base"] == reached) & (merged["outcome"] == reached)
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
    merged["_rank"] = merged["optimizer"].map(optimizer_rank)
    merged = merged.sort_values(["_rank", "variant", "lr"], kind="stable")
    return merged.drop(columns="_rank").reset_index(drop=True)


def cell_findings(cells: pd.DataFrame, thresholds: pd.DataFrame) -> list[Finding]:
    """The status, time and steps findings of ``compare_cells``' rows."""
    found = []
    cell = thresholds[thresholds["scope"] == "cell"].set_index("metric")
    for row in cells.itertuples(index=False):
        where = f"{row.series} at lr {fmt_lr(row.lr)}"
        if row.status:
            base_finished = int(row.n_base - row.n_error_base)
            found.append(
                Finding(
                    kind="status",
                    verdict=row.status,
                    series=row.series,
                    lr=row.lr,
                    before=row.outcome_base,
                    after=row.outcome,
                    message=f"{where}: {row.outcome_base} -> {row.outcome} (baseline: reached "
                    f"in {int(row.n_reached_base)} of {base_finished} trials"
                    + (
                        f"; its outcome flipped on {row.flip_share:.0%} of the baseline nights)"
                        if row.flip_share > 0
                        else ")"
                    ),
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
                Finding(
                    kind=metric,
                    verdict=verdict,
                    series=row.series,
                    lr=row.lr,
                    before=_value(before, metric),
                    after=_value(after, metric),
                    change=change,
                    threshold=limit,
                    message=f"{where}: {words} {_value(before, metric)} -> "
                    f"{_value(after, metric)} ({_pct(change)}; threshold {_pct(limit)})",
                )
            )
    return found


def all_cells_findings(cells: pd.DataFrame, thresholds: pd.DataFrame) -> list[Finding]:
    """The findings of the median change over all cells, per metric."""
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
                Finding(
                    kind=metric,
                    verdict=verdict,
                    series="all cells",
                    lr=math.nan,
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
    return f"{fmt_lr(low)} .. {fmt_lr(high)}"


def compare_bands(
    base: pd.DataFrame, tonight: pd.DataFrame, flips: pd.DataFrame | None = None
) -> pd.DataFrame:
    """Per series: the baseline's success band and tonight's, the change of
    width in decades, and a ``verdict``: ``regression`` when the band lost an
    LR at either edge (or vanished), ``improvement`` when it only grew; a
    ``change`` when every edge cell that moved flipped in the baseline nights
    (``flips``, as for ``compare_cells``)."""
    keep = [*SERIES, "lr_low", "lr_high", "decades"]
    merged = band(base)[keep].merge(
        band(tonight)[keep], on=SERIES, how="outer", suffixes=("_base", "")
    )
    flipped = (
        {(r.series, r.lr) for r in flips.itertuples(index=False) if r.flip_share > 0}
        if flips is not None and len(flips)
        else set()
    )
    verdicts = []
    for row in merged.itertuples(index=False):
        lo0, hi0, lo1, hi1 = row.lr_low_base, row.lr_high_base, row.lr_low, row.lr_high
        if math.isnan(lo0):
            verdicts.append("" if math.isnan(lo1) else "improvement")
        elif math.isnan(lo1) or lo1 > lo0 or hi1 < hi0:
            lost = [lr for lr, gone in ((lo0, lo1 > lo0), (hi0, hi1 < hi0)) if gone]
            noisy = lost and all((row.series, lr) in flipped for lr in lost)
            verdicts.append("change" if noisy else "regression")
        else:
            verdicts.append("improvement" if lo1 < lo0 or hi1 > hi0 else "")
    merged["verdict"] = verdicts
    merged["change_decades"] = merged["decades"] - merged["decades_base"]
    return merged.drop(columns="source")


def band_findings(bands: pd.DataFrame) -> list[Finding]:
    """The findings of ``compare_bands``' rows that have a verdict."""
    found = []
    for row in bands[bands["verdict"] != ""].itertuples(index=False):
        before = band_text(row.lr_low_base, row.lr_high_base)
        after = band_text(row.lr_low, row.lr_high)
        found.append(
            Finding(
                kind="band",
                verdict=row.verdict,
                series=row.series,
                lr=math.nan,
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


def findings_frame(found: list[Finding]) -> pd.DataFrame:
    """``found`` as a tidy frame (``FINDING_COLUMNS``), regressions first, then
    improvements and changes, each by kind (``KINDS``)."""
    findings = pd.DataFrame([asdict(f) for f in found], columns=FINDING_COLUMNS)
    if len(findings):
        findings["_v"] = findings["verdict"].map(VERDICTS.index)
        findings["_k"] = findings["kind"].map(KINDS.index)
        findings = findings.sort_values(["_v", "_k"], kind="stable").drop(columns=["_v", "_k"])
    return findings.reset_index(drop=True)
