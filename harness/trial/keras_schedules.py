"""A grid's learning-rate schedule as Keras runs it (``build_schedule``), and the
two schedules Keras does not ship: a linear warm-up in front of any schedule,
and Smith's triangular cyclical rate (Smith 2017, "Cyclical Learning Rates for
Training Neural Networks").

Imported only when a trial is built (it imports Keras).
"""

from __future__ import annotations

from typing import Any

import keras
from keras import ops

from harness.grid.schedules import period_steps
from harness.grid.specs import is_constant


@keras.saving.register_keras_serializable(package="lrbench")
class Warmup(keras.optimizers.schedules.LearningRateSchedule):
    """Rise linearly from ``start_factor * lr`` to ``lr`` over ``warmup_steps``,
    then follow ``then`` (a schedule or a constant), whose clock starts at the
    end of the warm-up."""

    def __init__(
        self,
        learning_rate: float,
        warmup_steps: float,
        start_factor: float = 0.0,
        then: Any = None,
        name: str = "Warmup",
    ) -> None:
        super().__init__()
        self.learning_rate = float(learning_rate)
        self.warmup_steps = float(warmup_steps)
        self.start_factor = float(start_factor)
        self.then = self.learning_rate if then is None else then
        self.name = name

    def __call__(self, step: Any) -> Any:
        t = ops.cast(step, "float32")
        rising = self.learning_rate * (
            self.start_factor + (1.0 - self.start_factor) * t / self.warmup_steps
        )
        if isinstance(self.then, keras.optimizers.schedules.LearningRateSchedule):
            after = self.then(ops.maximum(t - self.warmup_steps, 0.0))
        else:
            after = ops.cast(self.then, "float32")
        return ops.where(t < self.warmup_steps, rising, after)

    def get_config(self) -> dict[str, Any]:
        then = self.then
        if isinstance(then, keras.optimizers.schedules.LearningRateSchedule):
            then = keras.optimizers.schedules.serialize(then)
        return {
            "learning_rate": self.learning_rate,
            "warmup_steps": self.warmup_steps,
            "start_factor": self.start_factor,
            "then": then,
            "name": self.name,
        }

    @classmethod
    def from_config(cls, config: dict[str, Any]) -> Warmup:
        config = dict(config)
        if isinstance(config.get("then"), dict):
            config["then"] = keras.optimizers.schedules.deserialize(config["then"])
        return cls(**config)


@keras.saving.register_keras_serializable(package="lrbench")
class Triangular(keras.optimizers.schedules.LearningRateSchedule):
    """Smith's triangular cyclical learning rate: from ``learning_rate`` up to
    ``max_learning_rate`` in ``half_cycle_steps`` and back down, repeating."""

    def __init__(
        self,
        learning_rate: float,
        max_learning_rate: float,
        half_cycle_steps: float,
        name: str = "Triangular",
    ) -> None:
        super().__init__()
        self.learning_rate = float(learning_rate)
        self.max_learning_rate = float(max_learning_rate)
        self.half_cycle_steps = float(half_cycle_steps)
        self.name = name

    def __call__(self, step: Any) -> Any:
        t = ops.cast(step, "float32") / self.half_cycle_steps
        cycle = ops.floor(1.0 + t / 2.0)
        x = ops.abs(t - 2.0 * cycle + 1.0)
        rise = ops.maximum(0.0, 1.0 - x)
        return self.learning_rate + (self.max_learning_rate - self.learning_rate) * rise

    def get_config(self) -> dict[str, Any]:
        return {
            "learning_rate": self.learning_rate,
            "max_learning_rate": self.max_learning_rate,
            "half_cycle_steps": self.half_cycle_steps,
            "name": self.name,
        }


def build_schedule(schedule: dict[str, Any] | None, lr: float, steps_per_epoch: int) -> Any:
    """The learning rate to hand a Keras optimizer: ``lr`` itself for a constant
    schedule, else a ``keras.optimizers.schedules.LearningRateSchedule``."""
    if is_constant(schedule):
        return float(lr)
    assert schedule is not None
    ks = keras.optimizers.schedules
    name = schedule["name"]
    p = period_steps(schedule, steps_per_epoch)
    if name in ("step", "exponential"):
        return ks.ExponentialDecay(
            lr, decay_steps=p, decay_rate=schedule["factor"], staircase=name == "step"
        )
    if name == "time":
        return ks.InverseTimeDecay(lr, decay_steps=p, decay_rate=schedule["k"])
    if name == "linear":
        return ks.PolynomialDecay(
            lr, decay_steps=p, end_learning_rate=lr * schedule["end_factor"], power=1.0
        )
    if name == "cosine":
        if schedule["restarts"]:
            return ks.CosineDecayRestarts(
                lr,
                first_decay_steps=p,
                t_mul=schedule["t_mul"],
                m_mul=schedule["m_mul"],
                alpha=schedule["alpha"],
            )
        return ks.CosineDecay(lr, decay_steps=p, alpha=schedule["alpha"])
    if name == "warmup":
        return Warmup(
            lr,
            warmup_steps=p,
            start_factor=schedule["start_factor"],
            then=build_schedule(schedule["then"], lr, steps_per_epoch),
        )
    if name == "cyclical":
        return Triangular(lr, max_learning_rate=lr * schedule["max_factor"], half_cycle_steps=p)
    raise ValueError(f"unknown schedule {name!r}")
