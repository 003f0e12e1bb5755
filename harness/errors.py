"""Error types.

A ``LrbenchError`` is a user-facing problem (bad grid file, missing data, a
results directory that belongs to another grid): the CLI prints its message on
one line and exits non-zero. A ``TrialError`` is a failure inside one trial: it
is recorded with status ``error`` and the sweep goes on.
"""

from __future__ import annotations


def one_line(exc: BaseException) -> str:
    """``Type: first line of the message``, for one-line reports of an exception."""
    lines = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {lines[0]}" if lines else type(exc).__name__


class LrbenchError(Exception):
    """A problem the user can fix; its message is one line."""


class GridError(LrbenchError):
    """A grid file that cannot be read or does not validate."""

    def __init__(self, source: str, field: str, message: str) -> None:
        self.source = source
        self.field = field
        where = f"{source}: {field}" if field else source
        super().__init__(f"{where}: {message}")


class DataError(LrbenchError):
    """A dataset that cannot be found or loaded."""


class StoreError(LrbenchError):
    """A results directory that cannot be read or written."""


class TrialError(Exception):
    """A failure inside one trial; recorded, and the sweep goes on."""
