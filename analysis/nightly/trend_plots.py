"""The nightly trend figure, thin drawing on ``Judgement.trend``."""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

from analysis.labels import fmt_lr
from analysis.plotkit import figure, log_y, marker_style
from harness.lazy import lazy
from harness.store.records import TrialStatus

if TYPE_CHECKING:
    import matplotlib.lines as mlines
    import matplotlib.ticker as mticker
    import matplotlib.transforms as mtransforms
    import pandas as pd
    import seaborn as sns
    from matplotlib.figure import Figure

    from analysis.nightly.judge import Judgement
else:
    mlines = lazy("matplotlib.lines")
    mticker = lazy("matplotlib.ticker")
    mtransforms = lazy("matplotlib.transforms")
    sns = lazy("seaborn")

MISS_Y = 0.96  # misses sit on this line near the top of a panel (axes fraction)
MAX_TICKS = 10  # night labels per axis, at most (always including tonight)
MISSES = (TrialStatus.BUDGET.value, TrialStatus.DIVERGED.value)  # drawn on the top row


def night_labels(nights: pd.DataFrame) -> list[str]:
    """A short label per night: its date, with the UTC time where a date repeats."""
    dates = nights["date"].astype(str)
    repeated = dates.duplicated(keep=False)
    return [
        f"{d} {t:%H:%M:%S}" if rep else d
        for d, t, rep in zip(dates, nights["started_at"], repeated, strict=True)
    ]


def trend_figure(judgement: Judgement) -> Figure:
    """Time (left) and steps (right) to target per night, one row per series,
    one line per LR. Nights that missed the target are marked at the top by
    outcome; tonight's regressions are ringed in red."""
    trend = judgement.trend
    labels = night_labels(judgement.nights)
    position = {r: i for i, r in enumerate(judgement.nights["run_id"])}
    series = list(dict.fromkeys(trend["series"]))
    fig, axes = figure(len(series), 2, w=6.0, h=2.8)
    lrs = sorted(set(trend["lr"]))
    colors = dict(zip(lrs, sns.color_palette("viridis", len(lrs)), strict=True))
    tonight = position[judgement.night.run_id]
    ticks = list(range(len(labels) - 1, -1, -max(1, math.ceil(len(labels) / MAX_TICKS))))[::-1]
    flagged = judgement.cells
    for row, name in enumerate(series):
        mine = trend[trend["series"] == name]
        for col, (column, metric, title) in enumerate(
            (("time_median_s", "time", "time to target (s)"), ("steps_median", "steps", "steps"))
        ):
            ax = axes[row][col]
            top = mtransforms.blended_transform_factory(ax.transData, ax.transAxes)
            for lr, points in mine.groupby("lr"):
                x = points["run_id"].map(position)
                # misses of different LRs on the same night sit side by side
                jitter = (lrs.index(lr) - (len(lrs) - 1) / 2) * min(0.08, 0.6 / len(lrs))
                reached = points["outcome"] == TrialStatus.REACHED.value
                ax.plot(x[reached], points.loc[reached, column], "-o", ms=4, color=colors[lr])
                for outcome in MISSES:
                    miss = points["outcome"] == outcome
                    if miss.any():
                        ax.plot(
                            x[miss] + jitter,
                            [MISS_Y] * int(miss.sum()),
                            ls="none",
                            ms=6,
                            color=colors[lr],
                            transform=top,
                            **marker_style(outcome),
                        )
            bad = flagged[
                (flagged["series"] == name)
                & ((flagged["status"] == "regression") | (flagged[metric] == "regression"))
            ]
            for cell in bad.itertuples(index=False):
                value = getattr(cell, column)
                missed = cell.outcome != TrialStatus.REACHED.value or value != value
                ax.plot(
                    [tonight],
                    [MISS_Y if missed else value],
                    "o",
                    ms=13,
                    mfc="none",
                    mec="red",
                    mew=2,
                    transform=top if missed else ax.transData,
                )
            ax.set_yscale("log")
            values = mine.loc[mine["outcome"] == TrialStatus.REACHED.value, column].dropna()
            if len(values):
                log_y(ax)  # headroom above the data for the row of misses
                ax.set_ylim(values.min() / 1.3, values.max() * 1.8)
            ax.set_title(f"{name}: {title}", fontsize="medium")
            ax.set_xlim(-0.5, len(labels) - 0.5)
            ax.xaxis.set_major_locator(mticker.FixedLocator(ticks))
            ax.xaxis.set_major_formatter(mticker.FixedFormatter([labels[i] for i in ticks]))
            ax.tick_params(axis="x", labelrotation=30, labelsize="small")
            ax.axvline(tonight, color="0.6", lw=0.8, ls=":")
    handles = [
        mlines.Line2D([], [], color=c, lw=2, marker="o", ms=4, label=fmt_lr(lr))
        for lr, c in colors.items()
    ]
    handles.append(mlines.Line2D([], [], ls="none", label=""))
    for outcome in MISSES:
        handles.append(
            mlines.Line2D(
                [],
                [],
                ls="none",
                color="0.3",
                ms=6,
                label=f"{outcome} (top row)",
                **marker_style(outcome),
            )
        )
    handles.append(
        mlines.Line2D(
            [],
            [],
            ls="none",
            marker="o",
            ms=11,
            mfc="none",
            mec="red",
            mew=2,
            label="regression tonight",
        )
    )
    fig.legend(
        handles=handles, title="LR", loc="outside right upper", frameon=False, fontsize="small"
    )
    return fig
