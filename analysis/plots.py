"""Thin drawing on top of ``analysis.tables``: each function takes a tidy frame
and returns a matplotlib Figure. Colours follow the series, the same in every
figure; markers follow the outcome."""

from __future__ import annotations

from typing import TYPE_CHECKING

from analysis.tables import fmt_lr

if TYPE_CHECKING:
    import pandas as pd
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure

# Where a trial that missed the target is drawn: at the budget (time) or the step
# ceiling (steps), with a marker saying why.
MARKERS = {
    "reached": dict(marker="o", label="reached target"),
    "budget": dict(marker="s", fillstyle="none", label="budget ran out (top row)"),
    "diverged": dict(marker="X", label="diverged (row above)"),
}
DIVERGED_ROW = 1.45  # the diverged row sits this factor above the budget line (log y)
NUDGE = 1.025  # per-series vertical offset of misses, a factor on the log axis
OUTCOME_COLORS = {"budget": "#d9d9d9", "diverged": "#e6550d", "error": "#252525"}
PANEL_W, PANEL_H = 6.4, 4.2


def _theme() -> None:
    import seaborn as sns

    sns.set_theme(style="whitegrid", context="notebook", font_scale=0.95)


def palette(series: list[str]) -> dict[str, tuple[float, float, float]]:
    """A colour per series, stable across figures."""
    import seaborn as sns

    names = list(dict.fromkeys(series))
    colors = sns.color_palette("colorblind" if len(names) <= 10 else "husl", len(names))
    return dict(zip(names, colors, strict=True))


def _title(text: str, source: str, several: bool) -> str:
    """A panel title, prefixed with its source when a figure shows several."""
    return f"{source}: {text[0].lower()}{text[1:]}" if several else text


def _plain(value: float, _pos: int | None = None) -> str:
    """Tick text for a log axis of seconds or steps: 0.3, 1, 20, 500, 1e+04."""
    return f"{value:g}"


def _log_x(ax: Axes) -> None:
    from matplotlib.ticker import FuncFormatter, LogLocator, NullFormatter

    ax.set_xscale("log")
    ax.xaxis.set_major_locator(LogLocator(base=10, numticks=12))
    ax.xaxis.set_major_formatter(FuncFormatter(lambda v, _: fmt_lr(v)))
    ax.xaxis.set_minor_locator(LogLocator(base=10, subs="auto", numticks=12))
    ax.xaxis.set_minor_formatter(NullFormatter())


def _log_y(ax: Axes) -> None:
    from matplotlib.ticker import FuncFormatter, LogLocator, NullFormatter

    ax.set_yscale("log")
    ax.yaxis.set_major_locator(LogLocator(base=10, subs=(1.0, 2.0, 5.0), numticks=10))
    ax.yaxis.set_major_formatter(FuncFormatter(_plain))
    ax.yaxis.set_minor_locator(LogLocator(base=10, subs="auto", numticks=10))
    ax.yaxis.set_minor_formatter(NullFormatter())


def _figure(nrows: int, ncols: int, w: float = PANEL_W, h: float = PANEL_H) -> tuple[Figure, list]:
    import matplotlib.pyplot as plt

    _theme()
    fig, axes = plt.subplots(
        nrows, ncols, figsize=(w * ncols + 2.6, h * nrows), squeeze=False, layout="constrained"
    )
    return fig, axes


def _legend(fig: Figure, colors: dict, outcomes: bool = True) -> None:
    from matplotlib.lines import Line2D

    handles = [Line2D([], [], color=c, lw=2, label=s) for s, c in colors.items()]
    if outcomes:
        handles.append(Line2D([], [], ls="none", label=""))
        handles += [
            Line2D([], [], ls="none", color="0.3", markersize=7, **style)
            for style in MARKERS.values()
        ]
    fig.legend(handles=handles, loc="outside right upper", frameon=False, fontsize="small")


def valley_figure(
    cells: pd.DataFrame, colors: dict | None = None, rows: str = "source", lines: str = "series"
) -> Figure:
    """The valley: time to target (left) and steps to target (right) against LR,
    one line per ``lines`` value (series), one row per ``rows`` value (source;
    ``facet`` from ``shifts.facet_cells`` for one row per schedule). Points are cell medians; a band
    shows the spread across seeds. Misses are drawn at the budget (or the step
    ceiling): ``budget`` there, ``diverged`` on a row just above it, each with its
    own marker, nudged apart per series so they don't hide each other."""
    import numpy as np

    sources = list(dict.fromkeys(cells[rows]))
    colors = colors or palette(list(cells[lines]))
    fig, axes = _figure(len(sources), 2)
    panels = [
        ("plot_time_s", "plot_time_lo_s", "plot_time_hi_s", "budget_s", "time to target (s)"),
        ("plot_steps", "plot_steps_lo", "plot_steps_hi", "steps_ceiling", "steps to target"),
    ]
    miss_rows = {"budget": 1.0, "diverged": DIVERGED_ROW}
    for row, source in enumerate(sources):
        data = cells[cells[rows] == source]
        repeats = bool((data["n"] > 1).any())
        series = list(dict.fromkeys(data[lines]))
        for col, (y, lo, hi, ceiling, label) in enumerate(panels):
            ax = axes[row][col]
            top = float(data[ceiling].max())
            for i, name in enumerate(series):
                g = data[(data[lines] == name) & (data["outcome"] != "error")].sort_values("lr")
                # misses: on their outcome's row, nudged per series (log scale)
                nudge = NUDGE ** (i - (len(series) - 1) / 2)
                yv = np.where(
                    g["outcome"] == "reached",
                    g[y],
                    top * g["outcome"].map(miss_rows).fillna(1.0) * nudge,
                )
                ax.plot(g["lr"], yv, color=colors[name], lw=1.4, alpha=0.85, zorder=2)
                if repeats:
                    ok = g["outcome"] == "reached"
                    ax.fill_between(
                        g["lr"][ok],
                        g[lo][ok],
                        np.minimum(g[hi][ok], top),
                        color=colors[name],
                        alpha=0.15,
                        lw=0,
                    )
                for outcome, style in MARKERS.items():
                    m = (g["outcome"] == outcome).to_numpy()
                    if m.any():
                        kw = {k: v for k, v in style.items() if k != "label"}
                        ax.plot(
                            g["lr"][m],
                            yv[m],
                            ls="none",
                            color=colors[name],
                            markersize=6,
                            zorder=3,
                            **kw,
                        )
            for outcome, factor in miss_rows.items():
                ax.axhline(top * factor, color="0.75", ls=":", lw=1, zorder=1)
                ax.annotate(
                    "budget ran out" if outcome == "budget" else "diverged",
                    xy=(1.0, top * factor),
                    xycoords=("axes fraction", "data"),
                    xytext=(4, 0),
                    textcoords="offset points",
                    va="center",
                    fontsize="x-small",
                    color="0.35",
                )
            _log_x(ax)
            _log_y(ax)
            ax.set_ylim(top=top * DIVERGED_ROW * 1.25)
            ax.set_xlabel("learning rate")
            ax.set_ylabel(label + (" (median of seeds)" if repeats else ""))
            what = "Time to target" if col == 0 else "Steps to target (hardware-independent)"
            ax.set_title(_title(what, source, len(sources) > 1))
    _legend(fig, {s: colors[s] for s in dict.fromkeys(cells[lines])})
    return fig


def envelope_figure(env: pd.DataFrame, colors: dict | None = None) -> Figure:
    """Per LR, the fastest and slowest optimizer's time to target (the shaded
    range between them), the fastest marked in its colour and, where there is
    room, by name."""
    groups = list(dict.fromkeys(zip(env["source"], env["variant"], strict=True)))
    colors = colors or palette(list(env["fastest"][env["fastest"] != ""]))
    fig, axes = _figure(len(groups), 1, w=8.0)
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
        _log_x(ax)
        _log_y(ax)
        ax.set_xlabel("learning rate")
        ax.set_ylabel("time to target (s)")
        where = " ".join(x for x in (source, variant) if x)
        ax.set_title(f"Envelope across optimizers{': ' + where if len(groups) > 1 else ''}")
    from matplotlib.lines import Line2D
    from matplotlib.patches import Patch

    handles = [
        Line2D([], [], color="0.15", lw=1.4, label="fastest optimizer"),
        Line2D([], [], color="0.45", ls="--", lw=1.2, label="slowest optimizer"),
        Patch(color="0.85", label="range across optimizers"),
        Line2D(
            [], [], ls="none", marker="x", color="0.5", markersize=7, label="no optimizer reached"
        ),
        Line2D([], [], ls="none", label=""),
    ] + [
        Line2D([], [], ls="none", marker="o", color=c, markersize=8, label=f"fastest: {n}")
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
    fig, axes = _figure(max(len(sources), 1), 2)
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
            ax.set_title(_title(what, source, len(sources) > 1))
    from matplotlib.lines import Line2D

    named = {
        f"{s} (lr {fmt_lr(lr)})": colors[s]
        for s, lr in dict.fromkeys(zip(curves["series"], curves["lr"], strict=True))
    }
    handles = [Line2D([], [], color=c, lw=2, label=s) for s, c in named.items()] + [
        Line2D([], [], ls="none", label=""),
        Line2D([], [], color="0.3", lw=1.3, label="training accuracy (target metric)"),
        Line2D([], [], color="0.3", ls="none", marker="o", label="validation accuracy"),
        Line2D([], [], color="0.4", ls=":", label="target"),
    ]
    fig.legend(handles=handles, loc="outside right upper", frameon=False, fontsize="small")
    return fig


def success_map_figure(cells: pd.DataFrame) -> Figure:
    """Series x LR: reached cells coloured by median time to target (log scale),
    misses in a colour per outcome; with several seeds each cell shows its
    success rate (reached / finished)."""
    import matplotlib.pyplot as plt
    import numpy as np
    from matplotlib.colors import ListedColormap, LogNorm
    from matplotlib.patches import Patch

    _theme()
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
    times = cells.loc[cells["outcome"] == "reached", "time_median_s"]
    norm = (
        LogNorm(vmin=max(times.min(), 1e-3), vmax=max(times.max(), 1e-3 * 1.01))
        if len(times)
        else LogNorm(1e-3, 1)
    )
    cmap = plt.get_cmap("viridis")
    kinds = list(OUTCOME_COLORS)
    miss = ListedColormap([OUTCOME_COLORS[k] for k in kinds])
    image = None
    for row, source in enumerate(sources):
        ax = axes[row][0]
        data = cells[cells["source"] == source]
        series = list(dict.fromkeys(data["series"]))
        time_grid = np.full((len(series), len(lrs)), np.nan)
        miss_grid = np.full((len(series), len(lrs)), np.nan)
        for _, c in data.iterrows():
            i, j = series.index(c["series"]), lrs.index(c["lr"])
            if c["outcome"] == "reached":
                time_grid[i, j] = c["time_median_s"]
            else:
                miss_grid[i, j] = kinds.index(c["outcome"])
            if c["n"] > 1 or len(lrs) <= 16:
                text = (
                    f"{int(c['n_reached'])}/{int(c['n'] - c['n_error'])}"
                    if c["n"] > 1
                    else (f"{c['time_median_s']:.2g}" if c["outcome"] == "reached" else "")
                )
                dark = c["outcome"] in ("error", "diverged") or (
                    c["outcome"] == "reached" and norm(c["time_median_s"]) < 0.5
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
        ax.set_title(_title(what, source, len(sources) > 1))
    if image is not None:
        from matplotlib.ticker import FuncFormatter, LogLocator, NullFormatter

        bar = fig.colorbar(
            image, ax=[a[0] for a in axes], label="median time to target (s)", pad=0.01
        )
        bar.ax.yaxis.set_major_locator(LogLocator(base=10, subs=(1.0, 2.0, 5.0)))
        bar.ax.yaxis.set_major_formatter(FuncFormatter(_plain))
        bar.ax.yaxis.set_minor_formatter(NullFormatter())
    fig.legend(
        handles=[Patch(color=OUTCOME_COLORS[k], label=k) for k in kinds],
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
    fig, axes = _figure(len(sources), 1, w=7.5)
    for row, source in enumerate(sources):
        ax = axes[row][0]
        data = cells[cells["source"] == source]
        for name, g in data.groupby("series", sort=False):
            g = g.sort_values("lr")
            ax.plot(g["lr"], g["success_rate"], marker="o", color=colors[name], lw=1.4, ms=5)
        _log_x(ax)
        ax.set_ylim(-0.04, 1.04)
        ax.set_xlabel("learning rate")
        ax.set_ylabel("success rate (reached / finished)")
        seeds = int(data["n"].max())
        what = f"Success rate per optimizer and learning rate ({seeds} seeds)"
        ax.set_title(_title(what, source, len(sources) > 1))
    _legend(fig, {s: colors[s] for s in dict.fromkeys(cells["series"])}, outcomes=False)
    return fig


def compare_figure(compare: pd.DataFrame) -> Figure:
    """Best time to target per series, one bar per source (labelled with its
    devices), for reports over several results directories."""
    import seaborn as sns

    fig, axes = _figure(1, 2, w=max(6.0, 0.9 * compare["series"].nunique() + 2))
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
