"""What every ``lrbench`` command shares: one-line errors, exit codes, notes,
and the console tables."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from harness.errors import FatalError, LrbenchError, ParamError

if TYPE_CHECKING:
    from harness.specs import GridSpec

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
}


def say(message: str = "", err: bool = False) -> None:
    """Print a line of the CLI's output, with the secrets of any URI in it
    hidden (``harness.location.redact``): every command prints through here."""
    from harness.location import redact

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


def interrupted(what: str, target: str) -> typer.Exit:
    """Say where the finished work is kept after Ctrl-C; exit 130."""
    say(
        f"\ninterrupted: finished {what} are stored in {target}; run the same command to resume",
        err=True,
    )
    return typer.Exit(130)


def notes(spec: GridSpec) -> None:
    """Print the grid's warnings, and a note for each optimizer ``lr = { best = DIR }``
    skipped."""
    from harness.grid import grid_warnings

    for warning in grid_warnings(spec):
        say(f"warning: {warning}", err=True)
    for skipped in spec.skipped:
        say(f"note: skipped {skipped.text}", err=True)


def print_tables(shown: dict) -> None:
    """Print the formatted report tables (``analysis.display``) that are present."""
    from rich.console import Console
    from rich.table import Table

    from analysis.display import TITLES

    console = Console(width=max(Console().width, 140))
    for name, title in TITLES.items():
        if name not in shown:
            continue
        frame = shown[name]
        table = Table(title=title, title_justify="left", header_style="bold")
        for column in frame.columns:
            table.add_column(str(column))
        for row in frame.itertuples(index=False):
            table.add_row(*(str(v) for v in row))
        console.print(table)
