"""What every ``lrbench`` command shares: one-line errors, exit codes, notes,
Ctrl-C and SIGTERM, and the console tables."""

from __future__ import annotations

import errno
import os
import signal
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.console import Console
from rich.table import Table

from harness.errors import FatalError, LrbenchError, ParamError
from harness.lazy import lazy
from harness.store.location import redact

if TYPE_CHECKING:
    from collections.abc import Iterable

    from analysis import display
    from harness.grid import parse as grid_parse
    from harness.grid.resolved import Skipped
    from harness.grid.specs import GridSpec
    from harness.store import results as result_store
else:  # loaded when used: they bring NumPy, pandas and pyarrow
    display = lazy("analysis.display")
    grid_parse = lazy("harness.grid.parse")
    result_store = lazy("harness.store.results")

GridArg = Annotated[Path, typer.Argument(help="Grid file (TOML).", show_default=False)]
MaxTrials = Annotated[
    int, typer.Option(min=1, help="Refuse a grid of more trials than this, before expanding it.")
]

# the option that sets each parameter a library check names (``ParamError.field``)
OPTIONS = {
    "start_lr": "--start",
    "end_lr": "--end",
    "num_steps": "--steps",
    "optimizers": "--optimizer",
    "run_id": "--run",
    "accept": "RUN_ID",  # lrbench nightly accept RUN_ID
}


def say(message: str = "", err: bool = False) -> None:
    """Print a line of the CLI's output, with the secrets of any URI in it
    hidden (``harness.store.location.redact``): every command prints through here."""

    typer.echo(redact(message), err=err)


def fail(message: str, code: int = 2) -> typer.Exit:
    """Print ``error: message`` and return the exit to raise (2: bad input)."""
    say(f"error: {message}", err=True)
    return typer.Exit(code)


def failed(exc: LrbenchError) -> typer.Exit:
    """Exit 1 for a sweep that could not go on, 2 for bad input; a parameter's
    error names its command-line option."""
    if isinstance(exc, FatalError):
        return fail(str(exc), code=1)
    if isinstance(exc, ParamError):
        option = OPTIONS.get(exc.field, "--" + exc.field.replace("_", "-"))
        return fail(f"{option}: {exc.problem}")
    return fail(str(exc))


# Exit codes of a command stopped by a signal: 128 + its number, as a shell reports it
CTRL_C_EXIT = 128 + signal.SIGINT  # 130
SIGTERM_EXIT = 128 + signal.SIGTERM  # 143
# Set once SIGTERM has come (``stop_on_sigterm``)
SIGTERM_SEEN = {"hit": False}


class Terminated(KeyboardInterrupt):
    """SIGTERM (how systemd, Kubernetes and CI runners stop a job), raised in the
    main thread as Ctrl-C raises ``KeyboardInterrupt``: the same clean-up runs
    (Ray shut down, the directory's lock released), and the command exits 143."""


def stop_on_sigterm() -> None:
    """Make SIGTERM raise ``Terminated`` (the ``lrbench`` entry point calls this
    first). ``harness.sweep.driver`` holds it back while Ray Tune runs, and sends it
    again once Ray is down."""

    def handler(signum: int, frame: Any) -> None:
        SIGTERM_SEEN["hit"] = True
        raise Terminated

    signal.signal(signal.SIGTERM, handler)


def stopped(message: str, exc: KeyboardInterrupt) -> typer.Exit:
    """Print ``interrupted: message`` after Ctrl-C or SIGTERM (``exc``); exit 130
    or 143."""
    sigterm = isinstance(exc, Terminated)
    # the line break ends a progress line the signal cut short
    say(f"\ninterrupted{' (SIGTERM)' if sigterm else ''}: {message}", err=True)
    return typer.Exit(SIGTERM_EXIT if sigterm else CTRL_C_EXIT)


def interrupted(
    what: str, target: str, exc: KeyboardInterrupt, kept: int | None = None
) -> typer.Exit:
    """Say how many finished ``what`` (trials, range tests) are kept in
    ``target`` (``kept``, when known) and how to resume; exit 130, or 143 for
    SIGTERM."""
    one = kept == 1 and what.endswith("s")
    count = f"{kept:,} " if kept is not None else ""
    noun, verb = (what[:-1], "is") if one else (what, "are")
    return stopped(
        f"{count}finished {noun} {verb} stored in {target}; run the same command to resume", exc
    )


def kept_trials(out: str) -> int | None:
    """How many finished trials (all but ``error``) the results directory ``out``
    holds, for the line printed after a signal; None when that cannot be read
    now (a second signal included)."""
    try:
        return len(result_store.Store(out).finished())
    except (Exception, KeyboardInterrupt):
        return None


# OSErrors of a location that cannot take results (``cannot_write``)
STORAGE_ERRNOS = frozenset(
    (
        errno.ENOSPC,  # a full disk
        errno.EDQUOT,  # a full quota
        errno.EFBIG,  # a file size limit
        errno.EROFS,
        errno.EACCES,
        errno.EPERM,
        errno.ENOTDIR,
        errno.EISDIR,
        errno.EIO,
    )
)


def cannot_write(target: str, exc: OSError) -> typer.Exit:
    """One line and exit 1 for results that cannot be written (a full disk, a
    read-only or forbidden location): the run stops, finished work stays.
    Any other OSError is raised again: a bug to see whole."""
    if exc.errno not in STORAGE_ERRNOS:
        raise exc
    reason = os.strerror(exc.errno)
    return fail(f"{target}: cannot store results ({reason}); finished work is kept", code=1)


def check_directory(option: str, path: str | None) -> None:
    """Refuse, before any work, a local ``path`` that cannot be a directory: an
    existing file, or a path below one (``--out somefile/x``). A URI is the
    store's to check."""
    if path is None or "://" in path:
        return
    here = Path(path).absolute()
    for folder in (here, *here.parents):
        if folder.is_dir():
            return
        if folder.exists():
            what = "is a file" if folder == here else f"is below the file {folder}"
            raise fail(f"{option} {path}: {what}, not a directory")


def notes(spec: GridSpec, skipped: Iterable[Skipped] = ()) -> None:
    """Print the grid's warnings, and a note for each optimizer ``lr = { best = DIR }``
    skipped (``skipped``: a resolved grid's)."""
    for warning in grid_parse.grid_warnings(spec):
        say(f"warning: {warning}", err=True)
    for skip in skipped:
        say(f"note: skipped {skip.text}", err=True)


def print_tables(shown: dict) -> None:
    """Print the formatted report tables (``analysis.display``) that are present."""
    console = Console(width=max(Console().width, 140))
    for name, title in display.TITLES.items():
        if name not in shown:
            continue
        frame = shown[name]
        table = Table(title=title, title_justify="left", header_style="bold")
        for column in frame.columns:
            table.add_column(str(column))
        for row in frame.itertuples(index=False):
            table.add_row(*(str(v) for v in row))
        console.print(table)
