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
dataset (``harness.store``); the suggestion rules are in ``analysis.finder``.
"""

from __future__ import annotations

import math
import time
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from typing import Any

from harness import sysinfo
from harness.data import Dataset
from harness.errors import LrbenchError
from harness.grid import GridSpec, _digest


@dataclass(frozen=True)
class FinderParams:
    """How the LR ramps and when the test stops."""

    start_lr: float = 1e-7
    end_lr: float = 10.0
    num_steps: int = 300
    beta: float = 0.98  # EMA weight of the past in the smoothed loss
    stop_factor: float = 4.0  # stop once the smoothed loss passes this times its best

    def check(self) -> None:
        """Raise ``LrbenchError`` naming the option for values that cannot work."""
        problems = [
            ("--start", self.start_lr > 0, f"must be > 0, got {self.start_lr:g}"),
            (
                "--end",
                self.end_lr > self.start_lr,
                f"must be above --start ({self.start_lr:g}), got {self.end_lr:g}",
            ),
            ("--steps", self.num_steps >= 10, f"must be >= 10, got {self.num_steps}"),
            ("--beta", 0 <= self.beta < 1, f"must be in [0, 1), got {self.beta:g}"),
            ("--stop-factor", self.stop_factor > 1, f"must be > 1, got {self.stop_factor:g}"),
        ]
        for option, ok, message in problems:
            if not ok:
                raise LrbenchError(f"{option}: {message}")

    def lr_at(self, step: int) -> float:
        """The LR of update ``step`` (0-based): ``start * (end / start) ** (step / (N - 1))``."""
        return self.start_lr * (self.end_lr / self.start_lr) ** (step / (self.num_steps - 1))


@dataclass(frozen=True)
class FinderSpec:
    """One range test: a setup of a grid, a seed, and the ramp."""

    sweep: str
    dataset: str
    train_size: int | None
    model: str
    width: float
    model_kwargs: dict[str, Any]
    optimizer: str
    optimizer_kwargs: dict[str, Any]
    loss: str
    batch_size: int
    seed: int
    params: FinderParams = field(default_factory=FinderParams)

    @property
    def finder_id(self) -> str:
        """A stable id: the hash of everything but the grid's name."""
        config = {k: v for k, v in asdict(self).items() if k != "sweep"}
        return _digest(config)[:16]

    @property
    def label(self) -> str:
        """``optimizer {kwargs}`` and the setup where it is not the default."""
        text = self.optimizer
        if self.optimizer_kwargs:
            text += " " + ", ".join(f"{k}={v}" for k, v in sorted(self.optimizer_kwargs.items()))
        return text


@dataclass(frozen=True)
class FinderPoint:
    """One update of a range test."""

    step: int  # 1-based update count
    lr: float  # the LR this update used
    batch_loss: float  # the loss of this update's batch
    smoothed_loss: float  # bias-corrected EMA of the batch losses so far


@dataclass(frozen=True)
class FinderOutcome:
    """A finished range test: its spec, its curve, and why it stopped."""

    spec: FinderSpec
    points: list[FinderPoint]
    stop_reason: str  # "end" (ramp done), "diverged" (passed stop_factor x best), "nan"
    n_params: int
    started_at: str
    wall_s: float
    device: str = ""
    host: str = ""
    versions: dict[str, str] = field(default_factory=dict)

    def rows(self) -> list[dict[str, Any]]:
        """One flat row per point, the run's fields repeated (the ``finder`` table)."""
        import json

        s = self.spec
        run = {
            "finder_id": s.finder_id,
            "sweep": s.sweep,
            "dataset": s.dataset,
            "train_size": s.train_size,
            "model": s.model,
            "width": s.width,
            "n_params": self.n_params,
            "model_kwargs": json.dumps(s.model_kwargs, sort_keys=True),
            "optimizer": s.optimizer,
            "optimizer_kwargs": json.dumps(s.optimizer_kwargs, sort_keys=True),
            "loss": s.loss,
            "batch_size": s.batch_size,
            "seed": s.seed,
            **asdict(s.params),
            "stop_reason": self.stop_reason,
            "started_at": datetime.fromisoformat(self.started_at),
            "wall_s": self.wall_s,
            "host": self.host,
            "device": self.device,
            "versions": json.dumps(self.versions, sort_keys=True),
        }
        return [{**run, **asdict(p)} for p in self.points]


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
                raise LrbenchError(
                    f"--optimizer: {name!r} is not in {grid.source}; "
                    f"its optimizers: {', '.join(dict.fromkeys(names))}"
                )
        wanted = {n.lower() for n in optimizers}
        chosen = [o for o in chosen if o.name in wanted]
    runs: dict[str, FinderSpec] = {}
    for ds in grid.datasets:
        for model in grid.models:
            for width in model.widths:
                for loss in grid.losses:
                    for bs in grid.batch_sizes:
                        for opt in chosen:
                            spec = FinderSpec(
                                sweep=grid.name,
                                dataset=ds.name,
                                train_size=ds.train_size,
                                model=model.name,
                                width=width,
                                model_kwargs=dict(model.kwargs),
                                optimizer=opt.name,
                                optimizer_kwargs=dict(opt.kwargs),
                                loss=loss,
                                batch_size=bs,
                                seed=grid.seeds[0] if seed is None else seed,
                                params=params,
                            )
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
    import keras

    from harness.models import build_optimizer

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
        import keras

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


def run_finder(spec: FinderSpec, data: Dataset, *, cpus: float = 1.0) -> FinderOutcome:
    """Build the setup's model (seeded), run the range test on ``data``."""
    from harness.models import build_loss, build_model, output_activation
    from harness.trial import configure_threads, make_dataset

    start = time.perf_counter()
    started_at = datetime.now(UTC).isoformat(timespec="microseconds")
    threads = configure_threads(cpus)
    import keras

    keras.utils.set_random_seed(spec.seed)
    data = data.head(spec.train_size)
    # Full batches only, so every update's loss is over the same number of examples.
    batch = min(spec.batch_size, len(data.x_train))
    data = data.head(len(data.x_train) // batch * batch)
    model = build_model(spec.model, spec.width, spec.model_kwargs)
    loss = build_loss(spec.loss, output_activation(spec.model, spec.model_kwargs))
    points, reason = lr_range_test(
        model,
        spec.optimizer,
        spec.optimizer_kwargs,
        loss,
        make_dataset(data, batch, spec.seed, threads),
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
