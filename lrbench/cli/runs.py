"""``lrbench sweep``, ``show``, ``find-lr``, ``compact`` and ``migrate``: run a
grid and keep its results directory."""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from harness.errors import StoreError
from harness.grid.specs import MAX_TRIALS, FinderParams
from harness.lazy import lazy
from harness.store.location import Location
from harness.trial.quiet import quiet_tensorflow
from lrbench.cli.common import (
    GridArg,
    MaxTrials,
    cannot_write,
    check_directory,
    fail,
    interrupted,
    kept_trials,
    notes,
    print_tables,
    say,
    stopped,
)

# The modules behind the commands: loaded when a command runs, so that ``--help``
# and a grid's error come back without pandas, pyarrow, Ray or TensorFlow
if TYPE_CHECKING:
    from analysis import display
    from analysis.finder import summary as finder_summary
    from harness.grid import parse as grid_parse
    from harness.grid import plan
    from harness.store import history
    from harness.store import migrate as store_migrate
    from harness.store import results as result_store
    from harness.store.records import FinderOutcome
    from harness.sweep import driver
    from harness.trial import range_test
    from lrbench import compose
else:
    display = lazy("analysis.display")
    finder_summary = lazy("analysis.finder.summary")
    grid_parse = lazy("harness.grid.parse")
    plan = lazy("harness.grid.plan")
    history = lazy("harness.store.history")
    result_store = lazy("harness.store.results")
    store_migrate = lazy("harness.store.migrate")
    driver = lazy("harness.sweep.driver")
    range_test = lazy("harness.trial.range_test")
    compose = lazy("lrbench.compose")


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
    target = out or "results/<grid name>"
    resolved = None
    try:
        resolved = compose.prepare_grid(grid, max_trials)
        notes(resolved.spec, resolved.skipped)
        target = out or str(Path("results") / resolved.spec.name)
        check_directory("--out", target)
        quiet_tensorflow()
        options = driver.RunOptions(address, data_dir, max_failures, verbose)
        result = driver.run_sweep(resolved, target, options)
    except KeyboardInterrupt as exc:  # Ctrl-C, or SIGTERM (``Terminated``)
        kept = kept_trials(target) if resolved is not None else None
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
    resolved = compose.prepare_grid(grid, max_trials)
    lines = plan.plan(resolved, cpus if cpus is not None else float(os.cpu_count() or 1), gpus)
    held: list[str] = []
    if out is not None:  # a grid the directory cannot take is refused before any build
        store = result_store.Store(out)
        change = store.grid_change(resolved)
        ids = {t.trial_id for t in resolved.expand()}
        stored = len(ids & store.finished().keys())  # none in a new directory
        held = plan.stored_lines(store.shown(), change, len(ids), stored)
    lines += plan.problem_lines(resolved.spec, data_dir, build) + held
    notes(resolved.spec, resolved.skipped)
    for line in lines:
        say(line)


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
        range_test.check_params(params)
        spec = grid_parse.load_grid(grid)
        notes(spec)
        target = out or str(Path("results") / spec.name)
        check_directory("--out", target)
        runs = range_test.finder_runs(spec, params, optimizer, seed)
        quiet_tensorflow()
        already = range_test.run_finders(
            spec, runs, target, data_dir or spec.data_dir, on_done=done
        )
        if already:
            say(f"{already} of {len(runs)} range tests already stored in {target}")
        _finder_summary(target)
    except KeyboardInterrupt as exc:
        raise interrupted("range tests", target, exc) from None
    except OSError as exc:
        raise cannot_write(target, exc) from None


def _finder_summary(target: str) -> None:
    """Print the stored range tests' suggestions and where their figure is."""
    summary = finder_summary.write_finder_summary(target)
    print_tables({"finder": display.finder_display(summary.compared, several=False)})
    say(f"figure: {summary.figure}")
    if not summary.has_sweep:
        say(
            f"(no sweep in {target} yet: run `lrbench sweep` with the same --out to see "
            "each suggestion against the measured band)"
        )


def compact(
    results: Annotated[
        str, typer.Argument(help="Results directory (or URI) of a sweep.", show_default=False)
    ],
) -> None:
    """Merge the per-trial files of finished trials into a few Parquet parts
    (a finished sweep does this itself; readers take either form)."""
    store = result_store.Store(results)
    try:
        if not (store.has(result_store.MANIFEST) or store.has(result_store.TRIALS)):
            raise StoreError(f"{store.shown()}: not an lrbench results directory")
        with store.locked("lrbench compact"):
            done = store.compact()
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


def migrate(
    results: Annotated[
        str,
        typer.Argument(help="Results directory or nightly history (or URI).", show_default=False),
    ],
) -> None:
    """Rewrite the Parquet files an older lrbench wrote here to the current
    results schema, so that DuckDB, polars, pandas and Spark read each folder as
    one dataset (sweeps and `lrbench compact` do this too; see docs/results.md)."""
    where = Location(results)
    try:
        if not any(
            where.has(name) for name in (result_store.MANIFEST, result_store.TRIALS, history.NIGHTS)
        ):
            raise StoreError(f"{where.shown()}: not an lrbench results directory or history")
        with where.locked("lrbench migrate"):
            done = store_migrate.migrate(where)
    except KeyboardInterrupt as exc:  # each file is replaced atomically
        message = f"{where.shown()}: migration stopped, nothing lost; run it again to finish"
        raise stopped(message, exc) from None
    except OSError as exc:
        raise cannot_write(where.shown(), exc) from None
    for name, why in done.skipped:
        say(f"warning: {where.shown(name)}: {why}; left as it is", err=True)
    say(f"{where.shown()}: {done.summary()}")
