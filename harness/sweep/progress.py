"""The live progress line of a sweep: trials done/total, counts by status, ETA."""

from __future__ import annotations

import sys
import time
from collections import Counter
from typing import Any

from ray.tune import Callback
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)

from harness.grid.schedules import schedule_label
from harness.grid.specs import is_constant
from harness.store.records import TrialStatus


class SweepProgress(Callback):
    """A Ray Tune callback that draws one progress line (a log line per trial when
    the output is not a terminal, as in CI or ``ray job`` logs)."""

    def __init__(self, total: int, done: int, counts: Counter[str]) -> None:
        self.total = total
        self.done = done
        self.counts = Counter({s.value: 0 for s in TrialStatus}) + counts
        self.live = sys.stderr.isatty()
        self.started = time.monotonic()
        self.ran = 0
        self._progress: Any = None
        self._task: Any = None

    def _text(self) -> str:
        return " ".join(f"{k} {v}" for k, v in self.counts.items())

    def setup(self, **info: Any) -> None:  # type: ignore[override]  # Tune passes keywords
        if self.live:
            self._progress = Progress(
                TextColumn("sweep"),
                BarColumn(),
                MofNCompleteColumn(),
                TextColumn("{task.fields[counts]}"),
                TextColumn("elapsed"),
                TimeElapsedColumn(),
                TextColumn("eta"),
                TimeRemainingColumn(),
                transient=False,
            )
            self._progress.start()
            self._task = self._progress.add_task(
                "sweep", total=self.total, completed=self.done, counts=self._text()
            )

    def grow(self, n: int) -> None:
        """Count ``n`` more trials to run (the frontier guard's rechecks)."""
        if n <= 0:
            return
        self.total += n
        if self._progress is not None:
            self._progress.update(self._task, total=self.total)

    def record(self, status: str, what: str) -> None:
        """Count one finished trial and redraw."""
        self.done += 1
        self.ran += 1
        self.counts[status] += 1
        if self._progress is not None:
            self._progress.update(self._task, completed=self.done, counts=self._text())
        else:
            elapsed = time.monotonic() - self.started
            left = self.total - self.done
            eta = elapsed / self.ran * left if self.ran else 0.0
            print(
                f"[{self.done}/{self.total}] {status:8s} {what} | {self._text()} | eta {eta:.0f}s",
                file=sys.stderr,
                flush=True,
            )

    def on_trial_complete(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
        result = trial.last_result or {}
        what = _describe(trial)
        if result.get("status") == TrialStatus.REACHED.value:
            what += f" in {result.get('time_to_target_s', 0):.2f}s"
        self.record(result.get("status", TrialStatus.ERROR.value), what)

    def on_trial_error(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
        self.record(TrialStatus.ERROR.value, f"{_describe(trial)} (worker failed)")

    def close(self) -> None:
        """Stop the live display."""
        if self._progress is not None:
            self._progress.stop()
            self._progress = None


def _describe(trial: Any) -> str:
    """``optimizer lr=... [schedule] model`` of a Ray Tune trial, for the progress output."""
    spec = trial.config.get("trial", {})
    schedule = spec.get("schedule")
    text = f"{spec.get('optimizer')} lr={spec.get('lr'):g}"
    if not is_constant(schedule):
        text += f" {schedule_label(schedule)}"
    return f"{text} {spec.get('model')}"
