"""``lrbench report``, ``replay`` and ``export``: read stored results."""

from __future__ import annotations

import os
from typing import Annotated

import typer

from harness.trial.quiet import quiet_tensorflow
from lrbench.cli.common import check_directory, fail, failed, print_tables, say


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
    from analysis.display import display_tables
    from analysis.load import NoTrialsYet, load_results
    from analysis.report.writer import default_out, write_report, write_waiting_report

    try:
        loaded = load_results(results)
        written = write_report(loaded, out or default_out(results), min_success)
    except NoTrialsYet as waiting:
        if len(results) > 1:  # a comparison needs trials on every side
            raise failed(waiting) from None
        written = write_waiting_report(waiting, out or default_out(results))
        say(
            f"{waiting.path}: no trials stored yet; report: "
            f"{os.path.join(written.out, 'index.html')}"
        )
        return
    print_tables(display_tables(written.tables))
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
    from analysis.load import load_results
    from analysis.replay import replay as replay_rule
    from analysis.replay import replay_lines, replay_summary, stop_rules
    from harness.rules.pruning import PRUNE_RULES

    rules = prune or list(PRUNE_RULES)
    for rule in rules:
        if rule not in PRUNE_RULES:
            raise fail(f"--prune: unknown rule {rule!r}; rules: {', '.join(PRUNE_RULES)}")
    loaded = load_results(results)
    pruned = loaded.trials["pruned"].fillna(False).astype(bool)
    if pruned.any():
        raise fail(
            f"{results}: {int(pruned.sum())} trials were pruned, so their full curves are "
            "not stored; replay a sweep run with [stop] prune = false"
        )
    stops = stop_rules(loaded.manifests)
    for rule in rules:
        for guard in (False, True):
            replayed = replay_rule(loaded.trials, loaded.curves, stops, rule, guard=guard)
            for line in replay_lines(replay_summary(replayed, rule, guard)):
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
    import shlex

    check_directory("--tensorboard", tensorboard)
    quiet_tensorflow()
    from analysis.load import load_results
    from lrbench.tensorboard_export import export_tensorboard

    written = export_tensorboard(load_results(results), tensorboard)
    say(
        f"tensorboard: {written.runs} runs written to {written.logdir}; "
        f"browse with: tensorboard --logdir {shlex.quote(written.logdir)}"
    )
