"""The LR range test figure: smoothed loss against LR per range test, each
suggestion marked, and the grid's success band and best LR where a grid sweep
of the same setup exists."""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any

from analysis.finder.suggest import RULES
from analysis.plotkit import figure, log_x, title
from harness.lazy import lazy

if TYPE_CHECKING:
    import matplotlib.lines as mlines
    import matplotlib.patches as mpatches
    import pandas as pd
    from matplotlib.figure import Figure
else:
    mlines = lazy("matplotlib.lines")
    mpatches = lazy("matplotlib.patches")

RULE_STYLES: dict[str, dict[str, Any]] = {
    "steepest": dict(color="#0072b2", ls="--"),
    "min/10": dict(color="#d55e00", ls=":"),
    "longest-descent": dict(color="#009e73", ls="-."),
    "fastai-valley": dict(color="#cc79a7", ls=(0, (5, 1.5, 1, 1.5, 1, 1.5))),
}
COLUMNS = 3


def finder_figure(finder: pd.DataFrame, compared: pd.DataFrame) -> Figure:
    """One panel per range test: the batch loss (faint) and its smoothed curve
    against LR, a vertical line per suggestion rule, and, when ``compared``
    (``analysis.finder.suggest.against_grid``) has a band for it, the band shaded and
    the best LR starred."""
    panels = compared.drop_duplicates(["source", "finder_id"])
    several = panels["source"].nunique() > 1
    ncols = min(COLUMNS, len(panels))
    nrows = math.ceil(len(panels) / ncols)
    fig, axes = figure(nrows, ncols, w=4.6, h=3.4)
    flat = [ax for row in axes for ax in row]
    for ax, (_, run) in zip(flat, panels.iterrows(), strict=False):
        g = finder[(finder["finder_id"] == run["finder_id"])]
        if "source" in finder.columns:
            g = g[g["source"] == run["source"]]
        g = g.sort_values("step")
        smooth = g["smoothed_loss"]
        ax.plot(g["lr"], g["batch_loss"], color="0.75", lw=0.7, zorder=1)
        ax.plot(g["lr"], smooth, color="0.15", lw=1.6, zorder=2)
        finite = smooth[smooth.notna() & (smooth < float("inf"))]
        if len(finite):
            low, first = float(finite.min()), float(finite.iloc[0])
            span = max(first - low, 1e-3 * max(abs(first), 1.0))
            ax.set_ylim(low - 0.15 * span, first + 0.6 * span)
        if not math.isnan(run["lr_low"]):
            ax.axvspan(run["lr_low"], run["lr_high"], color="#2ca02c", alpha=0.12, lw=0)
            best = g.iloc[(g["lr"] - run["best_lr"]).abs().argmin()]
            ax.plot(
                [run["best_lr"]],
                [best["smoothed_loss"]],
                marker="*",
                markersize=13,
                color="#2ca02c",
                markeredgecolor="0.1",
                zorder=4,
            )
        rows = compared[
            (compared["source"] == run["source"]) & (compared["finder_id"] == run["finder_id"])
        ]
        for _, r in rows.iterrows():
            if math.isfinite(r["suggested_lr"]):
                ax.axvline(r["suggested_lr"], lw=1.5, zorder=3, **RULE_STYLES[r["rule"]])
        log_x(ax)
        ax.set_xlabel("learning rate")
        ax.set_ylabel("training loss")
        ax.set_title(title(run["label"], run["source"], several), fontsize="medium")
    for ax in flat[len(panels) :]:
        ax.set_visible(False)
    handles: list[Any] = [
        mlines.Line2D([], [], color="0.15", lw=1.6, label="smoothed loss"),
        mlines.Line2D([], [], color="0.75", lw=0.7, label="batch loss"),
        *(
            mlines.Line2D([], [], lw=1.5, label=f"{rule} suggestion", **RULE_STYLES[rule])
            for rule in RULES
        ),
    ]
    if compared["lr_low"].notna().any():
        handles += [
            mpatches.Patch(color="#2ca02c", alpha=0.25, label="grid: success band"),
            mlines.Line2D(
                [],
                [],
                ls="none",
                marker="*",
                markersize=11,
                color="#2ca02c",
                markeredgecolor="0.1",
                label="grid: best LR",
            ),
        ]
    fig.legend(handles=handles, loc="outside right upper", frameon=False, fontsize="small")
    return fig
