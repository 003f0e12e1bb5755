"""One trial: build the model, fit it with Keras, and apply the stop rule.

``run_trial`` is a plain function (no Ray): the sweep's Ray Tune trainable and
the serial loop of ``benchmarks/overhead.py`` both call it. A trial whose setup
matches the previous one in its process trains that trial's compiled model,
reset to exactly the fresh model's state (``harness.trial.reuse``; ``reused`` in its
record); any other trial clears the Keras session and builds afresh.

Timing. The clock starts at the end of the first training step, once the model
is built and that step's graph is traced and compiled; everything before is
``startup_s``. Validation runs with the clock paused (``val_s``). So
``time_to_target_s`` is pure training time. The first step's update counts as
step 1. A step ends when its loss and accuracy are on the host.

Every batch shape compiles before the clock. When the training set is not a
multiple of the batch size, each epoch ends with a short batch, a second
shape. Keras traces its step once for all batch sizes (the batch dimension is
left unknown), so without XLA the short step costs what any step costs; under
XLA (``jit_compile``, Keras' choice on a GPU) it compiles once per shape, and
the first short batch would compile again on the clock, about as long as the
first step, but only in a trial that built a fresh model. So a fresh model
under XLA with a short last batch first trains one step on a full batch and
one on the short batch (``warm_up``, through ``fit`` itself), and is then
reset to its fresh state (``harness.trial.reuse``), bit for bit. A reused model was
warmed by the fresh trial that built it (the same setup, so the same shapes).
Either way no trial compiles on the clock, and the warm-up is in
``startup_s``. A model whose class has its own training step cannot be reset
exactly, so it is not warmed: its first short-batch step, and the step after
it, are timed apart instead (counted in ``startup_s``, see ``harness.rules.tracker``).

The target metric. At a batch end Keras' ``logs["acc"]`` is the accuracy since
the start of the epoch. Accuracy is a count of correct examples over a count of
examples, so ``round(acc * n)`` recovers the exact number of correct examples
since the epoch began. Summing over epochs gives the ``running`` accuracy since
step 0 (how the reference experiment measured its target), and differences
between checks give the ``recent`` accuracy over the last ``window`` steps.
"""

from __future__ import annotations

import gc
import itertools
import json
import math
import os
import statistics
import sys
import time
import traceback
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

import numpy as np

from harness.errors import FatalError, one_line
from harness.grid.specs import TrialSpec
from harness.lazy import lazy
from harness.rules.tracker import StopTracker, steps_per_epoch
from harness.store.records import CurvePoint, TrialOutcome, TrialRecord, TrialStatus
from harness.trial import reuse, sysinfo
from harness.trial.data import Dataset, scale_uint8
from harness.trial.models import (
    accuracy_metric,
    build_loss,
    build_model,
    build_optimizer,
    output_activation,
)
from harness.trial.quiet import import_keras_quietly, import_tensorflow_quietly

if TYPE_CHECKING:
    import keras
    import tensorflow as tf

    from harness.trial import keras_schedules
else:
    keras = lazy("keras", before=import_keras_quietly)
    tf = lazy("tensorflow", before=import_tensorflow_quietly)
    # its schedules subclass Keras' at its top
    keras_schedules = lazy("harness.trial.keras_schedules", before=import_keras_quietly)

VAL_BATCH = 2000
_threads: int | None = None
_frozen = False


def configure_threads(cpus: float) -> int:
    """Size TensorFlow's thread pools from this trial's CPU share, once per process.

    TensorFlow ignores ``OMP_NUM_THREADS`` and refuses a change once it has
    started, so the first trial in a process decides; the sweep asks the same
    CPU count for every trial, so later trials match it.
    """
    global _threads
    n = max(1, int(cpus))
    if _threads is None:
        try:
            tf.config.threading.set_intra_op_parallelism_threads(n)
            tf.config.threading.set_inter_op_parallelism_threads(n)
        except RuntimeError:  # TensorFlow already started in this process
            # what it runs with: 0 is TensorFlow's default, every core
            n = tf.config.threading.get_intra_op_parallelism_threads() or os.cpu_count() or n
        _threads = n
    return _threads


def _callback(tracker: StopTracker) -> Any:
    """A Keras callback that feeds ``tracker`` and stops training when it says so."""

    class StopRuleCallback(keras.callbacks.Callback):
        def on_train_batch_end(self, batch: int, logs: dict | None = None) -> None:
            if tracker.batch_end(logs or {}):
                self.model.stop_training = True

        def on_epoch_end(self, epoch: int, logs: dict | None = None) -> None:
            if tracker.epoch_end(epoch, logs or {}):
                self.model.stop_training = True

    return StopRuleCallback()


def _val_accuracy(data: Dataset) -> Any:
    """A function: model -> accuracy on the validation set."""
    labels = data.val_labels()

    def validate(model: Any) -> float:
        preds = [
            np.asarray(
                model.predict_on_batch(data.model_inputs(data.x_val[i : i + VAL_BATCH]))
            ).argmax(axis=1)
            for i in range(0, len(data.x_val), VAL_BATCH)
        ]
        return float(np.mean(np.concatenate(preds) == labels))

    return validate


def sparse_labels(data: Dataset, loss: str) -> bool:
    """True when a trial trains on integer labels (the sparse loss and metric);
    MSE compares with one-hot rows, so its integer labels are expanded per batch."""
    return data.sparse and loss != "mse"


def make_dataset(data: Dataset, batch_size: int, seed: int, threads: int, loss: str = "") -> Any:
    """The shuffled, batched training stream (reshuffled each epoch, seeded).

    The arrays go in as they are stored; each batch is scaled (uint8 inputs)
    and, for MSE on integer labels, one-hot expanded here, so no float copy of
    the whole dataset is ever made."""
    ds = tf.data.Dataset.from_tensor_slices((data.x_train, data.y_train))
    ds = ds.shuffle(len(data.x_train), seed=seed, reshuffle_each_iteration=True)
    ds = ds.batch(batch_size)
    one_hot = data.sparse and not sparse_labels(data, loss)
    if data.scaled or one_hot:
        classes = data.num_classes

        def prepare(x: Any, y: Any) -> tuple[Any, Any]:
            if data.scaled:
                x = scale_uint8(x)
            if one_hot:
                y = tf.one_hot(tf.cast(y, tf.int32), classes)
            return x, y

        ds = ds.map(prepare)
    ds = ds.prefetch(tf.data.AUTOTUNE)
    options = tf.data.Options()
    options.threading.private_threadpool_size = threads
    return ds.with_options(options)


def run_trial(
    spec: TrialSpec, data: Dataset, *, cpus: float = 1.0, gpus: float = 0.0
) -> TrialOutcome:
    """Train one trial to its stop rule. Exceptions become an ``error`` record."""
    wall_start = time.perf_counter()
    model = reuse.CACHE.take(spec)
    reused = model is not None
    # harness overhead: in wall_s, not in startup_s. A reused model needs its
    # session, so only a fresh build clears it (the cache already let go).
    _release_keras_state(clear_session=not reused)
    trial_start = time.perf_counter()
    started_at = datetime.now(UTC).isoformat(timespec="microseconds")
    tracker: StopTracker | None = None
    n_params: int | None = None
    device = ""
    fields: dict[str, Any] = {}
    try:
        threads = configure_threads(cpus)
        import_keras_quietly()  # Keras' modules too are in place before they are frozen
        _freeze_imports()
        device = sysinfo.tf_device(gpus > 0)
        if gpus > 0 and device.startswith("cpu"):
            raise FatalError(
                f"this trial asks for {gpus:g} GPU but TensorFlow sees none on {sysinfo.host()}; "
                "install lrbench[gpu] there, or set [resources] gpus = 0"
            )
        data = data.head(spec.train_size)
        # every batch shape compiled before the clock (see "Timing." above)
        shaped, warmed = True, False
        if model is None:
            keras.utils.set_random_seed(spec.seed)
            model = build_compiled(spec, data)
            reuse.CACHE.keep(spec, model)
            if needs_warm_up(model, len(data.x_train), spec.batch_size):
                warmed = shaped = reuse.CACHE.resettable(model)
                if warmed:
                    warm_up(model, data, spec, threads)
        if reused or warmed:
            # the fresh state: for a reused model, and a fresh one after its warm-up
            reuse.CACHE.reset(
                spec,
                model,
                lambda: build_model(spec.model_ref, data.input_shape, data.num_classes),
            )
        n_params = int(model.count_params())
        validate = _val_accuracy(data)
        tracker = StopTracker(
            spec, len(data.x_train), trial_start, lambda: validate(model), warmed=shaped
        )
        model.fit(
            make_dataset(data, spec.batch_size, spec.seed, threads, spec.loss),
            epochs=spec.stop.max_epochs,
            shuffle=False,
            verbose=0,
            callbacks=[_callback(tracker)],
        )
        status = tracker.finish()
    except FatalError:
        reuse.CACHE.drop()
        raise
    except Exception as exc:  # the trial's own failure: recorded, and the sweep goes on
        reuse.CACHE.drop()  # the model's state is unknown: the next trial builds afresh
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
        if tracker.pruned is not None:
            fields.update(
                pruned=True,
                pruned_at_s=tracker.pruned.elapsed_s,
                pruned_at_step=tracker.pruned.step,
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
        reused=reused,
        input_shape=json.dumps(list(data.input_shape)),
        num_classes=data.num_classes,
        wall_s=time.perf_counter() - wall_start,
        **fields,
    )
    return TrialOutcome(record=record, curve=curve)


def needs_warm_up(model: Any, n_train: int, batch_size: int) -> bool:
    """True when a step on the short last batch would compile on the clock: the
    training set is not a multiple of the batch size and the model runs under
    XLA (``jit_compile``, Keras' choice on a GPU). Without XLA, Keras traces
    its step once for every batch size (the batch dimension is left unknown),
    and the short step costs what any step costs."""
    short = n_train > batch_size and n_train % batch_size != 0
    return short and bool(getattr(model, "jit_compile", False))


def warm_up(model: Any, data: Dataset, spec: TrialSpec, threads: int) -> None:
    """Train ``model`` one step on each batch shape the trial will see: a full
    batch and, when the training set is not a multiple of the batch size, the
    short last one (a set smaller than a batch has only that one).

    It goes through ``fit`` and the trial's own input pipeline, on the first
    examples, so the training function and iterator that ``fit`` traces and
    (under XLA) compiles per shape are the ones the trial then uses. The
    updates are undone by the caller (``reuse.CACHE.reset``).
    """
    n, batch = len(data.x_train), spec.batch_size
    rows = min(n, batch) + (n % batch if n > batch else 0)
    model.fit(
        make_dataset(data.head(rows), batch, spec.seed, threads, spec.loss),
        epochs=1,
        shuffle=False,
        verbose=0,
    )


def build_compiled(spec: TrialSpec, data: Dataset) -> Any:
    """A fresh model for ``spec`` on ``data`` (its input shape and class count),
    compiled with the trial's optimizer, loss and accuracy metric (the RNGs
    seeded by the caller)."""
    model = build_model(spec.model_ref, data.input_shape, data.num_classes)
    n_train = len(data.x_train)
    lr = keras_schedules.build_schedule(
        spec.schedule, spec.lr, steps_per_epoch(n_train, spec.batch_size)
    )
    sparse = sparse_labels(data, spec.loss)
    model.compile(
        optimizer=build_optimizer(spec.optimizer, lr, spec.optimizer_kwargs),
        loss=build_loss(spec.loss, output_activation(model), sparse),
        metrics=[accuracy_metric(sparse)],
    )
    return model


def _release_keras_state(clear_session: bool = True) -> None:
    """Free earlier trials' graphs, datasets and iterators in this process.

    A reused Ray worker runs many trials. Left to the garbage collector, a
    finished trial's TensorFlow objects linger and can hold runtime resources
    that the next trial's first step waits on (seen as 20-80 s stalls with no
    CPU use); collecting them before each trial keeps startups steady. A trial
    that reuses the cached model (``harness.trial.reuse``) keeps the Keras session
    but still collects: ten trials' garbage collected at once took 6 s.
    """
    if clear_session and "keras" in sys.modules:
        sys.modules["keras"].backend.clear_session(free_memory=False)
    gc.collect()


def _freeze_imports() -> None:
    """Exempt the objects alive now (TensorFlow's and Keras' modules: some
    400,000) from garbage collection, once per process.

    Each trial's ``gc.collect()`` then walks only what trials made since:
    2 ms instead of 250 ms.
    """
    global _frozen
    if not _frozen:
        gc.collect()
        gc.freeze()
        _frozen = True


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
