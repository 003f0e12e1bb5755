"""The ``lrbench`` Typer app: its one error handler, its exit codes and its
``--version``. The commands are registered on it in ``lrbench.cli``."""

from __future__ import annotations

import sys
from typing import Annotated, Any

import typer
from typer.core import TyperGroup

from harness import __version__
from harness.errors import LrbenchError
from lrbench.cli.common import (
    CTRL_C_EXIT,
    SIGTERM_EXIT,
    SIGTERM_SEEN,
    failed,
    stop_on_sigterm,
)


class Commands(TyperGroup):
    """The command group, and the one place a user's error becomes a line: an
    ``LrbenchError`` raised anywhere in a command (its options' checks included)
    prints ``error: ...`` and exits 2 for bad input, 1 for a run that could not
    go on (``lrbench.cli.common.failed``)."""

    def invoke(self, ctx: Any) -> Any:  # a click Context (Typer's own in newer Typer)
        try:
            return super().invoke(ctx)
        except LrbenchError as exc:
            raise failed(exc) from None


class App(typer.Typer):
    """Typer, called as the ``lrbench`` console script: SIGTERM stops a command
    as Ctrl-C does, and exits 143 whatever the command."""

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        stop_on_sigterm()
        try:
            return super().__call__(*args, **kwargs)
        except SystemExit as exc:
            # Typer exits 130 for any KeyboardInterrupt a command does not catch
            # itself, Terminated included: SIGTERM is 143 for every command
            if exc.code == CTRL_C_EXIT and SIGTERM_SEEN["hit"]:
                sys.exit(SIGTERM_EXIT)
            raise


app = App(
    cls=Commands,
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    help="lrbench: which optimizer and learning rate train a model, and how fast.",
)


def _print_version(value: bool) -> None:
    if value:
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
