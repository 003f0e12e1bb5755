"""The stop rule of a trial, fed by Keras' batch logs: reached, budget, diverged.

``StopTracker`` is plain Python: ``harness.trial.train`` feeds it from a Keras
callback, and the tests feed it a synthetic log stream with a fake clock.

At a batch end Keras' ``logs["acc"]`` is the accuracy since the start of the
epoch, so ``round(acc * n)`` recovers the exact number of correct examples
since the epoch began (see ``harness.trial.train``). Summing over epochs gives the
``running`` accuracy since step 0, and differences between checks give the
``recent`` accuracy over the last ``window`` steps.

After the target, divergence and budget checks, a pruning rule
(``harness.rules.pruning``, the stop rule's ``prune``) may end a trial whose
optimistic projection cannot reach the target: status ``budget``, ``pruned``.

The clock starts at the end of the first step (``startup_s`` is everything
before it) and pauses while validating (``val_s``). With the ``val`` metric
every check validates (each ``val_every`` steps) and the target is read off
the validation accuracy, as AlgoPerf's time to a validation target is.

A step ends when its loss and accuracy are on the host: the clock is read
after they are converted to Python floats (on a GPU, the step may still run
after Keras hands back its result). A trial whose model could not be run on
each batch shape before ``fit`` (``warmed=False``, see ``harness.trial.train``)
has two steps timed apart when the training set is not a multiple of the
batch size: the first short batch's (it compiles the step for that shape) and
the full batch's after it (TensorFlow, having seen two shapes, traces the step
again for any batch size, and XLA compiles that trace for the full batch once
more). Both count in ``startup_s``, not on the clock; validation between them
stays in ``val_s``.
"""

from __future__ import annotations

import bisect
import math
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Any

from harness.grid.schedules import schedule_lr
from harness.grid.specs import TrialSpec
from harness.rules.pruning import PruneDecision, prune_check
from harness.store.records import CurvePoint, TrialStatus


def steps_per_epoch(n_train: int, batch_size: int) -> int:
    """Updates per pass over the training examples (the last batch may be short)."""
    return math.ceil(n_train / batch_size)


def default_check_every(per_epoch: int) -> int:
    """Steps between checks: at least 10 checks an epoch."""
    return max(1, per_epoch // 10)


def on_host(logs: dict[str, Any]) -> dict[str, Any]:
    """``logs`` with its ``loss`` and ``acc`` as Python floats: reading a
    device tensor waits until the step that computed it has finished."""
    return {**logs, **{k: float(logs[k]) for k in ("loss", "acc") if k in logs}}


@dataclass
class _Totals:
    """Cumulative counts at a check, for windowed differences."""

    step: int = 0
    examples: int = 0
    correct: int = 0
    loss_sum: float = 0.0


class StopTracker:
    """Checks the stop rule of ``spec`` every ``check_every`` steps and keeps the curve.

    ``batch_end`` and ``epoch_end`` take Keras' logs (``loss``, ``acc``: means
    since the epoch began) and return True when training must stop; ``status``
    then says why. ``validate()`` returns the validation accuracy (timed
    apart); ``clock()`` returns seconds (``time.perf_counter`` by default).
    ``warmed`` says whether the model already ran on every batch shape before
    training; when it did not, the first short batch's step and the next one
    are timed apart (``untimed_steps``; their seconds go to ``startup_s``).
    """

    def __init__(
        self,
        spec: TrialSpec,
        n_train: int,
        trial_start: float,
        validate: Callable[[], float],
        clock: Callable[[], float] = time.perf_counter,
        warmed: bool = True,
    ) -> None:
        self.spec, self.rule, self.n_train = spec, spec.stop, n_train
        self.trial_id = spec.trial_id
        self.trial_start, self._validate, self.clock = trial_start, validate, clock
        self.per_epoch = steps_per_epoch(n_train, spec.batch_size)
        # the steps of the first short batch (the last of epoch 1) and of the
        # full batch after it, when their compiles fall in training (none when
        # the model was warmed or every batch is full; step 1 is untimed anyway)
        short = n_train % spec.batch_size != 0 and self.per_epoch > 1
        first = self.per_epoch
        self.untimed_steps = (first, first + 1) if short and not warmed else ()
        # the clock and the validation seconds at the end of the step before them
        self._before_untimed = (0.0, 0.0)
        # the "val" metric validates at every check: val_every sets their interval
        val_every = self.rule.val_every if self.rule.metric == "val" else 0
        self.every = val_every or self.rule.check_every or default_check_every(self.per_epoch)
        self.status: TrialStatus | None = None
        self.curve: list[CurvePoint] = []
        self.checks: list[_Totals] = [_Totals()]  # step 0
        self.check_steps: list[int] = [0]  # checks' steps, for bisecting the window
        self.epoch_base = _Totals()  # totals at the start of this epoch
        self.epoch_batches = 0
        self.step = 0
        self.t0 = 0.0  # end of the first step
        self.paused = 0.0
        self.startup_s = 0.0
        self.val_s = 0.0
        self.initial_loss = math.nan
        self.reached: CurvePoint | None = None
        self.pruned: PruneDecision | None = None

    # -- clock
    def elapsed(self) -> float:
        """Timed training seconds since the end of the first step."""
        return self.clock() - self.t0 - self.paused if self.t0 else 0.0

    def validate(self) -> float:
        """The validation accuracy, with the clock paused while it runs."""
        start = self.clock()
        acc = self._validate()
        spent = self.clock() - start
        self.val_s += spent
        self.paused += spent
        return acc

    # -- Keras' hooks
    def batch_end(self, logs: dict[str, Any]) -> bool:
        """After each update; True when training must stop."""
        logs = on_host(logs)  # the step is over once its result is on the host
        self.step += 1
        self.epoch_batches += 1
        if self.step == 1:
            self.t0 = self.clock()
            self.startup_s = self.t0 - self.trial_start
            self.initial_loss = logs["loss"]
            self.check(logs)
        else:
            if self.step in self.untimed_steps:
                clock, val_s = self._before_untimed
                untimed = self.clock() - clock - (self.val_s - val_s)
                self.startup_s += untimed
                self.paused += untimed
            if self.step % self.every == 0 or self.elapsed() >= self.rule.budget_s:
                self.check(logs)
        if self.step + 1 in self.untimed_steps:
            self._before_untimed = (self.clock(), self.val_s)
        return self.status is not None

    def epoch_end(self, epoch: int, logs: dict[str, Any]) -> bool:
        """After each epoch (0-based ``epoch``): validate; True when training must stop."""
        if self.curve[-1].step != self.step:
            self.check(on_host(logs))
        self.epoch_base = self.checks[-1]
        self.epoch_batches = 0
        if self.status is None:
            if self.curve[-1].val_acc is None:
                self.curve[-1] = replace(self.curve[-1], val_acc=self.validate())
            if epoch + 1 >= self.rule.max_epochs:
                self.status = TrialStatus.BUDGET
        return self.status is not None

    def finish(self) -> TrialStatus:
        """The final status once training ended (``budget`` when ``max_epochs``
        ran out between checks); the last point gets a validation accuracy."""
        if self.status is None:
            self.status = TrialStatus.BUDGET
        if self.curve and self.curve[-1].val_acc is None:
            self.curve[-1] = replace(self.curve[-1], val_acc=self.validate())
        return self.status

    # -- the stop rule
    def check(self, logs: dict[str, Any]) -> None:
        """Add a curve point at this step and apply the stop rule."""
        rule = self.rule
        acc, loss_mean = float(logs["acc"]), float(logs["loss"])  # on the host first
        elapsed = self.elapsed()
        n = min(self.epoch_batches * self.spec.batch_size, self.n_train)
        base = self.epoch_base
        now = _Totals(
            step=self.step,
            examples=base.examples + n,
            correct=base.correct + int(round(acc * n)),
            loss_sum=base.loss_sum + loss_mean * n,
        )
        last = self.checks[-1]
        loss = (now.loss_sum - last.loss_sum) / max(1, now.examples - last.examples)
        # the latest check at least `window` steps back (step 0 until the window fills)
        i = bisect.bisect_right(self.check_steps, self.step - rule.window)
        start = self.checks[max(0, i - 1)]
        recent = (now.correct - start.correct) / max(1, now.examples - start.examples)
        running = now.correct / max(1, now.examples)
        # validation pauses the clock; ``elapsed`` was read before it
        val_acc = self.validate() if rule.metric == "val" else None
        metric = {"running": running, "val": val_acc}.get(rule.metric, recent)
        assert metric is not None
        self.checks.append(now)
        self.check_steps.append(now.step)
        point = CurvePoint(
            trial_id=self.trial_id,
            step=self.step,
            epoch=now.examples / self.n_train,
            examples=now.examples,
            elapsed_s=elapsed,
            # the LR this step used: the schedule's formula, which equals the
            # Keras schedule's value (tests/harness/grid/test_schedules.py) and costs no op
            lr=schedule_lr(self.spec.schedule, self.spec.lr, self.per_epoch, self.step - 1),
            train_loss=loss,
            train_acc=metric,
            running_acc=running,
            recent_acc=recent,
            val_acc=val_acc,
        )
        self.curve.append(point)
        if not math.isfinite(loss) or loss > rule.diverge_factor * self.initial_loss:
            self.status = TrialStatus.DIVERGED
        elif metric >= rule.target:
            self.reached = point
            self.status = TrialStatus.REACHED
        elif elapsed >= rule.budget_s:
            self.status = TrialStatus.BUDGET
        elif rule.prune:
            self.pruned = prune_check(rule.prune, self.curve, rule)
            if self.pruned is not None:  # the verdict the full budget would give
                self.status = TrialStatus.BUDGET
