"""LR range test analysis: the suggestion rules, and how they compare with a
grid's measured success band and best LR. Pure functions (see ``docs/finder.md``).

The rules read the smoothed loss against the LR of one range test:

- **steepest**: the LR where the smoothed loss falls fastest against log LR
  (the most negative ``d loss / d log10(lr)``), looked for between the first
  ``skip_start`` points and the minimum.
- **min/10**: the LR of the lowest smoothed loss, divided by 10.
- **longest-descent**: the middle, on the log scale, of the longest descending
  stretch: the longest run of consecutive points over which the smoothed loss
  keeps falling (the first, of equally long runs). lrbench called it ``valley``
  before fastai's rule of that name was added.
- **fastai-valley**: fastai's ``valley`` (``fastai.callback.schedule``, the
  default of ``Learner.lr_find``): over the curve less its first ``num_steps //
  10`` and last 5 points, the longest strictly *decreasing subsequence* (not a
  run: points that do not fall are jumped over), and the LR about halfway along
  it by index (see ``fastai_valley``).

fastai's recorded loss is the same bias-corrected moving average (beta 0.98) of
the batch losses that ``lrbench find-lr`` stores as ``smoothed_loss``, so the
fastai rule reads that column unchanged.
"""

from __future__ import annotations

import math
import numbers
from typing import Any

import numpy as np
import pandas as pd

from analysis.cells import MIN_SUCCESS
from analysis.labels import labelled, optimizer_rank, value_text
from analysis.tables import optimizer_table
from harness.grid.specs import FINDER_RULES, TRAINING_FIELDS

RULES = FINDER_RULES
SKIP_START = 10
FASTAI_SKIP_END = 5  # fastai's lr_find leaves out the last 5 points
# The finder's setup columns; a grid series with the same values (and a
# constant schedule) is the ground truth for its suggestions.
SETUP = TRAINING_FIELDS


def steepest(lr: np.ndarray, loss: np.ndarray, skip_start: int = SKIP_START) -> float:
    """The LR of the most negative slope of ``loss`` against ``log10(lr)``,
    between point ``skip_start`` and the minimum (the whole curve when that
    leaves fewer than 3 points)."""
    lr, loss = np.asarray(lr, float), np.asarray(loss, float)
    end = int(np.argmin(loss)) + 1
    lo = skip_start if end - skip_start >= 3 else 0
    if end - lo < 3:
        end = len(loss)
    if end - lo < 2:
        return float(lr[int(np.argmin(loss))])
    slope = np.gradient(loss[lo:end], np.log10(lr[lo:end]))
    return float(lr[lo + int(np.argmin(slope))])


def min_over_10(lr: np.ndarray, loss: np.ndarray) -> float:
    """The LR of the lowest loss, divided by 10."""
    return float(np.asarray(lr, float)[int(np.argmin(loss))] / 10)


def longest_descent(loss: np.ndarray) -> tuple[int, int]:
    """First and last index of the longest run of consecutive points over which
    ``loss`` strictly falls (the first such run; ``(0, 0)`` if it never falls)."""
    falls = np.diff(np.asarray(loss, float)) < 0
    best, start = (0, 0), None
    for i, down in enumerate([*falls, False]):
        if down and start is None:
            start = i
        elif not down and start is not None:
            if i - start > best[1] - best[0]:
                best = (start, i)
            start = None
    return best


def descent_middle(lr: np.ndarray, loss: np.ndarray) -> float:
    """The LR halfway (log scale) through the longest descending stretch."""
    lr = np.asarray(lr, float)
    first, last = longest_descent(loss)
    return float(10 ** ((np.log10(lr[first]) + np.log10(lr[last])) / 2))


def longest_decreasing(loss: np.ndarray) -> tuple[int, int]:
    """fastai's valley search: ``(end - length, end)``, where ``end`` is the
    first index at which the longest strictly decreasing subsequence of
    ``loss`` ends and ``length`` is its number of points (O(n^2), as fastai).
    The start is fastai's ``end - length``: one before where the subsequence
    would start were its points consecutive, not where it does start."""
    loss = np.asarray(loss, float)
    length = np.ones(len(loss), dtype=int)
    for i in range(1, len(loss)):
        before = length[:i][loss[:i] > loss[i]]
        if len(before):
            length[i] = before.max() + 1
    if len(loss) == 0 or length.max() == 1:
        return (0, 0)
    end = int(np.argmax(length))  # the first of the longest
    return (end - int(length[end]), end)


def fastai_valley(lr: np.ndarray, loss: np.ndarray, num_steps: int | None = None) -> float:
    """fastai's ``valley`` suggestion, as its ``Learner.lr_find`` computes it:
    the curve less its first ``num_steps // 10`` points (``num_steps``: the
    planned ramp, the whole curve's length by default) and its last 5, cut at
    its first non-finite loss; then the LR at index ``start + int(L / 3) +
    int(L / 6)`` with ``(start, end) = longest_decreasing(loss)`` and ``L =
    end - start``: about halfway along by index. NaN when nothing is left."""
    lr, loss = np.asarray(lr, float), np.asarray(loss, float)
    skip = (len(loss) if num_steps is None else num_steps) // 10
    lr, loss = lr[skip:-FASTAI_SKIP_END], loss[skip:-FASTAI_SKIP_END]
    bad = np.flatnonzero(~np.isfinite(loss))
    if len(bad):
        lr, loss = lr[: bad[0]], loss[: bad[0]]
    if not len(loss):
        return math.nan
    start, end = longest_decreasing(loss)
    third = (end - start) / 3
    # fastai's index is -1 (the last point, by Python's indexing) only for a
    # two-point subsequence at the very start; the first point is meant.
    return float(lr[max(0, start + int(third) + int(third / 2))])


def suggest(
    lr: np.ndarray,
    loss: np.ndarray,
    skip_start: int = SKIP_START,
    num_steps: int | None = None,
) -> dict[str, float]:
    """Every rule's suggestion for one curve, by rule name (``RULES``).
    Non-finite losses (a NaN at the end) are dropped first; ``fastai-valley``
    trims the curve as fastai does (``num_steps``: the ramp's planned updates)."""
    lr, loss = np.asarray(lr, float), np.asarray(loss, float)
    fastai = fastai_valley(lr, loss, num_steps)
    ok = np.isfinite(loss)
    lr, loss = lr[ok], loss[ok]
    if not len(loss):
        return {rule: math.nan for rule in RULES}
    return {
        "steepest": steepest(lr, loss, skip_start),
        "min/10": min_over_10(lr, loss),
        "longest-descent": descent_middle(lr, loss),
        "fastai-valley": fastai,
    }


def runs(finder: pd.DataFrame) -> pd.DataFrame:
    """One row per range test (its setup, the ramp, why it stopped, its steps,
    the lowest smoothed loss and its LR) with the ``source`` and a ``label``."""
    df = finder if "source" in finder.columns else finder.assign(source=finder["sweep"])
    rows = []
    for (source, fid), g in df.groupby(["source", "finder_id"], sort=False):
        g = g.sort_values("step")
        first = g.iloc[0]
        at_min = g.loc[g["smoothed_loss"].idxmin()] if g["smoothed_loss"].notna().any() else None
        rows.append(
            {
                "source": source,
                "finder_id": fid,
                **{c: first[c] for c in SETUP},
                "seed": first["seed"],
                "start_lr": first["start_lr"],
                "end_lr": first["end_lr"],
                "num_steps": first["num_steps"],
                "stop_reason": first["stop_reason"],
                "steps": int(g["step"].max()),
                "last_lr": float(g["lr"].iloc[-1]),
                "min_loss": float(at_min["smoothed_loss"]) if at_min is not None else math.nan,
                "min_loss_lr": float(at_min["lr"]) if at_min is not None else math.nan,
                "wall_s": first["wall_s"],
            }
        )
    out = pd.DataFrame(rows)
    out["label"] = _labels(out)
    sources = {s: i for i, s in enumerate(dict.fromkeys(out["source"]))}
    order = sorted(
        range(len(out)),
        key=lambda i: (
            sources[out["source"].iat[i]],
            optimizer_rank(out["optimizer"].iat[i]),
            out["label"].iat[i],
        ),
    )
    return out.iloc[order].reset_index(drop=True)


def _labels(runs: pd.DataFrame) -> list[str]:
    """The optimizer, plus the setup columns that vary among a source's runs."""
    varying = [
        c
        for c in SETUP
        if c not in ("optimizer", "optimizer_kwargs")
        and runs.groupby("source")[c].nunique(dropna=False).max() > 1
    ]
    labels = []
    for _, row in runs.iterrows():
        kw = value_text("optimizer_kwargs", row["optimizer_kwargs"])
        text = row["optimizer"] + ("" if kw.endswith("={}") else f" ({kw})")
        extra = "; ".join(value_text(c, row[c]) for c in varying)
        labels.append(f"{text} [{extra}]" if extra else text)
    return labels


def suggestions(finder: pd.DataFrame, skip_start: int = SKIP_START) -> pd.DataFrame:
    """One row per range test and rule: the suggested LR, with the run's columns."""
    df = finder if "source" in finder.columns else finder.assign(source=finder["sweep"])
    found = {}
    for key, g in df.groupby(["source", "finder_id"], sort=False):
        g = g.sort_values("step")
        found[key] = suggest(
            g["lr"].to_numpy(),
            g["smoothed_loss"].to_numpy(),
            skip_start,
            int(g["num_steps"].iloc[0]),
        )
    r = runs(df)
    rows = [
        {**row, "rule": rule, "suggested_lr": found[(row["source"], row["finder_id"])][rule]}
        for row in r.to_dict("records")
        for rule in RULES
    ]
    return pd.DataFrame(rows)


def against_grid(
    suggested: pd.DataFrame, trials: pd.DataFrame | None, min_success: float = MIN_SUCCESS
) -> pd.DataFrame:
    """Each suggestion against the grid series of the same setup (same source,
    constant schedule): that series' band and best LR, ``decades_from_best``
    (``log10(suggested / best)``, > 0: above the best) and ``in_band``. Rows
    without a matching grid series keep NaN there."""
    matched = suggested.assign(_key=setup_key(suggested))
    df = labelled(trials) if trials is not None and len(trials) else None
    if df is not None and "schedule" in df:
        df = df[df["schedule"] == "constant"]
    if df is not None and len(df):
        table = optimizer_table(df, min_success)
        series = df.assign(_key=setup_key(df))[["source", "_key", "series"]].drop_duplicates()
        band = table[["source", "series", "lr_low", "lr_high", "decades", "best_lr"]]
        matched = matched.merge(series, on=["source", "_key"], how="left")
        matched = matched.merge(band, on=["source", "series"], how="left")
    for c in ("series", "lr_low", "lr_high", "decades", "best_lr"):
        if c not in matched:
            matched[c] = np.nan
    matched = matched.drop(columns="_key")
    matched["series"] = matched["series"].fillna("")
    lr = matched["suggested_lr"]
    matched["decades_from_best"] = np.log10(lr / matched["best_lr"])
    matched["in_band"] = pd.array(
        [
            None if pd.isna(lo) else bool(lo <= x <= hi)
            for x, lo, hi in zip(lr, matched["lr_low"], matched["lr_high"], strict=True)
        ],
        dtype="boolean",
    )
    return pd.DataFrame(matched)


def setup_key(df: pd.DataFrame) -> pd.Series:
    """The setup columns as one comparable text per row (nulls and number types
    written the same way on both sides)."""

    def text(v: Any) -> str:
        if v is None or (not isinstance(v, str) and pd.isna(v)):
            return ""
        return f"{float(v):g}" if isinstance(v, numbers.Real) else str(v)

    return df[list(SETUP)].apply(lambda row: "|".join(text(v) for v in row), axis=1)


def rule_scores(compared: pd.DataFrame) -> pd.DataFrame:
    """Per rule, over the range tests that have a grid band: how many
    suggestions fell inside it, and the median and largest distance to the
    best LR in decades: which rule to trust on this model and data."""
    rows: list[dict[str, Any]] = []
    known = compared[compared["best_lr"].notna()]
    for rule in RULES:
        g = known[known["rule"] == rule]
        away = g["decades_from_best"].abs()
        rows.append(
            {
                "rule": rule,
                "tests": len(g),
                "in_band": int(g["in_band"].fillna(False).sum()),
                "median_abs_decades": float(away.median()) if len(g) else math.nan,
                "max_abs_decades": float(away.max()) if len(g) else math.nan,
            }
        )
    return pd.DataFrame(rows)
