"""``lrbench nightly run | judge | accept``: run tonight's night of a history and
judge it, judge a night again, or accept one as the new baseline."""

from __future__ import annotations

import functools
import inspect
import os
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, get_type_hints

import typer
from typer.core import TyperGroup

from harness.lazy import lazy
from harness.store.location import child
from harness.trial.quiet import quiet_tensorflow
from lrbench.cli.common import (
    GridArg,
    cannot_write,
    check_directory,
    fail,
    interrupted,
    kept_trials,
    notes,
    say,
)

# The modules behind the commands: loaded when a command runs, so that ``--help``
# comes back without pandas, pyarrow, Ray or matplotlib
if TYPE_CHECKING:
    import matplotlib

    from analysis.nightly import judge, noise, render
    from analysis.nightly.noise import Rules
    from harness.store import history as stored_history
    from harness.sweep import driver
    from harness.sweep.driver import RunOptions
    from lrbench import compose
    from lrbench import night as nights
else:
    matplotlib = lazy("matplotlib")
    judge = lazy("analysis.nightly.judge")
    noise = lazy("analysis.nightly.noise")
    render = lazy("analysis.nightly.render")
    stored_history = lazy("harness.store.history")
    driver = lazy("harness.sweep.driver")
    compose = lazy("lrbench.compose")
    nights = lazy("lrbench.night")

SUBCOMMANDS = ("run", "judge", "accept")


def new_spelling(args: list[str]) -> list[str]:
    """The subcommand form of the single-command spelling of earlier releases
    (``lrbench nightly GRID``, ``--compare-only``, ``--accept RUN_ID``), which
    still works for this release; ``args`` as they are when already new."""
    if not args or args[0] == "--help" or any(a in SUBCOMMANDS for a in args):
        return args  # new already (a misplaced option is click's to name)
    rest = list(args)
    accept = next((i for i, a in enumerate(rest) if a.split("=")[0] == "--accept"), None)
    if accept is not None:
        flag = rest.pop(accept)
        if "=" in flag:
            rest.insert(0, flag.partition("=")[2])
        elif accept < len(rest):
            rest.insert(0, rest.pop(accept))
        return ["accept", *rest]  # the run id first, or missing: click says so
    if "--compare-only" in rest:
        return ["judge", *[a for a in rest if a != "--compare-only"]]
    return ["run", *[a for a in rest if a != "--no-compare-only"]]


class NightlyCommands(TyperGroup):
    """``lrbench nightly``'s subcommands, taking the earlier spelling too, with a
    one-line notice of the new one."""

    def parse_args(self, ctx: Any, args: list[str]) -> list[str]:
        new = new_spelling(args)
        if new != args:
            say(
                f"note: `lrbench nightly {' '.join(args)}` is now `lrbench nightly "
                f"{' '.join(new)}`; the old spelling goes in the next release",
                err=True,
            )
        return super().parse_args(ctx, new)


nightly = typer.Typer(
    cls=NightlyCommands,
    no_args_is_help=True,
    help="Nightly benchmark: run tonight's night of a history and judge it against the "
    "median of the last good nights (run), judge a night again (judge), or accept one "
    "as the start of a new baseline (accept). See docs/nightly.md.",
)

HistoryOpt = Annotated[
    str, typer.Option("--history", help="History directory or URI (created on the first night).")
]
# The judging rules' options (``analysis.nightly.noise.Rules``), declared once:
# ``judging`` gives them to each command that judges a night.
RULE_OPTIONS = {
    "baseline_nights": (int, 7, "Baseline: the median of at most this many good nights."),
    "k": (float, 3.0, "Noise threshold: median + k x MAD of the baseline's own changes."),
    "floor_time": (float, 0.20, "Smallest relative change of time to target ever flagged."),
    "floor_steps": (float, 0.10, "Smallest relative change of steps to target ever flagged."),
    "floor_seconds": (
        float,
        0.25,
        "Smallest change of a cell's time to target ever flagged, in s.",
    ),
    "min_success": (float, 0.5, "Share of a cell's trials that must reach the target."),
}


def judging(command: Callable[..., None]) -> Callable[..., None]:
    """``command`` with the judging rules' options (``RULE_OPTIONS``) in place of
    its ``rules`` parameter, which it receives as one checked ``Rules``."""
    signature = inspect.signature(command)
    # ``Rules`` stays unloaded until a command runs (it brings pandas)
    hints = get_type_hints(command, localns={"Rules": Any}, include_extras=True)
    kept = [p.replace(annotation=hints[n]) for n, p in signature.parameters.items() if n != "rules"]
    options = [
        inspect.Parameter(
            name,
            inspect.Parameter.KEYWORD_ONLY,
            default=default,
            annotation=Annotated[kind, typer.Option(f"--{name.replace('_', '-')}", help=text)],
        )
        for name, (kind, default, text) in RULE_OPTIONS.items()
    ]

    @functools.wraps(command)
    def with_rules(**kwargs: Any) -> None:
        rules = noise.Rules(**{name: kwargs.pop(name) for name in RULE_OPTIONS})
        rules.check()
        command(rules=rules, **kwargs)

    # after the command's own options (all have defaults), in the order declared
    parameters = [*kept, *options]
    with_rules.__signature__ = signature.replace(  # type: ignore[attr-defined]
        parameters=parameters, return_annotation=None
    )
    with_rules.__annotations__ = {p.name: p.annotation for p in parameters}
    return with_rules


Summary = Annotated[
    str | None,
    typer.Option(help="Append the Markdown summary to this file (e.g. $GITHUB_STEP_SUMMARY)."),
]


@nightly.command("run")
@judging
def run_command(
    grid: GridArg,
    rules: Rules,
    history: HistoryOpt = "results/nightly",
    summary: Summary = None,
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
) -> None:
    """Run GRID as tonight's night of the history (resuming an interrupted run of
    the same date), judge it against the median of the last good nights, write
    the Markdown summary and the HTML trend report. Exit code 1 on a regression."""
    _check_paths(history, summary)

    def night() -> str:
        options = driver.RunOptions(address, data_dir, max_failures, verbose)
        run = _run_night(grid, history, options, revision, device_class)
        if keep_runs is not None:
            _prune(history, keep_runs)
        return _judge_night(history, rules, run, summary)

    _verdict(history, night)


@nightly.command("judge")
@judging
def judge_command(
    rules: Rules,
    history: HistoryOpt = "results/nightly",
    run: Annotated[
        str | None, typer.Option(help="The run id of the night to judge (default: the latest).")
    ] = None,
    summary: Summary = None,
) -> None:
    """Run nothing: judge the latest night (or --run) again, write its summary and
    the trend report. Exit code 1 on a regression."""
    _check_paths(history, summary)
    _verdict(history, lambda: _judge_night(history, rules, run, summary))


@nightly.command("accept")
def accept_command(
    run_id: Annotated[
        str, typer.Argument(help="The run id of the night to accept.", show_default=False)
    ],
    history: HistoryOpt = "results/nightly",
) -> None:
    """Accept a night as it is, regressions included: it starts a new baseline.
    Runs and judges nothing else."""
    stored_history.History(history).accept(run_id)
    say(
        f"accepted {run_id}: nights after it are judged against a baseline that starts "
        "with it (nights before it no longer count)"
    )


def _check_paths(history: str, summary: str | None) -> None:
    check_directory("--history", history)
    if summary is not None:
        check_directory("--summary", os.path.dirname(os.path.abspath(summary)))


def _verdict(history: str, work: Callable[[], str]) -> None:
    """Run a night's ``work`` (it returns the verdict): one line and exit 130 or
    143 for Ctrl-C or SIGTERM, 1 for a full disk, 1 for a regression."""
    try:
        verdict = work()
    except KeyboardInterrupt as exc:  # Ctrl-C, or SIGTERM (``Terminated``)
        raise interrupted("trials", child(history, "runs"), exc) from None
    except OSError as exc:  # a full disk under the history
        raise cannot_write(child(history), exc) from None
    if verdict == "regression":
        raise typer.Exit(1)


def _run_night(
    grid: Path, history: str, options: RunOptions, revision: str | None, device_class: str | None
) -> str:
    resolved = compose.prepare_grid(grid)
    notes(resolved.spec, resolved.skipped)
    quiet_tensorflow()
    try:
        night = nights.run_night(
            resolved, history, options, revision=revision, device_class=device_class
        )
    except KeyboardInterrupt as exc:  # Ctrl-C, or SIGTERM (``Terminated``)
        out = _tonight(history, resolved.digest)
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
    try:
        store = stored_history.History(history)
        runs = [i for i in store.pending() if i.grid_digest == digest]
        return store.run_out(runs[-1].run_id) if runs else None
    except (Exception, KeyboardInterrupt):
        return None


def _prune(history: str, keep: int) -> None:
    pruned = stored_history.History(history).prune_runs(keep)
    if pruned:
        say(
            f"removed the results directories of {len(pruned)} older runs (--keep-runs {keep}); "
            "their rows stay in the history",
            err=True,
        )


def _judge_night(history: str, rules: Rules, run: str | None, summary: str | None) -> str:
    matplotlib.use("Agg")
    store = stored_history.History(history)
    judgement = judge.judge(store.read(), rules, run, store.accepted())
    index = render.write(store, judgement, rules)
    text = render.markdown(judgement, rules, index)
    say(text)
    if summary:
        try:
            with open(summary, "a") as f:
                f.write(text + "\n")
        except OSError as exc:
            raise fail(f"--summary: cannot append to {summary} ({exc.strerror})") from None
    return judgement.verdict
