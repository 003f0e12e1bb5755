"""The report: one self-contained folder a person can open or publish.

::

    <out>/index.html                 tables and figures on one page
    <out>/figures/<name>.png, .svg
    <out>/tables/<name>.csv          the tidy numbers (full precision)
    <out>/tables/<name>.md           the same, formatted for reading
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from analysis import cells as C
from analysis import tables as T
from analysis.cells import MIN_SUCCESS, is_lr_sweep
from analysis.display import display_tables
from analysis.finder import finder_lrs
from analysis.finder import suggest as F
from analysis.finder.finder_plots import finder_figure
from analysis.labels import label_series
from analysis.load import NoTrialsYet, Results, source_labels
from analysis.plotkit import palette
from analysis.report import devices as D
from analysis.report import plots, shifts, success_plots
from analysis.report import scaling as S
from analysis.report.page import FIGURES, page, waiting_page
from analysis.report.scaling_plots import scaling_figure
from harness.lazy import lazy
from harness.store.records import TrialStatus

if TYPE_CHECKING:
    import matplotlib.pyplot as plt
    import pandas as pd
    from matplotlib.figure import Figure
else:
    plt = lazy("matplotlib.pyplot")


@dataclass(frozen=True)
class Report:
    """What ``write_report`` wrote: the folder, the tidy tables, the figure names
    and the notes on what it left out."""

    out: str
    tables: dict[str, pd.DataFrame]
    figures: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)


def build_tables(results: Results, min_success: float = MIN_SUCCESS) -> dict[str, pd.DataFrame]:
    """Every table of the report, tidy and unformatted, by name."""
    trials = label_series(results.trials)
    cells = C.cells(trials, min_success)
    built = {
        "summary": T.sweep_summary(trials, results.manifests),
        "optimizers": T.optimizer_table(trials, min_success),
        "union_band": T.union_band(cells),
        "envelope": C.envelope(cells),
        "cells": cells,
    }
    saved = T.compute_saved(trials)
    if int(saved["pruned"].sum()) or int(saved["rechecked"].sum()):
        built["compute_saved"] = saved
        built["guard"] = C.guard_view(trials)
    if len(results.sources) > 1:
        built["compare"] = T.compare_sources(built["optimizers"], built["summary"], trials)
    conditions = T.run_conditions(trials)
    if (conditions["differs"] != "").any():
        built["conditions"] = conditions
    if D.is_heterogeneous(trials):
        built["devices"] = D.device_table(trials)
        built["mixed_cells"] = D.mixed_cells(trials)
    moved = shifts.valley_shifts(trials, built["optimizers"], results.curves)
    if len(moved) and is_lr_sweep(cells):
        built["shifts"] = moved
    if S.has_scaling(results.trials):
        points = S.scaling_points(results.trials, min_success)
        built["scaling_points"] = points
        built["scaling_fits"] = S.scaling_fits(points)
    if results.finder is not None and len(results.finder):
        compared = F.against_grid(F.suggestions(results.finder), trials, min_success)
        built["finder"] = compared
        built["finder_rules"] = F.rule_scores(compared)
    confirmed = finder_lrs.confirm_table(trials, results.manifests, min_success)
    if len(confirmed):
        built["finder_confirm"] = confirmed
    return built


def _counts(status: pd.Series) -> str:
    """Trials by status as text: ``3 ran out of budget, 2 diverged``."""
    words = {
        TrialStatus.BUDGET.value: "ran out of budget",
        TrialStatus.DIVERGED.value: "diverged",
        TrialStatus.ERROR.value: "ended in error",
    }
    counts = status.value_counts()
    return ", ".join(f"{counts[s]} {w}" for s, w in words.items() if counts.get(s, 0))


def figure_plan(
    results: Results, built: dict[str, pd.DataFrame], min_success: float = MIN_SUCCESS
) -> tuple[list[str], list[str]]:
    """Which of ``FIGURES`` the report can draw from ``built`` (the tables of
    ``build_tables``), and plain sentences on what it leaves out and why: no
    valley without several LRs, no times to target to plot when nothing reached
    the target. Pure: tables in, names and notes out."""
    cells = built["cells"]
    status = results.trials["status"]
    lr_sweep = is_lr_sweep(cells)
    finished = bool((cells["outcome"] != TrialStatus.ERROR.value).any())
    succeeded = bool((cells["outcome"] == TrialStatus.REACHED.value).any())
    names: list[str] = []
    left_out: list[str] = []  # what the missing times to target leave out
    if lr_sweep:
        if finished:
            names.append("valley")
            if results.trials.groupby("source")["schedule"].nunique().max() > 1:
                names.append("valley_schedule")
        if succeeded:
            names += ["envelope", "best_curves"]
        else:
            left_out += ["the envelope", "the best-LR curves"]
        names.append("success_map")
        if int(cells["n"].max()) > 1:
            names.append("success_rate")
    if "compare" in built:
        names.append("compare")
    if "scaling_points" in built:
        names.append("scaling")
    if "finder" in built:
        names.append("finder")
    notes = []
    if not lr_sweep:
        notes.append(
            "Each optimizer ran at a single learning rate, so there is no valley to draw: "
            "the valley, envelope, best-LR curves and success map are left out."
        )
    if not (status == TrialStatus.REACHED.value).any():
        notes.append(
            f"No trial reached the target ({_counts(status)}), so there are no times to "
            "target to plot" + (f": {' and '.join(left_out)} are left out." if left_out else ".")
        )
    elif not succeeded:
        notes.append(
            "No optimizer reached the target at any learning rate in at least "
            f"{min_success:.0%} of its finished trials, "
            "so there is no best LR"
            + (f": {' and '.join(left_out)} are left out." if left_out else ".")
        )
    return names, notes


def build_figures(
    results: Results, built: dict[str, pd.DataFrame], min_success: float = MIN_SUCCESS
) -> dict[str, Figure]:
    """Every figure of the report that ``figure_plan`` says can be drawn, by name:
    the valley figures when some optimizer ran several LRs (``success_rate`` only
    with repeats), ``compare`` with several sources, ``scaling`` with several widths."""
    cells = built["cells"]
    colors = palette(list(cells["series"]))
    names, _ = figure_plan(results, built, min_success)
    figures = {}
    if "valley" in names:
        figures["valley"] = plots.valley_figure(cells, colors)
    if "valley_schedule" in names:
        faceted = shifts.facet_cells(results.trials, "schedule", min_success)
        figures["valley_schedule"] = plots.valley_figure(
            faceted, palette(list(faceted["line"])), rows="facet", lines="line"
        )
    if "envelope" in names:
        figures["envelope"] = plots.envelope_figure(
            built["envelope"], palette(list(cells["optimizer"]))
        )
    if "best_curves" in names:
        curves = C.best_curves(results.trials, results.curves, min_success)
        if len(curves):
            figures["best_curves"] = plots.best_curves_figure(curves, colors)
    if "success_map" in names:
        figures["success_map"] = success_plots.success_map_figure(cells)
    if "success_rate" in names:
        figures["success_rate"] = success_plots.success_rate_figure(cells, colors)
    if "compare" in names:
        figures["compare"] = plots.compare_figure(built["compare"])
    if "scaling" in names:
        figures["scaling"] = scaling_figure(built["scaling_points"], built["scaling_fits"])
    if "finder" in names and results.finder is not None:
        figures["finder"] = finder_figure(results.finder, built["finder"])
    return figures


def default_out(paths: list[str]) -> str:
    """``DIR/report`` for one local results directory; ``DIR/report-vs-<others>``
    for several; under ``results/`` for a URI."""
    labels = source_labels(paths)
    first = paths[0]
    base = first if "://" not in first else os.path.join("results", labels[0].replace("/", "-"))
    if len(paths) == 1:
        return os.path.join(base, "report") if "://" not in first else f"{base}-report"
    others = "-".join(label.replace("/", "-") for label in labels[1:])
    return (
        os.path.join(base, f"report-vs-{others}") if "://" not in first else f"{base}-vs-{others}"
    )


def write_waiting_report(waiting: NoTrialsYet, out: str) -> Report:
    """The report folder of a sweep that has stored no trial yet: an
    ``index.html`` that says so, what the manifest knows, and no tables."""
    os.makedirs(out, exist_ok=True)
    note = f"{waiting.path}: no trials stored yet"
    with open(os.path.join(out, "index.html"), "w") as f:
        f.write(waiting_page(waiting.path, waiting.manifest))
    return Report(out=out, tables={}, notes=[note])


def write_report(
    results: Results,
    out: str,
    min_success: float = MIN_SUCCESS,
    formats: tuple[str, ...] = ("png", "svg"),
) -> Report:
    """Write the report folder ``out`` (figures, tables, index.html)."""
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
    _, notes = figure_plan(results, built, min_success)
    with open(os.path.join(out, "index.html"), "w") as f:
        f.write(page(results, shown, list(figures), built, min_success, notes))
    return Report(out=out, tables=built, figures=list(figures), notes=notes)
