"""One trial: build the model, fit it with Keras, and apply the stop rule.

``run_trial`` is a plain function (no Ray): the sweep's Ray Tune trainable and
the serial loop of ``benchmarks/overhead.py`` both call it.

Timing. The clock starts at the end of the first training step, once the model
is built and that step's graph is traced and compiled; everything before is
``startup_s``. Validation runs with the clock paused (``val_s``). So
``time_to_target_s`` is pure training time. The first step's update counts as
step 1.

The target metric. At a batch end Keras' ``logs["acc"]`` is the accuracy since
the start of the epoch. Accuracy is a count of correct examples over a count of
examples, so ``round(acc * n)`` recovers the exact number of correct examples
since the epoch began. Summing over epochs gives the ``running`` accuracy since
step 0 (how the reference experiment measured its target), and differences
between checks give the ``recent`` accuracy over the last ``window`` steps.
"""

from __future__ import annotations

import bisect
import itertools
import math
import os
import statistics
import time
import traceback
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from typing import Any

import numpy as np

from harness import sysinfo
from harness.data import Dataset
from harness.errors import one_line
from harness.grid import TrialSpec
from harness.models import build_loss, build_model, build_optimizer, output_activation
from harness.records import CurvePoint, TrialOutcome, TrialRecord, TrialStatus
from harness.schedules import build_schedule, schedule_lr

VAL_BATCH = 2000
_threads: int | None = None


def configure_threads(cpus: float) -> int:
    """Size TensorFlow's thread pools from this trial's CPU share, once per process.

    TensorFlow ignores ``OMP_NUM_THREADS`` and refuses a change once it has
    started, so the first trial in a process decides; the sweep asks the same
    CPU count for every trial, so later trials match it.
    """
    global _threads
    n = max(1, int(cpus))
    if _threads is None:
        import tensorflow as tf

        try:
            tf.config.threading.set_intra_op_parallelism_threads(n)
            tf.config.threading.set_inter_op_parallelism_threads(n)
        except RuntimeError:  # TensorFlow already started in this process
            n = tf.config.threading.get_intra_op_parallelism_threads() or n
        _threads = n
    return _threads


def steps_per_epoch(n_train: int, spec: TrialSpec) -> int:
    """Updates per pass over the training examples (the last batch may be short)."""
    return math.ceil(n_train / spec.batch_size)


def default_check_every(per_epoch: int) -> int:
    """Steps between checks: at least 10 checks an epoch."""
    return max(1, per_epoch // 10)


@dataclass
class _Totals:
    """Cumulative counts at a check, for windowed differences."""

    step: int = 0
    examples: int = 0
    correct: int = 0
    loss_sum: float = 0.0


def _make_tracker(spec: TrialSpec, n_train: int, trial_start: float, validate: Any) -> Any:
    """A Keras callback that checks the stop rule every ``check_every`` steps."""
    import keras

    trial_id = spec.trial_id
    per_epoch = steps_per_epoch(n_train, spec)
    every = spec.check_every or default_check_every(per_epoch)

    class Tracker(keras.callbacks.Callback):
        def __init__(self) -> None:
            super().__init__()
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

        # -- clock
        def elapsed(self) -> float:
            return time.perf_counter() - self.t0 - self.paused if self.t0 else 0.0

        def validate(self) -> float:
            start = time.perf_counter()
            acc = validate(self.model)
            spent = time.perf_counter() - start
            self.val_s += spent
            self.paused += spent
            return acc

        # -- Keras hooks
        def on_train_batch_end(self, batch: int, logs: dict | None = None) -> None:
            self.step += 1
            self.epoch_batches += 1
            if self.step == 1:
                self.t0 = time.perf_counter()
                self.startup_s = self.t0 - trial_start
                self.initial_loss = float(logs["loss"])
                self.check(logs)
            elif self.step % every == 0 or self.elapsed() >= spec.budget_s:
                self.check(logs)

        def on_epoch_end(self, epoch: int, logs: dict | None = None) -> None:
            if self.curve[-1].step != self.step:
                self.check(logs)
            self.epoch_base = self.checks[-1]
            self.epoch_batches = 0
            if self.status is None:
                self.curve[-1] = replace(self.curve[-1], val_acc=self.validate())
                if epoch + 1 >= spec.max_epochs:
                    self.stop(TrialStatus.BUDGET)

        # -- the stop rule
        def check(self, logs: dict) -> None:
            elapsed = self.elapsed()
            n = min(self.epoch_batches * spec.batch_size, n_train)
            base = self.epoch_base
            now = _Totals(
                step=self.step,
                examples=base.examples + n,
                correct=base.correct + int(round(float(logs["acc"]) * n)),
                loss_sum=base.loss_sum + float(logs["loss"]) * n,
            )
            last = self.checks[-1]
            loss = (now.loss_sum - last.loss_sum) / max(1, now.examples - last.examples)
            # the latest check at least `window` steps back (step 0 until the window fills)
            i = bisect.bisect_right(self.check_steps, self.step - spec.window)
            start = self.checks[max(0, i - 1)]
            recent = (now.correct - start.correct) / max(1, now.examples - start.examples)
            running = now.correct / max(1, now.examples)
            metric = running if spec.target_metric == "running" else recent
            self.checks.append(now)
            self.check_steps.append(now.step)
            point = CurvePoint(
                trial_id=trial_id,
                step=self.step,
                epoch=now.examples / n_train,
                examples=now.examples,
                elapsed_s=elapsed,
                # the LR this step used: the schedule's formula, which equals the
                # Keras schedule's value (tests/test_schedules.py) and costs no op
                lr=schedule_lr(spec.schedule, spec.lr, per_epoch, self.step - 1),
                train_loss=loss,
                train_acc=metric,
                running_acc=running,
                recent_acc=recent,
            )
            self.curve.append(point)
            if not math.isfinite(loss) or loss > spec.diverge_factor * self.initial_loss:
                self.stop(TrialStatus.DIVERGED)
            elif metric >= spec.target_acc:
                self.reached = point
                self.stop(TrialStatus.REACHED)
            elif elapsed >= spec.budget_s:
                self.stop(TrialStatus.BUDGET)

        def stop(self, status: TrialStatus) -> None:
            self.status = status
            self.model.stop_training = True

    return Tracker()


def _val_accuracy(data: Dataset) -> Any:
    """A function: model -> accuracy on the validation set."""
    labels = data.y_val.argmax(axis=1)

    def validate(model: Any) -> float:
        preds = [
            np.asarray(model.predict_on_batch(data.x_val[i : i + VAL_BATCH])).argmax(axis=1)
            for i in range(0, len(data.x_val), VAL_BATCH)
        ]
        return float(np.mean(np.concatenate(preds) == labels))

    return validate


def make_dataset(data: Dataset, batch_size: int, seed: int, threads: int) -> Any:
    """The shuffled, batched training stream (reshuffled each epoch, seeded)."""
    import tensorflow as tf

    ds = tf.data.Dataset.from_tensor_slices((data.x_train, data.y_train))
    ds = ds.shuffle(len(data.x_train), seed=seed, reshuffle_each_iteration=True)
    ds = ds.batch(batch_size).prefetch(tf.data.AUTOTUNE)
    options = tf.data.Options()
    options.threading.private_threadpool_size = threads
    return ds.with_options(options)


def run_trial(
    spec: TrialSpec, data: Dataset, *, cpus: float = 1.0, gpus: float = 0.0
) -> TrialOutcome:
    """Train one trial to its stop rule. Exceptions become an ``error`` record."""
    wall_start = time.perf_counter()
    _release_keras_state()  # harness overhead: in wall_s, not in startup_s
    trial_start = time.perf_counter()
    started_at = datetime.now(UTC).isoformat(timespec="microseconds")
    tracker: Any = None
    n_params: int | None = None
    device = ""
    fields: dict[str, Any] = {}
    try:
        threads = configure_threads(cpus)
        import keras

        device = sysinfo.tf_device(gpus > 0)
        keras.utils.set_random_seed(spec.seed)
        data = data.head(spec.train_size)
        model = build_model(spec.model, spec.width, spec.model_kwargs)
        n_params = int(model.count_params())
        activation = output_activation(spec.model, spec.model_kwargs)
        lr = build_schedule(spec.schedule, spec.lr, steps_per_epoch(len(data.x_train), spec))
        model.compile(
            optimizer=build_optimizer(spec.optimizer, lr, spec.optimizer_kwargs),
            loss=build_loss(spec.loss, activation),
            metrics=[keras.metrics.CategoricalAccuracy(name="acc")],
        )
        validate = _val_accuracy(data)
        tracker = _make_tracker(spec, len(data.x_train), trial_start, validate)
        model.fit(
            make_dataset(data, spec.batch_size, spec.seed, threads),
            epochs=spec.max_epochs,
            shuffle=False,
            verbose=0,
            callbacks=[tracker],
        )
        if tracker.status is None:  # max_epochs ran out between checks
            tracker.status = TrialStatus.BUDGET
        if tracker.curve and tracker.curve[-1].val_acc is None:
            tracker.curve[-1] = replace(tracker.curve[-1], val_acc=tracker.validate())
        status = tracker.status
    except Exception as exc:
        status = TrialStatus.ERROR
        fields["error"] = one_line(exc)
        fields["traceback"] = traceback.format_exc()
    curve: list[CurvePoint] = tracker.curve if tracker is not None else []
    if tracker is not None and curve:
        last = curve[-1]
        fields.update(
            steps=last.step,
            epochs=last.epoch,
            train_s=last.elapsed_s,
            startup_s=tracker.startup_s,
            val_s=tracker.val_s,
            final_train_acc=last.train_acc,
            final_train_loss=_finite(last.train_loss),
            best_train_acc=max(p.train_acc for p in curve),
            final_val_acc=last.val_acc,
            step_time_s=median_step_time(curve),
        )
        hit = tracker.reached
        if status is TrialStatus.REACHED and hit is not None:
            fields.update(
                time_to_target_s=hit.elapsed_s,
                steps_to_target=hit.step,
                epochs_to_target=hit.epoch,
                examples_to_target=hit.examples,
            )
    record = TrialRecord.from_spec(
        spec,
        status,
        n_params=n_params,
        started_at=started_at,
        host=sysinfo.host(),
        worker_pid=os.getpid(),
        device=device,
        cpus=cpus,
        gpus=gpus,
        versions=sysinfo.versions(),
        wall_s=time.perf_counter() - wall_start,
        **fields,
    )
    return TrialOutcome(record=record, curve=curve)


def _release_keras_state() -> None:
    """Free earlier trials' graphs, datasets and iterators in this process.

    A reused Ray worker runs many trials. Left to the garbage collector, a
    finished trial's TensorFlow objects linger and can hold runtime resources
    that the next trial's first step waits on (seen as 20-80 s stalls with no
    CPU use); collecting them before each trial keeps startups steady.
    """
    import gc
    import sys

    if "keras" in sys.modules:
        sys.modules["keras"].backend.clear_session(free_memory=False)
    gc.collect()


def median_step_time(curve: list[CurvePoint]) -> float | None:
    """Median training seconds per step, over the intervals between checks (each
    spans ``check_every`` steps; validation is outside the timed clock)."""
    rates = [
        (b.elapsed_s - a.elapsed_s) / (b.step - a.step)
        for a, b in itertools.pairwise(curve)
        if b.step > a.step
    ]
    return statistics.median(rates) if rates else None


def _finite(x: float) -> float | None:
    return x if math.isfinite(x) else None
