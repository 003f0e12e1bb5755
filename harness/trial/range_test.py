"""The LR range test (Smith 2017): one short run with an exponentially rising LR.

``lr_range_test`` trains a compiled-from-scratch copy of the optimizer on a
model for at most ``num_steps`` updates while the learning rate rises from
``start_lr`` to ``end_lr`` (a Keras ``ExponentialDecay`` with a rate above one),
records each update's loss, smooths it with a bias-corrected exponential moving
average, and stops early once the smoothed loss passes ``stop_factor`` times
its best or turns NaN. The model's initial weights are restored afterwards.

``finder_runs`` turns a grid into one run per setup (dataset, model, width,
loss, batch size, optimizer); ``run_finder`` runs one on a dataset. The CLI's
``find-lr`` stores each run's curve in the results directory's ``finder``
dataset (``harness.store.results``); the suggestion rules are in ``analysis.finder.suggest``.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import asdict
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from harness import userref
from harness.errors import ParamError
from harness.grid.specs import FinderParams, FinderSpec, GridSpec
from harness.lazy import lazy
from harness.store.records import FinderOutcome, FinderPoint
from harness.store.results import Store
from harness.trial import sysinfo
from harness.trial.data import Dataset, load_grid_data
from harness.trial.models import (
    build_loss,
    build_model,
    build_optimizer,
    check_optimizers,
    output_activation,
)
from harness.trial.quiet import import_keras_quietly
from harness.trial.train import configure_threads, make_dataset, sparse_labels

if TYPE_CHECKING:
    import keras
else:
    keras = lazy("keras", before=import_keras_quietly)


def check_params(params: FinderParams) -> None:
    """Raise ``ParamError`` naming the first field of ``params`` that cannot work."""
    for name, problem in params.problems():
        raise ParamError(name, problem)


def finder_runs(
    grid: GridSpec,
    params: FinderParams,
    optimizers: list[str] | None = None,
    seed: int | None = None,
) -> list[FinderSpec]:
    """One range test per setup of ``grid`` (the LR, schedule and seed axes
    dropped), for the optimizers named (all of the grid's by default)."""
    chosen = list(grid.optimizers)
    if optimizers:
        names = [o.name for o in grid.optimizers]
        for name in optimizers:
            if name.lower() not in names:
                raise ParamError(
                    "optimizers",
                    f"{name!r} is not in {grid.source}; "
                    f"its optimizers: {', '.join(dict.fromkeys(names))}",
                )
        wanted = {n.lower() for n in optimizers}
        chosen = [o for o in chosen if o.name in wanted]
    seed = grid.seeds[0] if seed is None else seed
    runs: dict[str, FinderSpec] = {}
    for setup in grid.setups(tuple(chosen), seed):
        spec = FinderSpec(**asdict(setup), params=params)
        runs.setdefault(spec.finder_id, spec)
    return list(runs.values())


def lr_range_test(
    model: Any,
    optimizer: str,
    optimizer_kwargs: dict[str, Any],
    loss: Any,
    dataset: Any,
    batch_size: int,
    steps_per_epoch: int,
    params: FinderParams,
) -> tuple[list[FinderPoint], str]:
    """Run the range test on ``model`` (built, any weights) with a fresh
    optimizer and the batches of ``dataset`` (a ``tf.data.Dataset`` of
    ``steps_per_epoch`` full batches of ``batch_size``, re-iterated each epoch).
    Returns the points and the stop reason; the model's weights are the ones it
    came with when this returns (or raises)."""
    ramp = keras.optimizers.schedules.ExponentialDecay(
        params.start_lr,
        decay_steps=params.num_steps - 1,
        decay_rate=params.end_lr / params.start_lr,
    )
    initial = model.get_weights()
    tracker = _RangeTracker(params, ramp, batch_size)
    try:
        model.compile(
            optimizer=build_optimizer(optimizer, ramp, optimizer_kwargs),
            loss=loss,
        )
        model.fit(
            dataset,
            epochs=math.ceil(params.num_steps / steps_per_epoch) + 1,
            shuffle=False,
            verbose=0,
            callbacks=[tracker.callback()],
        )
    finally:
        model.set_weights(initial)
    return tracker.points, tracker.stop_reason or "end"


class _RangeTracker:
    """Per-update loss, its EMA, and the stop rule of the range test.

    Keras reports the mean loss since the start of the epoch at each batch end
    (weighted by batch size), so one update's own loss is recovered from the
    difference of two running sums.
    """

    def __init__(self, params: FinderParams, ramp: Any, batch_size: int) -> None:
        self.params, self.ramp, self.batch_size = params, ramp, batch_size
        self.points: list[FinderPoint] = []
        self.stop_reason: str | None = None
        self.avg = 0.0
        self.best = math.inf
        self.epoch_sum = 0.0
        self.epoch_examples = 0

    def update(self, step: int, mean_loss: float) -> bool:
        """Record update ``step`` (1-based) from Keras' running mean loss; True
        when the test should stop."""
        examples = self.epoch_examples + self.batch_size
        total = mean_loss * examples
        loss = (total - self.epoch_sum) / self.batch_size
        self.epoch_sum, self.epoch_examples = total, examples
        beta = self.params.beta
        self.avg = beta * self.avg + (1 - beta) * loss
        smoothed = self.avg / (1 - beta**step)
        lr = float(self.ramp(step - 1))
        self.points.append(FinderPoint(step, lr, loss, smoothed))
        if not math.isfinite(smoothed):
            self.stop_reason = "nan"
        elif smoothed > self.params.stop_factor * self.best:
            self.stop_reason = "diverged"
        elif step >= self.params.num_steps:
            self.stop_reason = "end"
        self.best = min(self.best, smoothed)
        return self.stop_reason is not None

    def callback(self) -> Any:
        tracker = self

        class RangeCallback(keras.callbacks.Callback):
            def __init__(self) -> None:
                super().__init__()
                self.step = 0

            def on_epoch_begin(self, epoch: int, logs: dict | None = None) -> None:
                tracker.epoch_sum, tracker.epoch_examples = 0.0, 0

            def on_train_batch_end(self, batch: int, logs: dict | None = None) -> None:
                self.step += 1
                if tracker.update(self.step, float((logs or {})["loss"])):
                    self.model.stop_training = True

        return RangeCallback()


def run_finder(
    spec: FinderSpec, data: Dataset, *, cpus: float = 1.0, dirs: list[str] | None = None
) -> FinderOutcome:
    """Build the setup's model (seeded; a user's builder imported with ``dirs``
    on the path), run the range test on ``data``."""
    start = time.perf_counter()
    started_at = datetime.now(UTC).isoformat(timespec="microseconds")
    threads = configure_threads(cpus)

    keras.utils.set_random_seed(spec.seed)
    data = data.head(spec.train_size)
    # Full batches only, so every update's loss is over the same number of examples.
    batch = min(spec.batch_size, len(data.x_train))
    data = data.head(len(data.x_train) // batch * batch)
    model = build_model(spec.model_ref, data.input_shape, data.num_classes, dirs or ())
    loss = build_loss(spec.loss, output_activation(model), sparse_labels(data, spec.loss))
    points, reason = lr_range_test(
        model,
        spec.optimizer,
        spec.optimizer_kwargs,
        loss,
        make_dataset(data, batch, spec.seed, threads, spec.loss),
        batch,
        len(data.x_train) // batch,
        spec.params,
    )
    return FinderOutcome(
        spec=spec,
        points=points,
        stop_reason=reason,
        n_params=int(model.count_params()),
        started_at=started_at,
        wall_s=time.perf_counter() - start,
        device=sysinfo.tf_device(False),
        host=sysinfo.host(),
        versions=sysinfo.versions(),
    )


def run_finders(
    grid: GridSpec,
    runs: list[FinderSpec],
    out: str,
    data_dir: str | None = None,
    on_done: Callable[[int, int, FinderOutcome], None] | None = None,
) -> int:
    """Run the range tests of ``runs`` not yet stored in ``out``, storing each as
    it ends; ``on_done(i, n, outcome)`` after each. Returns how many were
    already stored."""
    store = Store(out)
    done = store.finder_ids()
    todo = [r for r in runs if r.finder_id not in done]
    if todo:
        check_optimizers(grid.source, grid.optimizers)  # a keyword typo fails here, in one line
    datasets = load_grid_data(grid, {r.dataset for r in todo}, data_dir)
    dirs = userref.search_dirs(grid.source)
    for i, run in enumerate(todo, 1):
        outcome = run_finder(run, datasets[run.dataset], dirs=dirs)
        store.write_finder(outcome)
        if on_done is not None:
            on_done(i, len(todo), outcome)
    return len(runs) - len(todo)
