"""The report's ``index.html``: every table and figure of one report on one
page, with plain notes on what the report left out and why."""

from __future__ import annotations

import html
import shlex
from datetime import UTC, datetime
from typing import TYPE_CHECKING

import pandas as pd

from harness import __version__
from harness.store.location import redact
from harness.store.records import RunEntry

if TYPE_CHECKING:
    from analysis.load import Results
    from harness.store.records import Manifest

FIGURES = {
    "valley": "Valley: time and steps to target against learning rate",
    "valley_schedule": "Valley per LR schedule: time and steps to target against the base LR",
    "envelope": "Envelope: fastest and slowest optimizer at each learning rate",
    "best_curves": "Accuracy curves of each optimizer at its best learning rate",
    "success_map": "Success map: outcome of every optimizer and learning rate",
    "success_rate": "Repeats: success rate per cell across seeds",
    "compare": "Comparison across results directories",
    "scaling": "Width scaling: time, steps and seconds per step to target against model size",
    "finder": "LR range test: smoothed loss against LR, each rule's suggestion, the grid's band",
}


CSS = """
body { font-family: system-ui, sans-serif; margin: 2em auto; max-width: 1200px;
       padding: 0 1em; color: #222; }
table { border-collapse: collapse; margin: 0.5em 0 1.5em; font-size: 0.9em; }
th, td { padding: 0.25em 0.7em; border-bottom: 1px solid #ddd; text-align: left; }
th { background: #f3f3f3; }
figure { margin: 1.5em 0; }
img { max-width: 100%; border: 1px solid #eee; }
figcaption { color: #555; font-size: 0.9em; }
code { background: #f3f3f3; padding: 0 0.2em; }
.note { color: #555; font-style: italic; }
"""


_HEAD = [
    "<!doctype html><html><head><meta charset='utf-8'>",
    "<title>lrbench report</title>",
    f"<style>{CSS}</style></head><body>",
    "<h1>lrbench report</h1>",
]


def page(
    results: Results,
    shown: dict[str, pd.DataFrame],
    figures: list[str],
    built: dict[str, pd.DataFrame],
    min_success: float,
    notes: list[str] | None = None,
) -> str:
    """The report's ``index.html``: the sweeps, each table that ``shown`` holds,
    the ``figures`` (names of ``FIGURES``) and the ``notes``, as one page."""

    def table(name: str) -> str:
        return shown[name].to_html(index=False, border=0, na_rep="", escape=True)

    def links(name: str) -> str:
        return (
            f'<p><a href="tables/{name}.csv">{name}.csv</a> · '
            f'<a href="tables/{name}.md">{name}.md</a></p>'
        )

    sources = ", ".join(
        f"<code>{html.escape(label)}</code> ({html.escape(redact(path))})"
        for label, path in results.paths.items()
    )
    parts = [
        *_HEAD,
        f"<p>Results: {sources}.</p>",
        "<h2>Sweeps</h2>",
        table("summary"),
        links("summary"),
        *_compute_saved(built),
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
    if "shifts" in shown:
        parts += [
            "<h2>How the valley moves</h2>",
            "<p>Where an optimizer ran several setups (loss, output activation, LR "
            "schedule, ...), each against its reference: the setup closest to "
            "cross-entropy, a softmax output and a constant LR. Shifts are in decades "
            "of learning rate: <code>log10(best LR / reference best LR)</code>, and the "
            "change of the band's width. The initial loss (median at the first check) "
            "shows each setup's loss scale.</p>",
            table("shifts"),
            links("shifts"),
        ]
    if "finder" in shown:
        parts += [
            "<h2>LR range test</h2>",
            "<p>One short run per optimizer with the LR rising exponentially (Smith 2017). "
            "<em>steepest</em>: where the smoothed loss falls fastest against log LR; "
            "<em>min/10</em>: a tenth of the LR at the lowest smoothed loss; "
            "<em>longest-descent</em>: the middle of the longest run of falling points; "
            "<em>fastai-valley</em>: fastai's <code>valley</code>, about halfway along the "
            "longest decreasing subsequence. Each is set against the grid "
            "sweep of the same setup: its success band and best LR, and the distance "
            "<code>log10(suggested / best)</code> in decades.</p>",
            table("finder_rules"),
            table("finder"),
            links("finder"),
        ]
    if "finder_confirm" in shown:
        parts += [
            "<h2>Range-test suggestions, confirmed</h2>",
            "<p>This sweep's learning rates came from <code>lr = { finder = DIR }</code>: "
            "each optimizer ran its own ladder of log-spaced LRs centred on what the rule "
            "read off its range test. Per optimizer: the suggestion, the best LR the ladder "
            "confirmed, their distance <code>log10(suggested / best)</code> in decades, and "
            "how the suggested LR itself did (run when the ladder has an odd number of "
            "LRs). A best LR at the ladder's edge means the optimum may lie beyond it: "
            "widen <code>decades</code>.</p>",
            table("finder_confirm"),
            links("finder_confirm"),
        ]
    if "conditions" in shown:
        varying = sorted({d for d in built["conditions"]["differs"] if d})
        parts += [
            "<h2>Conditions</h2>",
            "<p class='note'><strong>Warning: one sweep mixes trials run under different "
            f"conditions ({html.escape('; '.join(varying))}).</strong> A resume keeps the "
            "trials already stored, whatever they ran under: a change of device, of "
            "<code>[resources]</code>, of <code>--data-dir</code> or of a library version "
            "between runs shows here. Each combination and its trial count:</p>",
            table("conditions"),
            links("conditions"),
        ]
    if "devices" in shown:
        mixed = len(built["mixed_cells"])
        parts += [
            "<h2>Devices</h2>",
            "<p><strong>These trials ran on more than one device.</strong> Time to target "
            "depends on the device and steps to target do not: compare steps across "
            f"devices. {mixed} cell{'' if mixed == 1 else 's'} (optimizer and LR) pooled "
            "trials from different devices, so their median times mix hardware "
            '(<a href="tables/mixed_cells.csv">mixed_cells.csv</a>). Per device: its Ray '
            "nodes, its median seconds per training step and the ratio to the fastest "
            "device.</p>",
            table("devices"),
            links("devices"),
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
    parts += [f"<p class='note'>{html.escape(note)}</p>" for note in notes or []]
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
    dirs = " ".join(shlex.quote(redact(path)) for path in results.paths.values())
    parts.append(
        "<p>Browse every trial interactively (its hparams, results and curve in "
        f"TensorBoard): <code>lrbench export {html.escape(dirs)} --tensorboard LOGDIR</code>, "
        "then <code>tensorboard --logdir LOGDIR</code>.</p>"
    )
    parts.append(_footer())
    return "\n".join(parts) + "\n"


def waiting_page(path: str, manifest: Manifest | None) -> str:
    """The ``index.html`` of a results directory whose sweep has stored no trial
    yet: what the manifest says of the sweep, and a note to come back."""
    run = manifest.runs[-1] if manifest is not None and manifest.runs else RunEntry("")
    name = (manifest.name if manifest is not None else "") or "(unnamed)"
    planned = run.info.get("trials")
    state = (
        f"its last run ended at {run.finished_at}"
        if run.finished_at
        else "its run is still going, or stopped before its first trial finished"
    )
    started = f" started at {run.started_at}" if run.started_at else ""
    shown = html.escape(path)
    parts = [
        *_HEAD,
        f"<p>Results: <code>{shown}</code>.</p>",
        f"<p class='note'>No trials stored yet. Sweep <code>{html.escape(name)}</code>"
        + (f" ({planned} trials planned)" if planned is not None else "")
        + f"{html.escape(started)}: {html.escape(state)}. There is nothing to tabulate "
        f"or plot until a trial is stored: run <code>lrbench report {shown}</code> "
        "again then.</p>",
        _footer(),
    ]
    return "\n".join(parts) + "\n"


def _footer() -> str:
    """The page's last line: lrbench's version and when the page was written."""
    stamp = datetime.now(UTC).isoformat(timespec="seconds")
    return f"<p><small>lrbench {__version__}, {stamp}</small></p></body></html>"


def _compute_saved(built: dict[str, pd.DataFrame]) -> list[str]:
    """The "compute saved" line of a pruned sweep, one per source."""
    if "compute_saved" not in built:
        return []
    saved = built["compute_saved"]

    guard = built["guard"].set_index("source")
    lines = []
    for row in saved[(saved["pruned"] > 0) | (saved["rechecked"] > 0)].itertuples(index=False):
        where = f" in {html.escape(row.source)}" if len(saved) > 1 else ""
        share = "" if pd.isna(row.saved_share) else f" ({row.saved_share:.0%} of it)"
        link = '<a href="tables/compute_saved.csv">compute_saved.csv</a>'
        lines.append(
            f"<p class='note'>Compute saved{where}: the pruning rule stopped {row.pruned} of "
            f"{row.trials} trials once even an optimistic projection of their curves could "
            "not reach the target; they keep the verdict <code>budget</code>. Unpruned, the "
            f"budget trials would have trained about {row.budget_trials_estimate_s:.0f} s; "
            f"pruning saved about {row.saved_s:.0f} s{share} ({link}).</p>"
        )
        lines.append(_guard_line(guard.loc[row.source]))
    return lines


def _guard_line(g: pd.Series) -> str:
    """What the frontier guard did for one source, and what it rests on."""
    text = (
        f"<p class='note'>Frontier guard: {int(g.rechecked)} pruned trials next to a reached "
        f"cell ran again in full ({int(g.rechecked_reached)} of them reached the target; their "
        f"pruned first runs cost {g.recheck_first_runs_s:.0f} s)."
    )
    if g.unguarded_series:
        text += (
            f" {int(g.unguarded_pruned)} pruned trials in {int(g.unguarded_series)} series with "
            "no reached cell rest on the pruning rule alone."
        )
    text += (
        " The guard assumes that each series' reached LRs form one band; "
        f"{int(g.holes)} holes (a failing LR between two reached ones) seen.</p>"
    )
    return text
