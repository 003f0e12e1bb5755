"""The ``lrbench`` command line: thin commands over the library.

TensorFlow and Ray are imported only inside the commands that need them, so
``--help`` and a bad grid file's error come back at once.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from harness.cli_common import (
    CTRL_C_EXIT,
    SIGTERM_EXIT,
    SIGTERM_SEEN,
    GridArg,
    MaxTrials,
    cannot_write,
    check_directory,
    fail,
    failed,
    interrupted,
    kept_trials,
    notes,
    print_tables,
    say,
    stop_on_sigterm,
    stopped,
)
from harness.cli_nightly import nightly
from harness.errors import FatalError, LrbenchError
from harness.specs import MAX_TRIALS

if TYPE_CHECKING:
    from harness.records import FinderOutcome

app = typer.Typer(
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    help="lrbench: which optimizer and learning rate train a model, and how fast.",
)


def _print_version(value: bool) -> None:
    if value:
        from harness import __version__

        typer.echo(f"lrbench {__version__}")
        raise typer.Exit()


@app.callback()
def _options(
    version: Annotated[
        bool,
        typer.Option(
            "--version", callback=_print_version, is_eager=True, help="Print the version and exit."
        ),
    ] = False,
) -> None:
    """Options before a command (the help text shown is the app's)."""


@app.command()
def sweep(
    grid: GridArg,
    out: Annotated[
        str | None, typer.Option(help="Results directory or URI (default: results/<grid name>).")
    ] = None,
    address: Annotated[
        str | None,
        typer.Option(help="Join an existing Ray cluster (e.g. ray://head:10001, or 'auto')."),
    ] = None,
    data_dir: Annotated[
        str | None,
        typer.Option(
            help="Directory holding dataset files (mnist.npz, fashion-mnist/); never downloads."
        ),
    ] = None,
    max_failures: Annotated[
        int, typer.Option(min=0, help="Retries of a trial whose worker died.")
    ] = 2,
    verbose: Annotated[bool, typer.Option(help="Show Ray's and workers' logs.")] = False,
    max_trials: MaxTrials = MAX_TRIALS,
) -> None:
    """Run a grid (resumes: trials already stored are skipped)."""
    from harness.prepare import prepare_grid

    target = out or "results/<grid name>"
    spec = None
    try:
        spec = prepare_grid(grid, max_trials)
        notes(spec)
        target = out or str(Path("results") / spec.name)
        check_directory("--out", target)
        os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
        from harness.sweep import run_sweep

        result = run_sweep(
            spec,
            target,
            address=address,
            data_dir=data_dir,
            max_failures=max_failures,
            verbose=verbose,
        )
    except LrbenchError as exc:
        raise failed(exc) from None
    except KeyboardInterrupt as exc:  # Ctrl-C, or SIGTERM (``Terminated``)
        kept = kept_trials(target) if spec is not None else None
        raise interrupted("trials", target, exc, kept) from None
    except OSError as exc:  # the driver's own writes: the manifest, the compaction
        raise cannot_write(target, exc) from None
    counts = ", ".join(f"{k} {v}" for k, v in sorted(result.counts.items()))
    say(
        f"{result.out}: {result.total} trials ({result.already_stored} already stored, "
        f"{result.ran} run now) in {result.wall_s:.1f}s: {counts}"
        + (
            f"; {result.rechecked} pruned trials next to a reached cell run again in full"
            if result.rechecked
            else ""
        )
        + (f"; {result.compacted} compacted" if result.compacted else "")
    )
    if result.unfinished:
        raise fail(
            f"{result.unfinished} trials did not finish (status error); "
            "run the same command to retry them",
            code=1,
        )


@app.command()
def show(
    grid: GridArg,
    cpus: Annotated[
        float | None, typer.Option(help="CPUs to plan for (default: this machine's).")
    ] = None,
    gpus: Annotated[float, typer.Option(help="GPUs to plan for.")] = 0.0,
    out: Annotated[
        str | None,
        typer.Option(
            help="A results directory: how many of the grid's trials it holds, how many "
            "are new, and whether the grid may grow there."
        ),
    ] = None,
    data_dir: Annotated[
        str | None,
        typer.Option(help="Directory holding dataset files (mnist.npz, fashion-mnist/, ...)."),
    ] = None,
    build: Annotated[
        bool,
        typer.Option(
            help="Build each model once, untrained, to check it and count its weights at "
            "each width (in a child process that imports TensorFlow: a few seconds)."
        ),
    ] = True,
    max_trials: MaxTrials = MAX_TRIALS,
) -> None:
    """Show a grid expanded: its axes, trial count and worst-case time, its data
    (shapes, class count) and each model's weight count at each width (built
    once, not trained)."""
    from harness.plan import plan, problem_lines, stored_lines
    from harness.prepare import prepare_grid

    try:
        spec = prepare_grid(grid, max_trials)
        lines = plan(spec, cpus if cpus is not None else float(os.cpu_count() or 1), gpus)
        lines += problem_lines(spec, data_dir, build)
        if out is not None:
            from harness.store import Store

            store = Store(out)
            change = store.grid_change(spec)
            ids = {t.trial_id for t in spec.expand()}
            stored = len(ids & store.finished().keys())  # none in a new directory
            lines += stored_lines(store.shown(), change, len(ids), stored)
    except LrbenchError as exc:
        raise failed(exc) from None
    notes(spec)
    for line in lines:
        say(line)


@app.command("find-lr")
def find_lr(
    grid: GridArg,
    optimizer: Annotated[
        list[str] | None,
        typer.Option(help="Test only this optimizer of the grid (repeatable; default: all)."),
    ] = None,
    out: Annotated[
        str | None,
        typer.Option(
            help="Results directory or URI to store the curves in (default: results/<grid name>, "
            "where the grid's sweep writes, so the suggestions meet its measured band)."
        ),
    ] = None,
    start: Annotated[float, typer.Option(help="LR of the first update.")] = 1e-7,
    end: Annotated[float, typer.Option(help="LR of the last update.")] = 10.0,
    steps: Annotated[int, typer.Option(help="Updates over which the LR rises.")] = 300,
    beta: Annotated[float, typer.Option(help="Smoothing: EMA weight of the past.")] = 0.98,
    stop_factor: Annotated[
        float, typer.Option(help="Stop once the smoothed loss passes this times its best.")
    ] = 4.0,
    seed: Annotated[int | None, typer.Option(help="Seed (default: the grid's first).")] = None,
    data_dir: Annotated[
        str | None,
        typer.Option(help="Directory holding dataset files (mnist.npz, fashion-mnist/)."),
    ] = None,
) -> None:
    """LR range test (Smith 2017) for each optimizer and setup of a grid: stores
    the loss-vs-LR curves, prints the suggested LRs (steepest, min/10,
    longest-descent, fastai-valley) beside the grid's measured band when its
    sweep is in the same directory, and draws DIR/finder.png. Stored tests are
    not run again."""
    from harness.finder import check_params, finder_runs, run_finders
    from harness.prepare import prepare_grid
    from harness.specs import FinderParams

    target = out or "results/<grid name>"

    def done(i: int, n: int, outcome: FinderOutcome) -> None:
        run, last = outcome.spec, outcome.points[-1] if outcome.points else None
        where = f" at step {last.step}, lr {last.lr:.3g}" if last else ""
        say(
            f"[{i}/{n}] {run.label} on {run.model} x{run.width:g}, {run.dataset}: "
            f"stopped ({outcome.stop_reason}){where} in {outcome.wall_s:.1f}s"
        )

    try:
        params = FinderParams(start, end, steps, beta, stop_factor)
        check_params(params)
        spec = prepare_grid(grid, resolve_finder=False)
        notes(spec)
        target = out or str(Path("results") / spec.name)
        check_directory("--out", target)
        runs = finder_runs(spec, params, optimizer, seed)
        os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
        stored = run_finders(spec, runs, target, data_dir or spec.data_dir, on_done=done)
        if stored:
            say(f"{stored} of {len(runs)} range tests already stored in {target}")
        _finder_summary(target)
    except LrbenchError as exc:
        raise failed(exc) from None
    except KeyboardInterrupt as exc:
        raise interrupted("range tests", target, exc) from None
    except OSError as exc:
        raise cannot_write(target, exc) from None


def _finder_summary(target: str) -> None:
    """Print the stored range tests' suggestions and where their figure is."""
    from analysis.display import finder_display
    from analysis.finder_report import write_finder_summary

    summary = write_finder_summary(target)
    print_tables({"finder": finder_display(summary.compared, several=False)})
    say(f"figure: {summary.figure}")
    if not summary.has_sweep:
        say(
            f"(no sweep in {target} yet: run `lrbench sweep` with the same --out to see "
            "each suggestion against the measured band)"
        )


@app.command()
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
    from analysis.report import default_out, write_report, write_waiting_report

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
    except LrbenchError as exc:
        raise failed(exc) from None
    print_tables(display_tables(written.tables))
    say(f"report: {os.path.join(written.out, 'index.html')}")


@app.command()
def compact(
    results: Annotated[
        str, typer.Argument(help="Results directory (or URI) of a sweep.", show_default=False)
    ],
) -> None:
    """Merge the per-trial files of finished trials into a few Parquet parts
    (a finished sweep does this itself; readers take either form)."""
    from harness.errors import StoreError
    from harness.store import MANIFEST, TRIALS, Store

    store = Store(results)
    try:
        if not (store.has(MANIFEST) or store.has(TRIALS)):
            raise StoreError(f"{store.shown()}: not an lrbench results directory")
        with store.locked("lrbench compact"):
            done = store.compact()
    except LrbenchError as exc:
        raise failed(exc) from None
    except KeyboardInterrupt as exc:  # Ctrl-C, or SIGTERM (``Terminated``)
        # parts are written before the files they merge are removed: a stop
        # at any point loses nothing, and the next compaction finishes the job
        message = f"{store.shown()}: compaction stopped, nothing lost; run it again to finish"
        raise stopped(message, exc) from None
    except OSError as exc:
        raise cannot_write(store.shown(), exc) from None
    migrated = f"; {done.migrated} older files rewritten to the current schema"
    say(
        f"{store.shown()}: {done.trials} trials merged into {done.parts} "
        f"part{'' if done.parts == 1 else 's'} ({done.removed} per-trial files removed)"
        + (migrated if done.migrated else "")
    )


@app.command()
def migrate(
    results: Annotated[
        str,
        typer.Argument(help="Results directory or nightly history (or URI).", show_default=False),
    ],
) -> None:
    """Rewrite the Parquet files an older lrbench wrote here to the current
    results schema, so that DuckDB, polars, pandas and Spark read each folder as
    one dataset (sweeps and `lrbench compact` do this too; see docs/results.md)."""
    from harness.errors import StoreError
    from harness.history import NIGHTS
    from harness.location import Location
    from harness.migrate import migrate as rewrite
    from harness.store import MANIFEST, TRIALS

    where = Location(results)
    try:
        if not any(where.has(name) for name in (MANIFEST, TRIALS, NIGHTS)):
            raise StoreError(f"{where.shown()}: not an lrbench results directory or history")
        with where.locked("lrbench migrate"):
            done = rewrite(where)
    except LrbenchError as exc:
        raise failed(exc) from None
    except KeyboardInterrupt as exc:  # each file is replaced atomically
        message = f"{where.shown()}: migration stopped, nothing lost; run it again to finish"
        raise stopped(message, exc) from None
    except OSError as exc:
        raise cannot_write(where.shown(), exc) from None
    for name, why in done.skipped:
        say(f"warning: {where.shown(name)}: {why}; left as it is", err=True)
    say(f"{where.shown()}: {done.summary()}")


@app.command()
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
    from harness.pruning import PRUNE_RULES

    rules = prune or list(PRUNE_RULES)
    for rule in rules:
        if rule not in PRUNE_RULES:
            raise fail(f"--prune: unknown rule {rule!r}; rules: {', '.join(PRUNE_RULES)}")
    try:
        loaded = load_results(results)
    except LrbenchError as exc:
        raise failed(exc) from None
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


app.command()(nightly)


@app.command()
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
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    from analysis.load import load_results
    from analysis.tensorboard_export import export_tensorboard

    try:
        written = export_tensorboard(load_results(results), tensorboard)
    except LrbenchError as exc:
        raise failed(exc) from None
    say(
        f"tensorboard: {written.runs} runs written to {written.logdir}; "
        f"browse with: tensorboard --logdir {shlex.quote(written.logdir)}"
    )


def main() -> None:
    """Entry point of the ``lrbench`` console script."""
    stop_on_sigterm()
    try:
        app()
    except LrbenchError as exc:  # raised outside a command's own handler
        say(f"error: {exc}", err=True)
        sys.exit(1 if isinstance(exc, FatalError) else 2)
    except SystemExit as exc:
        # Typer exits 130 for any KeyboardInterrupt a command does not catch
        # itself, Terminated included: SIGTERM is 143 for every command
        if exc.code == CTRL_C_EXIT and SIGTERM_SEEN["hit"]:
            sys.exit(SIGTERM_EXIT)
        raise


if __name__ == "__main__":
    main()
