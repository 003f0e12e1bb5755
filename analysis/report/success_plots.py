"""The success figures: every series and LR coloured by its outcome, and, with
several seeds, each cell's success rate. Thin drawing on ``analysis.cells``."""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from analysis.labels import fmt_lr
from analysis.plotkit import figure, legend, log_x, palette, plain, theme, title
from harness.lazy import lazy
from harness.store.records import TrialStatus

if TYPE_CHECKING:
    import matplotlib.colors as mcolors
    import matplotlib.patches as mpatches
    import matplotlib.pyplot as plt
    import matplotlib.ticker as mticker
    import pandas as pd
    from matplotlib.figure import Figure
else:
    mcolors = lazy("matplotlib.colors")
    mpatches = lazy("matplotlib.patches")
    plt = lazy("matplotlib.pyplot")
    mticker = lazy("matplotlib.ticker")

# the colour of a cell that missed the target, by its outcome
OUTCOME_COLORS = {
    TrialStatus.BUDGET.value: "#d9d9d9",
    TrialStatus.DIVERGED.value: "#e6550d",
    TrialStatus.ERROR.value: "#252525",
}


def success_map_figure(cells: pd.DataFrame) -> Figure:
    """Series x LR: reached cells coloured by median time to target (log scale),
    misses in a colour per outcome; with several seeds each cell shows its
    success rate (reached / finished)."""
    theme()
    sources = list(dict.fromkeys(cells["source"]))
    lrs = sorted(cells["lr"].unique())
    n_series = [cells.loc[cells["source"] == s, "series"].nunique() for s in sources]
    fig, axes = plt.subplots(
        len(sources),
        1,
        figsize=(max(9.5, 0.42 * len(lrs) + 4.5), sum(0.45 * n + 1.8 for n in n_series)),
        squeeze=False,
        layout="constrained",
        height_ratios=[n + 2 for n in n_series],
    )
    times = cells.loc[cells["outcome"] == TrialStatus.REACHED.value, "time_median_s"]
    norm = (
        mcolors.LogNorm(vmin=max(times.min(), 1e-3), vmax=max(times.max(), 1e-3 * 1.01))
        if len(times)
        else mcolors.LogNorm(1e-3, 1)
    )
    cmap = plt.get_cmap("viridis")
    kinds = list(OUTCOME_COLORS)
    miss = mcolors.ListedColormap([OUTCOME_COLORS[k] for k in kinds])
    image = None
    for row, source in enumerate(sources):
        ax = axes[row][0]
        data = cells[cells["source"] == source]
        series = list(dict.fromkeys(data["series"]))
        time_grid = np.full((len(series), len(lrs)), np.nan)
        miss_grid = np.full((len(series), len(lrs)), np.nan)
        for _, c in data.iterrows():
            i, j = series.index(c["series"]), lrs.index(c["lr"])
            if c["outcome"] == TrialStatus.REACHED.value:
                time_grid[i, j] = c["time_median_s"]
            else:
                miss_grid[i, j] = kinds.index(c["outcome"])
            if c["n"] > 1 or len(lrs) <= 16:
                text = (
                    f"{int(c['n_reached'])}/{int(c['n'] - c['n_error'])}"
                    if c["n"] > 1
                    else (
                        f"{c['time_median_s']:.2g}"
                        if c["outcome"] == TrialStatus.REACHED.value
                        else ""
                    )
                )
                dark = c["outcome"] in (TrialStatus.ERROR.value, TrialStatus.DIVERGED.value) or (
                    c["outcome"] == TrialStatus.REACHED.value and norm(c["time_median_s"]) < 0.5
                )
                ax.text(
                    j,
                    i,
                    text,
                    ha="center",
                    va="center",
                    fontsize="x-small",
                    color="white" if dark else "black",
                )
        image = ax.imshow(time_grid, cmap=cmap, norm=norm, aspect="auto")
        ax.imshow(miss_grid, cmap=miss, vmin=-0.5, vmax=len(kinds) - 0.5, aspect="auto")
        ax.set_yticks(range(len(series)), series)
        ax.set_xticks(
            range(len(lrs)), [fmt_lr(x) for x in lrs], rotation=0 if len(lrs) <= 12 else 90
        )
        ax.set_xticks(np.arange(-0.5, len(lrs)), minor=True)
        ax.set_yticks(np.arange(-0.5, len(series)), minor=True)
        ax.grid(False)
        ax.grid(which="minor", color="white", lw=1.5)
        ax.tick_params(which="minor", length=0)
        ax.set_xlabel("learning rate")
        seeds = int(data["n"].max())
        note = (
            f"cells: reached / finished of {seeds} seeds"
            if seeds > 1
            else "cells: time to target (s)"
        )
        what = f"Outcome by optimizer and learning rate\n({note})"
        ax.set_title(title(what, source, len(sources) > 1))
    if image is not None:
        bar = fig.colorbar(
            image, ax=[a[0] for a in axes], label="median time to target (s)", pad=0.01
        )
        bar.ax.yaxis.set_major_locator(mticker.LogLocator(base=10, subs=(1.0, 2.0, 5.0)))
        bar.ax.yaxis.set_major_formatter(mticker.FuncFormatter(plain))
        bar.ax.yaxis.set_minor_formatter(mticker.NullFormatter())
    fig.legend(
        handles=[mpatches.Patch(color=OUTCOME_COLORS[k], label=k) for k in kinds],
        loc="outside lower center",
        ncols=len(kinds),
        frameon=False,
        fontsize="small",
    )
    return fig


def success_rate_figure(cells: pd.DataFrame, colors: dict | None = None) -> Figure:
    """With several seeds: the share of finished trials that reached the target,
    per series and LR, one panel per source."""
    sources = list(dict.fromkeys(cells["source"]))
    colors = colors or palette(list(cells["series"]))
    fig, axes = figure(len(sources), 1, w=7.5)
    for row, source in enumerate(sources):
        ax = axes[row][0]
        data = cells[cells["source"] == source]
        for name, g in data.groupby("series", sort=False):
            g = g.sort_values("lr")
            ax.plot(g["lr"], g["success_rate"], marker="o", color=colors[name], lw=1.4, ms=5)
        log_x(ax)
        ax.set_ylim(-0.04, 1.04)
        ax.set_xlabel("learning rate")
        ax.set_ylabel("success rate (reached / finished)")
        seeds = int(data["n"].max())
        what = f"Success rate per optimizer and learning rate ({seeds} seeds)"
        ax.set_title(title(what, source, len(sources) > 1))
    legend(fig, {s: colors[s] for s in dict.fromkeys(cells["series"])}, outcomes=False)
    return fig
