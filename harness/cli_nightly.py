"""``lrbench nightly``: run tonight's night of a history, judge it, report it."""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from harness.cli_common import (
    cannot_write,
    check_directory,
    fail,
    failed,
    interrupted,
    kept_trials,
    notes,
    say,
)
from harness.errors import LrbenchError
from harness.location import child

if TYPE_CHECKING:
    from analysis.nightly_noise import Rules


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
    device_class: Annotated[
        str | None,
        typer.Option(
            help="Compare tonight with earlier nights of this device class (a name you "
            "choose, e.g. ci-2core) instead of the exact device string.",
        ),
    ] = None,
    accept: Annotated[
        str | None,
        typer.Option(
            help="Accept this night (a run id) as it is, regressions included: it starts a "
            "new baseline. Runs and judges nothing else.",
        ),
    ] = None,
) -> None:
    """Nightly benchmark: run GRID as tonight's night of the history (resuming an
    interrupted run of the same date), judge it against the median of the last
    good nights, write the Markdown summary and the HTML trend report. Exit code
    1 on a regression."""
    from analysis.nightly_noise import Rules

    rules = Rules(baseline_nights, k, floor_time, floor_steps, floor_seconds, min_success)
    try:
        rules.check()
        if accept is not None:
            if grid is not None or compare_only:
                raise fail(
                    "--accept records a decision and runs nothing: no GRID, no --compare-only"
                )
            _accept(history, accept)
            return
        if compare_only and grid is not None:
            raise fail("--compare-only runs nothing: give no GRID")
        if not compare_only and grid is None:
            raise fail("missing GRID: the grid file to run tonight (or --compare-only)")
        if run is not None and not compare_only:
            raise fail("--run picks a night to judge again: use it with --compare-only")
        if keep_runs is not None and compare_only:
            raise fail("--keep-runs prunes after tonight's run: not with --compare-only")
        check_directory("--history", history)
        if summary is not None:
            check_directory("--summary", os.path.dirname(os.path.abspath(summary)))
        if grid is not None:
            run = _run_night(
                grid, history, revision, address, data_dir, max_failures, verbose, device_class
            )
            if keep_runs is not None:
                _prune(history, keep_runs)
        verdict = _judge_night(history, rules, run, summary)
    except LrbenchError as exc:
        raise failed(exc) from None
    except KeyboardInterrupt as exc:  # Ctrl-C, or SIGTERM (``Terminated``)
        raise interrupted("trials", child(history, "runs"), exc) from None
    except OSError as exc:  # a full disk under the history
        raise cannot_write(child(history), exc) from None
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
    device_class: str | None,
) -> str:
    from harness.prepare import prepare_grid

    spec = prepare_grid(grid)
    notes(spec)
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    from harness.nightly import run_night

    try:
        night = run_night(
            spec,
            history,
            address=address,
            data_dir=data_dir,
            max_failures=max_failures,
            verbose=verbose,
            revision=revision,
            device_class=device_class,
        )
    except KeyboardInterrupt as exc:  # Ctrl-C, or SIGTERM (``Terminated``)
        out = _tonight(history, spec.digest)
        if out is None:  # stopped before tonight's run was recorded
            raise
        raise interrupted("trials", out, exc, kept_trials(out)) from None
    result = night.sweep
    counts = ", ".join(f"{k} {v}" for k, v in sorted(result.counts.items()))
    say(
        f"night {night.run_id}{' (resumed)' if night.resumed else ''}: {result.total} trials "
        f"({result.ran} run now) in {result.wall_s:.1f}s: {counts}; committed to {night.path}",
        err=True,
    )
    if result.unfinished:
        say(
            f"note: {result.unfinished} trials ended in error; the night is stored as "
            "incomplete and does not join later baselines",
            err=True,
        )
    for run_id in night.abandoned:
        say(
            f"note: run {run_id} was interrupted on another date (or grid) and never "
            f"committed; its finished trials stay in {child(history, 'runs', run_id)}",
            err=True,
        )
    return night.run_id


def _tonight(history: str, digest: str) -> str | None:
    """The results directory of the newest uncommitted run of the grid
    ``digest`` (the one a stopped night was filling), if any can be read now."""
    from harness.history import History

    try:
        store = History(history)
        runs = [i for i in store.pending() if i.get("grid_digest") == digest]
        return store.run_out(runs[-1]["run_id"]) if runs else None
    except (Exception, KeyboardInterrupt):
        return None


def _prune(history: str, keep: int) -> None:
    from harness.history import History

    pruned = History(history).prune_runs(keep)
    if pruned:
        say(
            f"removed the results directories of {len(pruned)} older runs (--keep-runs {keep}); "
            "their rows stay in the history",
            err=True,
        )


def _accept(history: str, run_id: str) -> None:
    from harness.history import History

    store = History(history)
    store.accept(run_id)
    say(
        f"accepted {run_id}: nights after it are judged against a baseline that starts "
        "with it (nights before it no longer count)"
    )


def _judge_night(history: str, rules: Rules, run: str | None, summary: str | None) -> str:
    import matplotlib

    matplotlib.use("Agg")
    from analysis import nightly_report
    from analysis.nightly import judge
    from harness.history import History

    store = History(history)
    judgement = judge(store.read(), rules, run, store.accepted())
    index = nightly_report.write(store, judgement, rules)
    text = nightly_report.markdown(judgement, rules, index)
    say(text)
    if summary:
        try:
            with open(summary, "a") as f:
                f.write(text + "\n")
        except OSError as exc:
            raise fail(f"--summary: cannot append to {summary} ({exc.strerror})") from None
    return judgement.verdict
