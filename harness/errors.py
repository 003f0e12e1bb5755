"""Error types.

- ``LrbenchError``: a problem the user can fix (a bad grid file, missing data, a
  results directory that belongs to another grid). The CLI prints its message
  on one line and exits 2.
- ``FatalError``: the sweep cannot go on (its store cannot be written, the
  device it asked for is missing). Raised from a trial, it stops the whole
  sweep at once instead of being recorded once per trial; finished trials stay
  stored.

Any other exception inside one trial (the model, the optimizer or the training
raised) is that trial's failure, not an error type of its own: ``run_trial``
records it as a row with status ``error``, its message and traceback, and the
sweep goes on; a rerun retries it.
"""

from __future__ import annotations

import re


def one_line(exc: BaseException) -> str:
    """``Type: first line of the message``, for one-line reports of an exception."""
    lines = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {lines[0]}" if lines else type(exc).__name__


def last_line(exc: BaseException) -> str:
    """``Type: the message's last line``: TensorFlow's, Keras' and most library
    messages end with the line that says what went wrong (a user's builder or
    loader that raises is reported so)."""
    lines = [line.strip() for line in str(exc).strip().splitlines() if line.strip()]
    # TensorFlow's op errors carry the op's internal name in {{...}} and [Op:...]
    text = re.sub(r"\{\{.*?\}\}|\[Op:.*", "", lines[-1]).strip() if lines else ""
    return f"{type(exc).__name__}: {text}"[:300] if text else type(exc).__name__


class LrbenchError(Exception):
    """A problem the user can fix; its message is one line."""


class GridError(LrbenchError):
    """A grid file that cannot be read or does not validate."""

    def __init__(self, source: str, field: str, message: str) -> None:
        self.source = source
        self.field = field
        self.message = message
        where = f"{source}: {field}" if field else source
        super().__init__(f"{where}: {message}")


class ParamError(LrbenchError):
    """A parameter (a dataclass field such as ``baseline_nights``) out of range.

    Library code names the field; the CLI names the option that set it.
    """

    def __init__(self, field: str, problem: str) -> None:
        self.field = field
        self.problem = problem
        super().__init__(f"{field}: {problem}")


class DataError(LrbenchError):
    """A dataset that cannot be found or loaded."""


class StoreError(LrbenchError):
    """A results directory that cannot be read or written."""


class FatalError(LrbenchError):
    """The sweep cannot go on: it stops at once, keeping the finished trials."""


class StoreUnreachable(FatalError, StoreError):
    """A results location that kept failing with I/O errors (a network fault,
    a busy server) after being tried again: nothing was moved, so running the
    same command later repeats nothing. Exits 1, like any ``FatalError``."""
