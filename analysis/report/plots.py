"""Thin drawing on top of ``analysis.cells``: each function takes a tidy frame
and returns a matplotlib Figure. Colours follow the series, the same in every
figure; markers follow the outcome."""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from analysis.labels import fmt_lr
from analysis.plotkit import (
    MARKERS,
    PRUNED,
    figure,
    legend,
    log_x,
    log_y,
    marker_style,
    palette,
    title,
)
from harness.lazy import lazy
from harness.store.records import TrialStatus

if TYPE_CHECKING:
    import matplotlib.lines as mlines
    import matplotlib.patches as mpatches
    import pandas as pd
    import seaborn as sns
    from matplotlib.figure import Figure
else:
    mlines = lazy("matplotlib.lines")
    mpatches = lazy("matplotlib.patches")
    sns = lazy("seaborn")

DIVERGED_ROW = 1.45  # the diverged row sits this factor above the budget line (log y)
NUDGE = 1.025  # per-series vertical offset of misses, a factor on the log axis


def valley_figure(
    cells: pd.DataFrame, colors: dict | None = None, rows: str = "source", lines: str = "series"
) -> Figure:
    """The valley: time to target (left) and steps to target (right) against LR,
    one line per ``lines`` value (series), one row per ``rows`` value (source;
    ``facet`` from ``shifts.facet_cells`` for one row per schedule). Points are cell medians; a band
    shows the spread across seeds. Misses are drawn at the budget (or the step
    ceiling): ``budget`` there, ``diverged`` on a row just above it, each with its
    own marker, nudged apart per series so they don't hide each other."""
    sources = list(dict.fromkeys(cells[rows]))
    colors = colors or palette(list(cells[lines]))
    fig, axes = figure(len(sources), 2)
    panels = [
        ("plot_time_s", "plot_time_lo_s", "plot_time_hi_s", "budget_s", "time to target (s)"),
        ("plot_steps", "plot_steps_lo", "plot_steps_hi", "steps_ceiling", "steps to target"),
    ]
    miss_rows = {TrialStatus.BUDGET.value: 1.0, TrialStatus.DIVERGED.value: DIVERGED_ROW}
    for row, source in enumerate(sources):
        data = cells[cells[rows] == source]
        repeats = bool((data["n"] > 1).any())
        series = list(dict.fromkeys(data[lines]))
        for col, (y, lo, hi, ceiling, label) in enumerate(panels):
            ax = axes[row][col]
            top = float(data[ceiling].max())
            for i, name in enumerate(series):
                drawn = (data[lines] == name) & (data["outcome"] != TrialStatus.ERROR.value)
                g = data[drawn].sort_values("lr")
                if g.empty:  # only error cells: nothing to draw
                    continue
                # misses: on their outcome's row, nudged per series (log scale)
                nudge = NUDGE ** (i - (len(series) - 1) / 2)
                yv = np.where(
                    g["outcome"] == TrialStatus.REACHED.value,
                    g[y],
                    top * g["outcome"].map(miss_rows).fillna(1.0) * nudge,
                )
                ax.plot(g["lr"], yv, color=colors[name], lw=1.4, alpha=0.85, zorder=2)
                ok = g["outcome"] == TrialStatus.REACHED.value
                if repeats and ok.any():
                    ax.fill_between(
                        g["lr"][ok],
                        g[lo][ok],
                        np.minimum(g[hi][ok], top),
                        color=colors[name],
                        alpha=0.15,
                        lw=0,
                    )
                kind = g["outcome"].mask(
                    (g["outcome"] == TrialStatus.BUDGET.value) & (g["n_pruned"] > 0), PRUNED
                )
                for outcome in MARKERS:
                    m = (kind == outcome).to_numpy()
                    if m.any():
                        ax.plot(
                            g["lr"][m],
                            yv[m],
                            ls="none",
                            color=colors[name],
                            markersize=6,
                            zorder=3,
                            **marker_style(outcome),
                        )
            for outcome, factor in miss_rows.items():
                ax.axhline(top * factor, color="0.75", ls=":", lw=1, zorder=1)
                ax.annotate(
                    "budget ran out" if outcome == TrialStatus.BUDGET.value else "diverged",
                    xy=(1.0, top * factor),
                    xycoords=("axes fraction", "data"),
                    xytext=(4, 0),
                    textcoords="offset points",
                    va="center",
                    fontsize="x-small",
                    color="0.35",
                )
            log_x(ax)
            log_y(ax)
            ax.set_ylim(top=top * DIVERGED_ROW * 1.25)
            ax.set_xlabel("learning rate")
            ax.set_ylabel(label + (" (median of seeds)" if repeats else ""))
            what = "Time to target" if col == 0 else "Steps to target (hardware-independent)"
            ax.set_title(title(what, source, len(sources) > 1))
    legend(fig, {s: colors[s] for s in dict.fromkeys(cells[lines])})
    return fig


def envelope_figure(env: pd.DataFrame, colors: dict | None = None) -> Figure:
    """Per LR, the fastest and slowest optimizer's time to target (the shaded
    range between them), the fastest marked in its colour and, where there is
    room, by name."""
    groups = list(dict.fromkeys(zip(env["source"], env["variant"], strict=True)))
    colors = colors or palette(list(env["fastest"][env["fastest"] != ""]))
    fig, axes = figure(len(groups), 1, w=8.0)
    for row, (source, variant) in enumerate(groups):
        ax = axes[row][0]
        g = env[(env["source"] == source) & (env["variant"] == variant)].sort_values("lr")
        ok = g[g["n_reached"] > 0]
        ax.fill_between(
            ok["lr"], ok["fastest_time_s"], ok["slowest_time_s"], color="0.85", label="_range"
        )
        ax.plot(ok["lr"], ok["slowest_time_s"], color="0.45", ls="--", lw=1.2)
        ax.plot(ok["lr"], ok["fastest_time_s"], color="0.15", lw=1.4)
        for name, pts in ok.groupby("fastest", sort=False):
            ax.plot(
                pts["lr"],
                pts["fastest_time_s"],
                ls="none",
                marker="o",
                markersize=8,
                color=colors.get(name, "0.2"),
                zorder=3,
            )
        if len(ok) <= 16:
            for _, p in ok.iterrows():
                ax.annotate(
                    p["fastest"],
                    (p["lr"], p["fastest_time_s"]),
                    xytext=(0, -15),
                    textcoords="offset points",
                    ha="center",
                    fontsize="x-small",
                    color="0.2",
                    bbox=dict(boxstyle="round,pad=0.15", fc="white", ec="none", alpha=0.8),
                )
        none = g[g["n_reached"] == 0]
        if len(none):  # along the bottom edge, whatever the y range
            ax.plot(
                none["lr"],
                [0.03] * len(none),
                ls="none",
                marker="x",
                markersize=7,
                color="0.5",
                transform=ax.get_xaxis_transform(),
                clip_on=False,
            )
        log_x(ax)
        if len(ok):
            log_y(ax)
        else:  # no time to target to plot (and a log axis of nothing fails to draw)
            ax.set_yticks([])
            ax.text(
                0.5,
                0.5,
                "no optimizer reached the target",
                transform=ax.transAxes,
                ha="center",
                va="center",
                color="0.4",
            )
        ax.set_xlabel("learning rate")
        ax.set_ylabel("time to target (s)")
        where = " ".join(x for x in (source, variant) if x)
        ax.set_title(f"Envelope across optimizers{': ' + where if len(groups) > 1 else ''}")

    handles = [
        mlines.Line2D([], [], color="0.15", lw=1.4, label="fastest optimizer"),
        mlines.Line2D([], [], color="0.45", ls="--", lw=1.2, label="slowest optimizer"),
        mpatches.Patch(color="0.85", label="range across optimizers"),
        mlines.Line2D(
            [], [], ls="none", marker="x", color="0.5", markersize=7, label="no optimizer reached"
        ),
        mlines.Line2D([], [], ls="none", label=""),
    ] + [
        mlines.Line2D([], [], ls="none", marker="o", color=c, markersize=8, label=f"fastest: {n}")
        for n, c in colors.items()
        if n in set(env["fastest"])
    ]
    fig.legend(handles=handles, loc="outside right upper", frameon=False, fontsize="small")
    return fig


def best_curves_figure(curves: pd.DataFrame, colors: dict | None = None) -> Figure:
    """Accuracy against training time (left) and steps (right) for each series
    at its best LR: training accuracy (the target metric) as lines, validation
    accuracy as points, the target as a dotted line."""
    sources = list(dict.fromkeys(curves["source"]))
    colors = colors or palette(list(curves["series"]))
    fig, axes = figure(max(len(sources), 1), 2)
    for row, source in enumerate(sources):
        data = curves[curves["source"] == source]
        for col, (x, xlabel) in enumerate(
            (("elapsed_s", "training time (s)"), ("step", "steps (log)"))
        ):
            ax = axes[row][col]
            for (name, _), g in data.groupby(["series", "trial_id"], sort=False):
                ax.plot(g[x], g["train_acc"], color=colors[name], lw=1.3, alpha=0.9)
                v = g.dropna(subset=["val_acc"])
                ax.plot(v[x], v["val_acc"], ls="none", marker="o", color=colors[name], ms=5)
            for target in data["target_acc"].unique():
                ax.axhline(target, color="0.4", ls=":", lw=1)
            if col == 1:
                ax.set_xscale("log")
            ax.set_ylim(0, 1.02)
            ax.set_xlabel(xlabel)
            ax.set_ylabel("accuracy")
            what = f"Each optimizer at its best LR, by {xlabel.split(' (')[0]}"
            ax.set_title(title(what, source, len(sources) > 1))

    named = {
        f"{s} (lr {fmt_lr(lr)})": colors[s]
        for s, lr in dict.fromkeys(zip(curves["series"], curves["lr"], strict=True))
    }
    handles = [mlines.Line2D([], [], color=c, lw=2, label=s) for s, c in named.items()] + [
        mlines.Line2D([], [], ls="none", label=""),
        mlines.Line2D([], [], color="0.3", lw=1.3, label="training accuracy (target metric)"),
        mlines.Line2D([], [], color="0.3", ls="none", marker="o", label="validation accuracy"),
        mlines.Line2D([], [], color="0.4", ls=":", label="target"),
    ]
    fig.legend(handles=handles, loc="outside right upper", frameon=False, fontsize="small")
    return fig


def compare_figure(compare: pd.DataFrame) -> Figure:
    """Best time to target per series, one bar per source (labelled with its
    devices), for reports over several results directories."""
    fig, axes = figure(1, 2, w=max(6.0, 0.9 * compare["series"].nunique() + 2))
    data = compare.assign(run=compare["source"] + "\n" + compare["devices"].fillna(""))
    for ax, (y, label) in zip(
        axes[0],
        (("best_time_s", "time to target (s)"), ("best_steps", "steps to target")),
        strict=True,
    ):
        sns.barplot(data=data, x="series", y=y, hue="run", ax=ax, legend=ax is axes[0][1])
        ax.set_xlabel("")
        ax.set_ylabel(label)
        ax.tick_params(axis="x", rotation=30)
        ax.set_title(f"{label.split(' (')[0].capitalize()} at each optimizer's best LR")
    leg = axes[0][1].get_legend()
    if leg is not None:
        handles, texts = axes[0][1].get_legend_handles_labels()
        leg.remove()
        fig.legend(handles, texts, loc="outside right upper", frameon=False, fontsize="small")
    return fig
