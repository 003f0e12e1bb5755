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

from harness.errors import LrbenchError
from harness.store import child

if TYPE_CHECKING:
    from analysis.nightly import Rules
    from harness.grid import GridSpec

app = typer.Typer(
    add_completion=False,
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    help="lrbench: which optimizer and learning rate train a model, and how fast.",
)

GridArg = Annotated[Path, typer.Argument(help="Grid file (TOML).", show_default=False)]


def _fail(message: str, code: int = 2) -> typer.Exit:
    typer.echo(f"error: {message}", err=True)
    return typer.Exit(code)


def _interrupted(what: str, target: str) -> typer.Exit:
    typer.echo(
        f"\ninterrupted: finished {what} are stored in {target}; run the same command to resume",
        err=True,
    )
    return typer.Exit(130)


def _notes(spec: GridSpec) -> None:
    for why in spec.skipped:
        typer.echo(f"note: skipped {why}", err=True)


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
) -> None:
    """Run a grid (resumes: trials already stored are skipped)."""
    from harness.grid import load_grid

    target = out or "results/<grid name>"
    try:
        spec = load_grid(grid)
        _notes(spec)
        target = out or str(Path("results") / spec.name)
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
        raise _fail(str(exc)) from None
    except KeyboardInterrupt:
        raise _interrupted("trials", target) from None
    counts = ", ".join(f"{k} {v}" for k, v in sorted(result.counts.items()))
    typer.echo(
        f"{result.out}: {result.total} trials ({result.already_stored} already stored, "
        f"{result.ran} run now) in {result.wall_s:.1f}s: {counts}"
    )
    if result.unfinished:
        raise _fail(
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
) -> None:
    """Show a grid expanded: its axes, trial count and worst-case time."""
    from harness.grid import load_grid, plan

    try:
        spec = load_grid(grid)
    except LrbenchError as exc:
        raise _fail(str(exc)) from None
    _notes(spec)
    for line in plan(spec, cpus if cpus is not None else float(os.cpu_count() or 1), gpus):
        typer.echo(line)


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
    the loss-vs-LR curves, prints the suggested LRs (steepest, min/10, valley)
    beside the grid's measured band when its sweep is in the same directory, and
    draws DIR/finder.png. Stored tests are not run again."""
    from harness.finder import FinderParams, finder_runs
    from harness.grid import load_grid

    target = out or "results/<grid name>"
    try:
        params = FinderParams(start, end, steps, beta, stop_factor)
        params.check()
        spec = load_grid(grid)
        _notes(spec)
        target = out or str(Path("results") / spec.name)
        runs = finder_runs(spec, params, optimizer, seed)
        os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
        _run_finders(spec, runs, target, data_dir or spec.data_dir)
        _finder_summary(target)
    except LrbenchError as exc:
        raise _fail(str(exc)) from None
    except KeyboardInterrupt:
        raise _interrupted("range tests", target) from None


def _run_finders(spec: GridSpec, runs: list, target: str, data_dir: str | None) -> None:
    from harness.data import load_dataset
    from harness.finder import run_finder
    from harness.store import Store
    from harness.sweep import check_optimizers

    store = Store(target)
    done = store.finder_ids()
    todo = [r for r in runs if r.finder_id not in done]
    if len(todo) < len(runs):
        typer.echo(f"{len(runs) - len(todo)} of {len(runs)} range tests already stored in {target}")
    if todo:
        check_optimizers(spec)  # a keyword typo fails here, in one line
    datasets: dict[str, object] = {}
    for i, run in enumerate(todo, 1):
        if run.dataset not in datasets:
            datasets[run.dataset] = load_dataset(run.dataset, data_dir)
        outcome = run_finder(run, datasets[run.dataset])  # type: ignore[arg-type]
        store.write_finder(outcome.rows(), run.finder_id)
        last = outcome.points[-1] if outcome.points else None
        where = f" at step {last.step}, lr {last.lr:.3g}" if last else ""
        typer.echo(
            f"[{i}/{len(todo)}] {run.label} on {run.model} x{run.width:g}, {run.dataset}: "
            f"stopped ({outcome.stop_reason}){where} in {outcome.wall_s:.1f}s"
        )


def _finder_summary(target: str) -> None:
    """Print the stored range tests' suggestions (against the sweep's band when
    there is one) and draw ``finder.png``/``.svg`` in the results directory."""
    import io

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from analysis import finder as F
    from analysis.display import finder_display
    from analysis.finder_plots import finder_figure
    from analysis.load import source_labels
    from harness.store import TRIALS, Store

    store = Store(target)
    label = source_labels([target])[0]
    points = store.read_finder().assign(source=label)
    trials = store.read_trials().assign(source=label) if store.has(TRIALS) else None
    compared = F.against_grid(F.suggestions(points), trials)
    _print_tables({"finder": finder_display(compared, several=False)})
    fig = finder_figure(points, compared)
    for ext in ("png", "svg"):
        buffer = io.BytesIO()
        fig.savefig(buffer, format=ext, dpi=130)
        store.write_bytes(f"finder.{ext}", buffer.getvalue())
    plt.close(fig)
    typer.echo(f"figure: {child(target, 'finder.png')}")
    if trials is None:
        typer.echo(
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
        raise _fail(f"--min-success: {min_success} is outside (0, 1]")
    from analysis.display import display_tables
    from analysis.load import load_results
    from analysis.report import default_out, write_report

    try:
        loaded = load_results(results)
        written = write_report(loaded, out or default_out(results), min_success)
    except LrbenchError as exc:
        raise _fail(str(exc)) from None
    _print_tables(display_tables(written.tables))
    typer.echo(f"report: {os.path.join(written.out, 'index.html')}")


@app.command()
def nightly(
    grid: Annotated[
        Path | None,
        typer.Argument(help="Grid file (TOML) to run tonight; none with --compare-only."),
    ] = None,
    history: Annotated[
        str, typer.Option(help="History directory or URI (created on the first night).")
    ] = "results/nightly",
    compare_only: Annotated[
        bool, typer.Option(help="Run nothing: judge the latest night (or --run) again.")
    ] = False,
    run: Annotated[
        str | None, typer.Option(help="With --compare-only: the run id of the night to judge.")
    ] = None,
    baseline_nights: Annotated[
        int, typer.Option(help="Baseline: the median of at most this many good nights.")
    ] = 7,
    k: Annotated[
        float,
        typer.Option(help="Noise threshold: median + k x MAD of the baseline's own changes."),
    ] = 3.0,
    floor_time: Annotated[
        float, typer.Option(help="Smallest relative change of time to target ever flagged.")
    ] = 0.20,
    floor_steps: Annotated[
        float, typer.Option(help="Smallest relative change of steps to target ever flagged.")
    ] = 0.10,
    floor_seconds: Annotated[
        float, typer.Option(help="Smallest change of a cell's time to target ever flagged, in s.")
    ] = 0.25,
    min_success: Annotated[
        float, typer.Option(help="Share of a cell's trials that must reach the target.")
    ] = 0.5,
    summary: Annotated[
        str | None,
        typer.Option(help="Append the Markdown summary to this file (e.g. $GITHUB_STEP_SUMMARY)."),
    ] = None,
    revision: Annotated[
        str | None,
        typer.Option(help="Revision of the code under test (default: git commit of the cwd)."),
    ] = None,
    address: Annotated[
        str | None, typer.Option(help="Join an existing Ray cluster instead of local Ray.")
    ] = None,
    data_dir: Annotated[
        str | None, typer.Option(help="Directory holding dataset files; never downloads.")
    ] = None,
    max_failures: Annotated[
        int, typer.Option(min=0, help="Retries of a trial whose worker died.")
    ] = 2,
    keep_runs: Annotated[
        int | None,
        typer.Option(
            min=0,
            help="Keep the results directories (curves) of only this many newest runs; "
            "the history keeps every night's rows (default: keep all).",
        ),
    ] = None,
    verbose: Annotated[bool, typer.Option(help="Show Ray's and workers' logs.")] = False,
) -> None:
    """Nightly benchmark: run GRID as tonight's night of the history (resuming an
    interrupted run of the same date), judge it against the median of the last
    good nights, write the Markdown summary and the HTML trend report. Exit code
    1 on a regression."""
    from analysis.nightly import Rules

    rules = Rules(baseline_nights, k, floor_time, floor_steps, floor_seconds, min_success)
    try:
        rules.check()
        if compare_only and grid is not None:
            raise _fail("--compare-only runs nothing: give no GRID")
        if not compare_only and grid is None:
            raise _fail("missing GRID: the grid file to run tonight (or --compare-only)")
        if run is not None and not compare_only:
            raise _fail("--run picks a night to judge again: use it with --compare-only")
        if keep_runs is not None and compare_only:
            raise _fail("--keep-runs prunes after tonight's run: not with --compare-only")
        if grid is not None:
            run = _run_night(grid, history, revision, address, data_dir, max_failures, verbose)
            if keep_runs is not None:
                _prune(history, keep_runs)
        verdict = _judge_night(history, rules, run, summary)
    except LrbenchError as exc:
        raise _fail(str(exc)) from None
    except KeyboardInterrupt:
        raise _interrupted("trials", child(history, "runs")) from None
    if verdict == "regression":
        raise typer.Exit(1)


def _run_night(
    grid: Path,
    history: str,
    revision: str | None,
    address: str | None,
    data_dir: str | None,
    max_failures: int,
    verbose: bool,
) -> str:
    from harness.grid import load_grid

    spec = load_grid(grid)
    _notes(spec)
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    from harness.nightly import run_night

    night = run_night(
        spec,
        history,
        address=address,
        data_dir=data_dir,
        max_failures=max_failures,
        verbose=verbose,
        revision=revision,
    )
    result = night.sweep
    counts = ", ".join(f"{k} {v}" for k, v in sorted(result.counts.items()))
    typer.echo(
        f"night {night.run_id}{' (resumed)' if night.resumed else ''}: {result.total} trials "
        f"({result.ran} run now) in {result.wall_s:.1f}s: {counts}; committed to {night.path}",
        err=True,
    )
    if result.unfinished:
        typer.echo(
            f"note: {result.unfinished} trials ended in error; the night is stored as "
            "incomplete and does not join later baselines",
            err=True,
        )
    for run_id in night.abandoned:
        typer.echo(
            f"note: run {run_id} was interrupted on another date (or grid) and never "
            f"committed; its finished trials stay in {child(history, 'runs', run_id)}",
            err=True,
        )
    return night.run_id


def _prune(history: str, keep: int) -> None:
    from harness.store import History

    pruned = History(history).prune_runs(keep)
    if pruned:
        typer.echo(
            f"removed the results directories of {len(pruned)} older runs (--keep-runs {keep}); "
            "their rows stay in the history",
            err=True,
        )


def _judge_night(history: str, rules: Rules, run: str | None, summary: str | None) -> str:
    import matplotlib

    matplotlib.use("Agg")
    from analysis import nightly_report
    from analysis.nightly import judge
    from harness.store import History

    store = History(history)
    judgement = judge(store.read(), rules, run)
    index = nightly_report.write(store, judgement, rules)
    text = nightly_report.markdown(judgement, rules, index)
    typer.echo(text)
    if summary:
        try:
            with open(summary, "a") as f:
                f.write(text + "\n")
        except OSError as exc:
            raise _fail(f"--summary: cannot append to {summary} ({exc.strerror})") from None
    return judgement.verdict


def _print_tables(shown: dict) -> None:
    from rich.console import Console
    from rich.table import Table

    console = Console(width=max(Console().width, 140))
    for name, title in (
        ("summary", "Sweeps"),
        ("optimizers", "Per optimizer"),
        ("union_band", "Union band: LRs where at least one optimizer succeeds"),
        ("devices", "Devices: trials ran on several; compare steps, not times, across them"),
        ("compare", "Comparison (ratios to the first results directory)"),
        ("shifts", "How the valley moves: each setup against its optimizer's reference"),
        ("finder", "LR range test: suggestions against the grid's measured band"),
        ("finder_rules", "LR range test: how each suggestion rule did against the grid"),
        ("scaling", "Width scaling: fits of time to target against size"),
    ):
        if name not in shown:
            continue
        frame = shown[name]
        table = Table(title=title, title_justify="left", header_style="bold")
        for column in frame.columns:
            table.add_column(str(column))
        for row in frame.itertuples(index=False):
            table.add_row(*(str(v) for v in row))
        console.print(table)


def main() -> None:
    """Entry point of the ``lrbench`` console script."""
    try:
        app()
    except LrbenchError as exc:  # raised outside a command's own handler
        typer.echo(f"error: {exc}", err=True)
        sys.exit(2)


if __name__ == "__main__":
    main()
