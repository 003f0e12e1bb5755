"""``lrbench report``, ``replay`` and ``export``: read stored results."""

from __future__ import annotations

import os
import shlex
from typing import TYPE_CHECKING, Annotated

import typer

from harness.lazy import lazy
from harness.rules.pruning import PRUNE_RULES
from harness.trial.quiet import quiet_tensorflow
from lrbench.cli.common import check_directory, fail, failed, print_tables, say

if TYPE_CHECKING:
    from analysis import display, load
    from analysis import replay as replaying
    from analysis.report import writer
    from lrbench import tensorboard_export
else:
    # imported with the CLI: pandas, pyarrow and matplotlib wait for a command that reads results
    display = lazy("analysis.display")
    load = lazy("analysis.load")
    replaying = lazy("analysis.replay")
    writer = lazy("analysis.report.writer")
    tensorboard_export = lazy("lrbench.tensorboard_export")


def report(
    results: Annotated[
        list[str],
        typer.Argument(help="Results directories (or URIs) of lrbench sweeps.", show_default=False),
    ],
    out: Annotated[
        str | None,
        typer.Option(
            help="Report folder (default: DIR/report; DIR/report-vs-<others> for several DIRs)."
        ),
    ] = None,
    min_success: Annotated[
        float,
        typer.Option(
            help="Share of a cell's finished trials (seeds) that must reach the target "
            "for the cell to count as a success.",
        ),
    ] = 0.5,
) -> None:
    """Tables and figures from results directories: writes index.html, PNG/SVG
    figures and CSV/Markdown tables, and prints the per-optimizer table."""
    if not 0 < min_success <= 1:
        raise fail(f"--min-success: {min_success} is outside (0, 1]")
    check_directory("--out", out)

    try:
        loaded = load.load_results(results)
        written = writer.write_report(loaded, out or writer.default_out(results), min_success)
    except load.NoTrialsYet as waiting:
        if len(results) > 1:  # a comparison needs trials on every side
            raise failed(waiting) from None
        written = writer.write_waiting_report(waiting, out or writer.default_out(results))
        say(
            f"{waiting.path}: no trials stored yet; report: "
            f"{os.path.join(written.out, 'index.html')}"
        )
        return
    print_tables(display.display_tables(written.tables))
    say(f"report: {os.path.join(written.out, 'index.html')}")


def replay(
    results: Annotated[
        str, typer.Argument(help="Results directory of a sweep run unpruned.", show_default=False)
    ],
    prune: Annotated[
        list[str] | None,
        typer.Option(help="A pruning rule to replay (repeatable; default: every rule)."),
    ] = None,
) -> None:
    """Replay pruning rules over the stored full curves of an unpruned sweep,
    each alone and then with the frontier guard: how many trials keep their
    verdict (every change listed), the re-runs, the training seconds saved, and
    the margin each pruning relied on. The live sweep and the replay call the
    same functions."""
    rules = prune or list(PRUNE_RULES)
    for rule in rules:
        if rule not in PRUNE_RULES:
            raise fail(f"--prune: unknown rule {rule!r}; rules: {', '.join(PRUNE_RULES)}")
    loaded = load.load_results(results)
    pruned = loaded.trials["pruned"].fillna(False).astype(bool)
    if pruned.any():
        raise fail(
            f"{results}: {int(pruned.sum())} trials were pruned, so their full curves are "
            "not stored; replay a sweep run with [stop] prune = false"
        )
    stops = replaying.stop_rules(loaded.manifests)
    for rule in rules:
        for guard in (False, True):
            replayed = replaying.replay(loaded.trials, loaded.curves, stops, rule, guard=guard)
            for line in replaying.replay_lines(replaying.replay_summary(replayed, rule, guard)):
                say(line)


def export(
    results: Annotated[
        list[str],
        typer.Argument(help="Results directories (or URIs) of lrbench sweeps.", show_default=False),
    ],
    tensorboard: Annotated[
        str,
        typer.Option(
            help="TensorBoard logdir (local): one run per trial, with its hparams, results and "
            "curve; runs an earlier export wrote there are replaced.",
            show_default=False,
        ),
    ],
) -> None:
    """Export results for browsing in other tools (now: TensorBoard's HParams and
    Scalars dashboards)."""
    check_directory("--tensorboard", tensorboard)
    quiet_tensorflow()

    written = tensorboard_export.export_tensorboard(load.load_results(results), tensorboard)
    say(
        f"tensorboard: {written.runs} runs written to {written.logdir}; "
        f"browse with: tensorboard --logdir {shlex.quote(written.logdir)}"
    )
