"""The report: one self-contained folder a person can open or publish.

::

    <out>/index.html                 tables and figures on one page
    <out>/figures/<name>.png, .svg
    <out>/tables/<name>.csv          the tidy numbers (full precision)
    <out>/tables/<name>.md           the same, formatted for reading
"""

from __future__ import annotations

import html
import os
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from analysis import scaling as S
from analysis import tables as T
from analysis.load import Results

if TYPE_CHECKING:
    import pandas as pd
    from matplotlib.figure import Figure

FIGURES = {
    "valley": "Valley: time and steps to target against learning rate",
    "envelope": "Envelope: fastest and slowest optimizer at each learning rate",
    "best_curves": "Accuracy curves of each optimizer at its best learning rate",
    "success_map": "Success map: outcome of every optimizer and learning rate",
    "success_rate": "Repeats: success rate per cell across seeds",
    "compare": "Comparison across results directories",
    "scaling": "Width scaling: time, steps and seconds per step to target against model size",
}


@dataclass(frozen=True)
class Report:
    """What ``write_report`` wrote: the folder, the tidy tables, the figure names."""

    out: str
    tables: dict[str, pd.DataFrame]
    figures: list[str] = field(default_factory=list)


def build_tables(results: Results, min_success: float = T.MIN_SUCCESS) -> dict[str, pd.DataFrame]:
    """Every table of the report, tidy and unformatted, by name."""
    trials = T.label_series(results.trials)
    cells = T.cells(trials, min_success)
    built = {
        "summary": T.sweep_summary(trials, results.manifests),
        "optimizers": T.optimizer_table(trials, min_success),
        "union_band": T.union_band(cells),
        "envelope": T.envelope(cells),
        "cells": cells,
    }
    if len(results.sources) > 1:
        built["compare"] = T.compare_sources(built["optimizers"], built["summary"], trials)
    if S.has_scaling(results.trials):
        points = S.scaling_points(results.trials, min_success)
        built["scaling_points"] = points
        built["scaling_fits"] = S.scaling_fits(points)
    return built


def is_lr_sweep(cells: pd.DataFrame) -> bool:
    """True when some series ran at more than one LR: there is a valley to show."""
    return int(cells.groupby(T.SERIES)["lr"].nunique().max()) > 1


def _num(x: Any, spec: str = ".3g", none: str = "") -> str:
    import pandas as pd

    return none if x is None or pd.isna(x) else format(float(x), spec)


def _lr(x: Any) -> str:
    import pandas as pd

    return "none" if x is None or pd.isna(x) else T.fmt_lr(float(x))


def display_tables(built: dict[str, pd.DataFrame]) -> dict[str, pd.DataFrame]:
    """The report's tables formatted for reading (strings), by name."""
    import pandas as pd

    several = built["summary"]["source"].nunique() > 1
    o = built["optimizers"]
    optimizers = pd.DataFrame(
        {
            "source": o["source"],
            "optimizer": o["series"],
            "reached": [f"{r}/{n}" for r, n in zip(o["reached"], o["trials"], strict=True)],
            "band (LR)": [
                f"{_lr(lo)} .. {_lr(hi)}" if pd.notna(lo) else "none"
                for lo, hi in zip(o["lr_low"], o["lr_high"], strict=True)
            ],
            "decades": [_num(d, ".1f", "-") for d in o["decades"]],
            "holes": o["holes"],
            "best LR": [_lr(x) for x in o["best_lr"]],
            "time (s)": [_num(x, ".3g", "-") for x in o["best_time_s"]],
            "steps": [_num(x, ".0f", "-") for x in o["best_steps"]],
            "diverged": o["diverged"],
            "errors": o["error"],
            "wasted (s)": [_num(x, ".1f") for x in o["wasted_s"]],
        }
    )
    u = built["union_band"]
    union = pd.DataFrame(
        {
            "source": u["source"],
            "variant": u["variant"],
            "band (LR)": [
                f"{_lr(lo)} .. {_lr(hi)}" if pd.notna(lo) else "none"
                for lo, hi in zip(u["lr_low"], u["lr_high"], strict=True)
            ],
            "decades": [_num(d, ".1f", "-") for d in u["decades"]],
            "LRs succeeding": [
                f"{a}/{b}" for a, b in zip(u["n_success_lrs"], u["n_lrs"], strict=True)
            ],
            "holes": u["holes"],
            "lowest by": u["low_by"],
            "highest by": u["high_by"],
        }
    )
    s = built["summary"]
    summary = pd.DataFrame(
        {
            "source": s["source"],
            "sweep": s["sweep"],
            "device": s["devices"],
            "versions": [
                f"tensorflow {tf}, keras {k}, ray {r}, python {p}"
                for tf, k, r, p in zip(
                    s["tensorflow"], s["keras"], s["ray"], s["python"], strict=True
                )
            ],
            "trials": s["trials"],
            "reached / budget / diverged / error": [
                f"{a} / {b} / {c} / {d}"
                for a, b, c, d in zip(
                    s["reached"], s["budget"], s["diverged"], s["error"], strict=True
                )
            ],
            "trial time (s)": [_num(x, ".1f") for x in s["trial_time_s"]],
            "wall time (s)": [_num(x, ".1f") for x in s["wall_s"]],
            "runs": s["runs"],
        }
    )
    shown = {"summary": summary, "optimizers": optimizers, "union_band": union}
    if not several:
        for name in ("optimizers", "union_band", "summary"):
            shown[name] = shown[name].drop(columns="source")
    if (union["variant"] == "").all():
        shown["union_band"] = shown["union_band"].drop(columns="variant")
    if "compare" in built:
        c = built["compare"]
        shown["compare"] = pd.DataFrame(
            {
                "optimizer": c["series"],
                "source": c["source"],
                "device": c["devices"],
                "best LR": [_lr(x) for x in c["best_lr"]],
                "time (s)": [_num(x, ".3g", "-") for x in c["best_time_s"]],
                "steps": [_num(x, ".0f", "-") for x in c["best_steps"]],
                "time vs first": [_num(x, ".2f", "-") for x in c["time_ratio"]],
                "steps vs first": [_num(x, ".2f", "-") for x in c["steps_ratio"]],
                "differs from first": c["differs"],
            }
        )
        order = {name: i for i, name in enumerate(dict.fromkeys(c["series"]))}
        shown["compare"] = shown["compare"].sort_values(
            "optimizer", key=lambda col: col.map(order), kind="stable"
        )
    if "scaling_fits" in built:
        shown["scaling"] = _scaling_display(built["scaling_fits"], several)
    if not is_lr_sweep(built["cells"]):  # one LR per optimizer: no band to speak of
        del shown["optimizers"], shown["union_band"]
    return shown


def _scaling_display(fits: pd.DataFrame, several: bool) -> pd.DataFrame:
    import pandas as pd

    def pick(measure: str, size: str) -> pd.DataFrame:
        f = fits[(fits["measure"] == measure) & (fits["size"] == size)]
        return f.set_index(["source", "series"])

    time_w = pick("time_to_target_s", "width")
    time_p = pick("time_to_target_s", "n_params")
    steps_p = pick("steps_to_target", "n_params")
    step_p = pick("step_time_s", "n_params")
    rows = []
    for key, t in time_w.iterrows():
        rows.append(
            {
                "source": key[0],
                "optimizer @ lr": key[1],
                "widths reached": f"{int(t['n_points'])}/{int(t['n_sizes'])}",
                "time slope (s per 1x width)": _num(t["slope"], ".3g", "-"),
                "R² linear": _num(t["r2"], ".3f", "-"),
                "time exponent vs weights": _num(time_p.loc[key, "exponent"], ".2f", "-"),
                "R² log-log": _num(time_p.loc[key, "r2_log"], ".3f", "-"),
                "steps exponent": _num(steps_p.loc[key, "exponent"], ".2f", "-"),
                "step-time exponent": _num(step_p.loc[key, "exponent"], ".2f", "-"),
            }
        )
    out = pd.DataFrame(rows)
    return out if several or out.empty else out.drop(columns="source")


def build_figures(
    results: Results, built: dict[str, pd.DataFrame], min_success: float = T.MIN_SUCCESS
) -> dict[str, Figure]:
    """Every figure of the report, by name: the valley figures when some optimizer
    ran several LRs (``success_rate`` only with repeats), ``compare`` with several
    sources, ``scaling`` with several widths."""
    from analysis import plots

    cells = built["cells"]
    colors = plots.palette(list(cells["series"]))
    figures = {}
    if is_lr_sweep(cells):
        figures["valley"] = plots.valley_figure(cells, colors)
        figures["envelope"] = plots.envelope_figure(
            built["envelope"], plots.palette(list(cells["optimizer"]))
        )
        curves = T.best_curves(results.trials, results.curves, min_success)
        if len(curves):
            figures["best_curves"] = plots.best_curves_figure(curves, colors)
        figures["success_map"] = plots.success_map_figure(cells)
        if int(cells["n"].max()) > 1:
            figures["success_rate"] = plots.success_rate_figure(cells, colors)
    if "compare" in built:
        figures["compare"] = plots.compare_figure(built["compare"])
    if "scaling_points" in built:
        from analysis.scaling_plots import scaling_figure

        figures["scaling"] = scaling_figure(built["scaling_points"], built["scaling_fits"])
    return figures


def default_out(paths: list[str]) -> str:
    """``DIR/report`` for one local results directory; ``DIR/report-vs-<others>``
    for several; under ``results/`` for a URI."""
    from analysis.load import source_labels

    labels = source_labels(paths)
    first = paths[0]
    base = first if "://" not in first else os.path.join("results", labels[0].replace("/", "-"))
    if len(paths) == 1:
        return os.path.join(base, "report") if "://" not in first else f"{base}-report"
    others = "-".join(label.replace("/", "-") for label in labels[1:])
    return (
        os.path.join(base, f"report-vs-{others}") if "://" not in first else f"{base}-vs-{others}"
    )


def write_report(
    results: Results,
    out: str,
    min_success: float = T.MIN_SUCCESS,
    formats: tuple[str, ...] = ("png", "svg"),
) -> Report:
    """Write the report folder ``out`` (figures, tables, index.html)."""
    import matplotlib.pyplot as plt

    built = build_tables(results, min_success)
    shown = display_tables(built)
    os.makedirs(os.path.join(out, "figures"), exist_ok=True)
    os.makedirs(os.path.join(out, "tables"), exist_ok=True)
    for name in FIGURES:  # a figure this report does not draw must not linger
        for ext in ("png", "svg"):
            path = os.path.join(out, "figures", f"{name}.{ext}")
            if os.path.exists(path):
                os.remove(path)
    figures = build_figures(results, built, min_success)
    for name, fig in figures.items():
        for ext in formats:
            fig.savefig(os.path.join(out, "figures", f"{name}.{ext}"), dpi=130)
        plt.close(fig)
    for name, frame in built.items():
        frame.to_csv(os.path.join(out, "tables", f"{name}.csv"), index=False)
    for name, frame in shown.items():
        with open(os.path.join(out, "tables", f"{name}.md"), "w") as f:
            f.write(frame.to_markdown(index=False) + "\n")
    with open(os.path.join(out, "index.html"), "w") as f:
        f.write(_html(results, shown, list(figures), built, min_success))
    return Report(out=out, tables=built, figures=list(figures))


_CSS = """
body { font-family: system-ui, sans-serif; margin: 2em auto; max-width: 1200px;
       padding: 0 1em; color: #222; }
table { border-collapse: collapse; margin: 0.5em 0 1.5em; font-size: 0.9em; }
th, td { padding: 0.25em 0.7em; border-bottom: 1px solid #ddd; text-align: left; }
th { background: #f3f3f3; }
figure { margin: 1.5em 0; }
img { max-width: 100%; border: 1px solid #eee; }
figcaption { color: #555; font-size: 0.9em; }
code { background: #f3f3f3; padding: 0 0.2em; }
"""


def _html(
    results: Results,
    shown: dict[str, pd.DataFrame],
    figures: list[str],
    built: dict[str, pd.DataFrame],
    min_success: float,
) -> str:
    from harness import __version__

    def table(name: str) -> str:
        return shown[name].to_html(index=False, border=0, na_rep="", escape=True)

    def links(name: str) -> str:
        return (
            f'<p><a href="tables/{name}.csv">{name}.csv</a> · '
            f'<a href="tables/{name}.md">{name}.md</a></p>'
        )

    sources = ", ".join(
        f"<code>{html.escape(label)}</code> ({html.escape(path)})"
        for label, path in results.paths.items()
    )
    parts = [
        "<!doctype html><html><head><meta charset='utf-8'>",
        "<title>lrbench report</title>",
        f"<style>{_CSS}</style></head><body>",
        "<h1>lrbench report</h1>",
        f"<p>Results: {sources}.</p>",
        "<h2>Sweeps</h2>",
        table("summary"),
        links("summary"),
    ]
    if "optimizers" in shown:
        parts += [
            "<h2>Per optimizer</h2>",
            "<p>The band runs from the lowest to the highest learning rate that reached the "
            f"target (in at least {min_success:.0%} of a cell's finished trials); holes are "
            "failing learning rates inside it. The best LR has the fastest median time to "
            "target. Wasted time is the wall time of trials that missed the target.</p>",
            table("optimizers"),
            links("optimizers"),
            "<h2>Union band</h2>",
            "<p>Learning rates where at least one optimizer reaches the target.</p>",
            table("union_band"),
            links("union_band"),
        ]
    if "scaling" in shown:
        parts += [
            "<h2>Width scaling</h2>",
            "<p>Per optimizer and LR, over the widths that reached the target: the "
            "least-squares slope of time to target against the width multiplier with its "
            "R², and the exponents of log-log fits against the weight count (1 = linear "
            "growth). Time = steps x seconds per step, so the steps and step-time exponents "
            "split slower steps from more steps.</p>",
            table("scaling"),
            '<p><a href="tables/scaling_fits.csv">scaling_fits.csv</a> · '
            '<a href="tables/scaling_points.csv">scaling_points.csv</a> · '
            '<a href="tables/scaling.md">scaling.md</a></p>',
        ]
    if "compare" in shown:
        parts += [
            "<h2>Comparison</h2>",
            "<p>Each optimizer's best LR in every results directory; ratios are to the "
            "first directory. <em>Differs from first</em> names what is not like for like: "
            "times from another device differ by hardware, not by optimizer (compare steps "
            "across devices), and a different target, budget or model changes both.</p>",
            table("compare"),
            links("compare"),
        ]
    parts.append("<h2>Figures</h2>")
    for name in figures:
        parts.append(
            f'<figure><a href="figures/{name}.svg"><img src="figures/{name}.png" '
            f'alt="{html.escape(FIGURES[name])}"></a>'
            f"<figcaption>{html.escape(FIGURES[name])} "
            f'(<a href="figures/{name}.svg">SVG</a>)</figcaption></figure>'
        )
    parts.append(
        "<h2>All tables</h2><p>"
        + " · ".join(f'<a href="tables/{n}.csv">{n}.csv</a>' for n in built)
        + "</p>"
    )
    stamp = datetime.now(UTC).isoformat(timespec="seconds")
    parts.append(f"<p><small>lrbench {__version__}, {stamp}</small></p></body></html>")
    return "\n".join(parts) + "\n"
