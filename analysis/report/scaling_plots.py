"""The width-scaling figure, drawn on top of ``analysis.report.scaling``'s tidy frames."""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

import numpy as np

from analysis.plotkit import figure, log_y, palette
from analysis.report.scaling import SIZES
from harness.lazy import lazy
from harness.store.records import TrialStatus

if TYPE_CHECKING:
    import matplotlib.lines as mlines
    import pandas as pd
    from matplotlib.figure import Figure
else:
    mlines = lazy("matplotlib.lines")


def scaling_figure(points: pd.DataFrame, fits: pd.DataFrame) -> Figure:
    """Time to target against width (linear fit) and against weights (log-log
    fit, exponent in the legend), steps to target and seconds per step against
    width: one colour per optimizer and LR. Widths that missed the target are
    left out of the time and steps panels (and marked on the width axis)."""
    keys = list(dict.fromkeys(zip(points["source"], points["series"], strict=True)))
    several = points["source"].nunique() > 1
    name = {
        (source, series): f"{source}: {series}" if several else series for source, series in keys
    }
    colors = palette(list(name.values()))
    fig, axes = figure(2, 2, w=5.6, h=4.0)
    panels = [
        (axes[0][0], "time_to_target_s", "width", "time to target (s)", "linear"),
        (axes[0][1], "time_to_target_s", "n_params", "time to target (s)", "power"),
        (axes[1][0], "steps_to_target", "width", "steps to target", "linear"),
        (axes[1][1], "step_time_s", "width", "seconds per step (median)", "linear"),
    ]
    for key in keys:
        source, series = key
        g = points[(points["source"] == source) & (points["series"] == series)]
        f = fits[(fits["source"] == source) & (fits["series"] == series)]
        color = colors[name[key]]
        for ax, measure, size, _, kind in panels:
            ok = g if measure == "step_time_s" else g[g["outcome"] == TrialStatus.REACHED.value]
            ax.plot(ok[size], ok[measure], ls="none", marker="o", ms=5, color=color)
            missed = (
                g[g["outcome"] != TrialStatus.REACHED.value] if measure != "step_time_s" else g[:0]
            )
            if len(missed):
                ax.plot(
                    missed[size],
                    [0.02] * len(missed),
                    ls="none",
                    marker="x",
                    color=color,
                    transform=ax.get_xaxis_transform(),
                    clip_on=False,
                )
            row = f[(f["measure"] == measure) & (f["size"] == size)]
            if row.empty or len(ok) < 2:
                continue
            fit = row.iloc[0]
            xs = np.linspace(ok[size].min(), ok[size].max(), 50)
            ys = (
                fit["slope"] * xs + fit["intercept"]
                if kind == "linear"
                else fit["coefficient"] * xs ** fit["exponent"]
            )
            ax.plot(xs, ys, color=color, lw=1.2, ls="--", alpha=0.8)
    reached = points[points["outcome"] == TrialStatus.REACHED.value]
    for ax, measure, size, ylabel, kind in panels:
        shown = points if measure == "step_time_s" else reached
        ax.set_xlabel(SIZES[size] + (" (log)" if kind == "power" else ""))
        ax.set_ylabel(ylabel + (" (log)" if kind == "power" else ""))
        if not (shown[measure] > 0).any():  # nothing to plot (nor to log-scale)
            ax.text(
                0.5,
                0.5,
                "no width reached the target",
                transform=ax.transAxes,
                ha="center",
                va="center",
                color="0.4",
            )
        elif kind == "power":
            ax.set_xscale("log")
            log_y(ax)
        else:
            ax.set_ylim(bottom=0)
        ax.set_title(
            f"{ylabel.split(' (')[0].capitalize()} vs {SIZES[size]}"
            + (": log-log fit" if kind == "power" else ": linear fit")
        )

    handles = []
    for key in keys:
        source, series = key
        f = fits[
            (fits["source"] == source)
            & (fits["series"] == series)
            & (fits["measure"] == "time_to_target_s")
            & (fits["size"] == "n_params")
        ]
        e = float(f.iloc[0]["exponent"]) if len(f) else math.nan
        exp = "" if math.isnan(e) else f"  (time ~ weights^{e:.2f})"
        handles.append(
            mlines.Line2D(
                [], [], color=colors[name[key]], marker="o", ls="--", label=name[key] + exp
            )
        )
    handles += [
        mlines.Line2D([], [], ls="none", label=""),
        mlines.Line2D([], [], color="0.3", ls="--", label="least-squares fit"),
        mlines.Line2D([], [], color="0.3", ls="none", marker="x", label="missed the target"),
    ]
    fig.legend(handles=handles, loc="outside right upper", frameon=False, fontsize="small")
    return fig
