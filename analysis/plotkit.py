"""The plotting kit every figure module shares: the theme, the figure grid,
log axes with plain tick text, series colours, outcome markers and the
figure legend. Thin helpers on matplotlib and seaborn, imported on first use
(``harness.lazy``)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from analysis.labels import fmt_lr
from harness.lazy import lazy
from harness.store.records import TrialStatus

if TYPE_CHECKING:
    import matplotlib.lines as mlines
    import matplotlib.pyplot as plt
    import matplotlib.ticker as mticker
    import seaborn as sns
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure
else:
    mlines = lazy("matplotlib.lines")
    plt = lazy("matplotlib.pyplot")
    mticker = lazy("matplotlib.ticker")
    sns = lazy("seaborn")

# Where a trial that missed the target is drawn: at the budget (time) or the step
# ceiling (steps), with a marker saying why.
PRUNED = "pruned"  # a marker kind, not a status: the cell's outcome is budget
MARKERS: dict[str, dict[str, Any]] = {
    TrialStatus.REACHED.value: dict(marker="o", label="reached target"),
    TrialStatus.BUDGET.value: dict(marker="s", fillstyle="none", label="budget ran out (top row)"),
    TrialStatus.DIVERGED.value: dict(marker="X", label="diverged (row above)"),
    # a budget cell whose misses the pruning rule stopped early: drawn at the budget
    PRUNED: dict(marker="s", fillstyle="bottom", label="budget, pruned early (top row)"),
}
PANEL_W, PANEL_H = 6.4, 4.2


def marker_style(outcome: str) -> dict[str, Any]:
    """The matplotlib marker keywords of an outcome (``MARKERS`` less its label)."""
    return {k: v for k, v in MARKERS[outcome].items() if k != "label"}


def theme() -> None:
    """Apply the seaborn theme every figure uses."""
    sns.set_theme(style="whitegrid", context="notebook", font_scale=0.95)


def palette(series: list[str]) -> dict[str, tuple[float, float, float]]:
    """A colour per series, stable across figures."""
    names = list(dict.fromkeys(series))
    colors = sns.color_palette("colorblind" if len(names) <= 10 else "husl", len(names))
    return dict(zip(names, colors, strict=True))


def title(text: str, source: str, several: bool) -> str:
    """A panel title, prefixed with its source when a figure shows several."""
    return f"{source}: {text[0].lower()}{text[1:]}" if several else text


def plain(value: float, _pos: int | None = None) -> str:
    """Tick text for a log axis of seconds or steps: 0.3, 1, 20, 500, 1e+04."""
    return f"{value:g}"


def log_x(ax: Axes) -> None:
    """A log learning-rate x axis, ticks written as ``fmt_lr`` does."""
    ax.set_xscale("log")
    ax.xaxis.set_major_locator(mticker.LogLocator(base=10, numticks=12))
    ax.xaxis.set_major_formatter(mticker.FuncFormatter(lambda v, _: fmt_lr(v)))
    ax.xaxis.set_minor_locator(mticker.LogLocator(base=10, subs="auto", numticks=12))
    ax.xaxis.set_minor_formatter(mticker.NullFormatter())


def log_y(ax: Axes) -> None:
    """A log y axis of seconds or steps, ticked at 1, 2 and 5 per decade."""
    ax.set_yscale("log")
    ax.yaxis.set_major_locator(mticker.LogLocator(base=10, subs=(1.0, 2.0, 5.0), numticks=10))
    ax.yaxis.set_major_formatter(mticker.FuncFormatter(plain))
    ax.yaxis.set_minor_locator(mticker.LogLocator(base=10, subs="auto", numticks=10))
    ax.yaxis.set_minor_formatter(mticker.NullFormatter())


def figure(nrows: int, ncols: int, w: float = PANEL_W, h: float = PANEL_H) -> tuple[Figure, Any]:
    """A themed figure of ``nrows`` x ``ncols`` panels (always a 2-D list), with room
    on the right for the legend."""
    theme()
    fig, axes = plt.subplots(
        nrows, ncols, figsize=(w * ncols + 2.6, h * nrows), squeeze=False, layout="constrained"
    )
    return fig, axes


def legend(fig: Figure, colors: dict, outcomes: bool = True) -> None:
    """The figure legend: a line per series and, with ``outcomes``, the markers."""
    handles = [mlines.Line2D([], [], color=c, lw=2, label=s) for s, c in colors.items()]
    if outcomes:
        handles.append(mlines.Line2D([], [], ls="none", label=""))
        handles += [
            mlines.Line2D([], [], ls="none", color="0.3", markersize=7, **style)
            for style in MARKERS.values()
        ]
    fig.legend(handles=handles, loc="outside right upper", frameon=False, fontsize="small")
