"""Learning-rate schedules: the ``schedule`` grid axis.

A schedule is a plain dict (what the grid, the trial id and the manifest hold):
``{"name": "step", "factor": 0.5, "epochs": 1.0}``. The swept ``lr`` is its
base (peak) learning rate; every other rate is a factor of it, so one schedule
runs at every LR of the axis. Periods are given in ``epochs`` or in ``steps``
(one of the two) and turned into steps when the trial knows its epoch length.

``parse_schedule`` validates a grid entry (no TensorFlow);
``harness.trial.keras_schedules.build_schedule`` turns the dict into a Keras
``LearningRateSchedule`` (Keras' own classes where one exists); ``schedule_lr``
is the same schedule as a plain formula, for the docs and the tests. See ``docs/grids.md``.
"""

from __future__ import annotations

import math
from typing import Any

from harness.errors import GridError
from harness.grid.specs import CONSTANT_SCHEDULE as CONSTANT

# name -> (its parameters and their defaults, the default period, a one-line formula)
# The period is the key "epochs" or "steps"; t is the training step.
SCHEDULES: dict[str, tuple[dict[str, Any], dict[str, float] | None, str]] = {
    "constant": ({}, None, "lr"),
    "step": ({"factor": 0.5}, {"epochs": 1.0}, "lr * factor ** floor(t / period)"),
    "exponential": ({"factor": 0.5}, {"epochs": 1.0}, "lr * factor ** (t / period)"),
    "time": ({"k": 1.0}, {"epochs": 1.0}, "lr / (1 + k * t / period)"),
    "linear": (
        {"end_factor": 0.01},
        {"epochs": 10.0},
        "lr * (1 - (1 - end_factor) * min(t, period) / period)",
    ),
    "warmup": (
        {"start_factor": 0.0, "then": CONSTANT},
        {"steps": 100.0},
        "lr * (start_factor + (1 - start_factor) * t / period) while t < period, "
        "then the `then` schedule at t - period",
    ),
    "cyclical": (
        {"max_factor": 4.0},
        {"epochs": 2.0},
        "triangular between lr and lr * max_factor; period is half a cycle",
    ),
    "cosine": (
        {"alpha": 0.0, "restarts": False, "t_mul": 2.0, "m_mul": 1.0},
        {"epochs": 10.0},
        "lr * (alpha + (1 - alpha) * (1 + cos(pi * min(t, period) / period)) / 2); "
        "with restarts, cycle i lasts period * t_mul**i and peaks at lr * m_mul**i",
    ),
}
PERIOD_KEYS = ("epochs", "steps")


def _error(source: str, path: str, message: str) -> GridError:
    return GridError(source, path, message)


def parse_schedule(value: Any, source: str, path: str) -> dict[str, Any]:
    """A validated schedule dict, every parameter filled in, from a grid entry (a
    bare name or a table with ``name``). Raises ``GridError`` naming the field."""
    if isinstance(value, str):
        value = {"name": value}
    if not isinstance(value, dict):
        raise _error(source, path, f"must be a schedule name or a table, got {value!r}")
    name = value.get("name")
    if not isinstance(name, str):
        raise _error(source, f"{path}.name", f"is required; schedules: {', '.join(SCHEDULES)}")
    if name not in SCHEDULES:
        raise _error(
            source, f"{path}.name", f"unknown schedule {name!r}; allowed: {', '.join(SCHEDULES)}"
        )
    params, period, _ = SCHEDULES[name]
    allowed = ("name", *params, *(PERIOD_KEYS if period else ()))
    for key in value:
        if key not in allowed:
            raise _error(
                source, f"{path}.{key}", f"unknown key for {name}; allowed: {', '.join(allowed)}"
            )
    out: dict[str, Any] = {"name": name}
    for key, default in params.items():
        given = value.get(key, default)
        where = f"{path}.{key}"
        if key == "then":
            out[key] = parse_schedule(given, source, where)
        elif isinstance(default, bool):
            if not isinstance(given, bool):
                raise _error(source, where, f"must be true or false, got {given!r}")
            out[key] = given
        else:
            out[key] = _number(given, source, where)
    _check_ranges(out, source, path)
    if period:
        given_keys = [k for k in PERIOD_KEYS if k in value]
        if len(given_keys) > 1:
            raise _error(source, f"{path}.steps", "give the period in epochs or in steps, not both")
        key = given_keys[0] if given_keys else next(iter(period))
        length = _number(value.get(key, period.get(key)), source, f"{path}.{key}")
        if not length > 0:
            raise _error(source, f"{path}.{key}", f"must be > 0, got {length:g}")
        out[key] = length
    return out


def _number(value: Any, source: str, where: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise _error(source, where, f"must be a number, got {value!r}")
    if not math.isfinite(value):
        raise _error(source, where, f"must be a finite number, got {value!r}")
    return float(value)


def _check_ranges(s: dict[str, Any], source: str, path: str) -> None:
    checks = {
        "factor": (lambda v: v > 0, "> 0"),
        "k": (lambda v: v >= 0, ">= 0"),
        "end_factor": (lambda v: 0 <= v <= 1, "in [0, 1]"),
        "start_factor": (lambda v: 0 <= v <= 1, "in [0, 1]"),
        "max_factor": (lambda v: v > 1, "> 1"),
        "alpha": (lambda v: 0 <= v <= 1, "in [0, 1]"),
        "t_mul": (lambda v: v > 0, "> 0"),
        "m_mul": (lambda v: v > 0, "> 0"),
    }
    for key, (ok, allowed) in checks.items():
        if key in s and not ok(s[key]):
            raise _error(source, f"{path}.{key}", f"must be {allowed}, got {s[key]:g}")


def schedule_label(schedule: dict[str, Any]) -> str:
    """Short text naming a schedule: its name, its period, and the parameters
    that differ from their defaults: ``step(epochs=1)``,
    ``warmup(steps=50, then=cosine(epochs=2))``."""
    name = schedule["name"]
    params, _, _ = SCHEDULES[name]
    parts = [f"{k}={schedule[k]:g}" for k in PERIOD_KEYS if k in schedule]
    for key, default in params.items():
        value = schedule.get(key, default)
        if key == "then":
            parts.append(f"then={schedule_label(value)}")
        elif value != default:
            parts.append(f"{key}={str(value).lower() if isinstance(value, bool) else f'{value:g}'}")
    return f"{name}({', '.join(parts)})" if parts else name


def period_steps(schedule: dict[str, Any], steps_per_epoch: int) -> float:
    """A schedule's period in steps."""
    if "steps" in schedule:
        return float(schedule["steps"])
    return float(schedule["epochs"]) * steps_per_epoch


def schedule_lr(schedule: dict[str, Any], lr: float, steps_per_epoch: int, step: float) -> float:
    """The learning rate a schedule gives at ``step`` (0 = the first update):
    the formula behind ``keras_schedules.build_schedule``, in plain Python."""
    name = schedule["name"]
    if name == "constant":
        return lr
    p = period_steps(schedule, steps_per_epoch)
    t = float(step)
    if name == "step":
        return lr * schedule["factor"] ** math.floor(t / p)
    if name == "exponential":
        return lr * schedule["factor"] ** (t / p)
    if name == "time":
        return lr / (1 + schedule["k"] * t / p)
    if name == "linear":
        return lr * (1 - (1 - schedule["end_factor"]) * min(t, p) / p)
    if name == "warmup":
        if t < p:
            sf = schedule["start_factor"]
            return lr * (sf + (1 - sf) * t / p)
        return schedule_lr(schedule["then"], lr, steps_per_epoch, t - p)
    if name == "cyclical":
        x = abs(t / p - 2 * math.floor(1 + t / (2 * p)) + 1)
        return lr + (lr * schedule["max_factor"] - lr) * max(0.0, 1 - x)
    if name == "cosine":
        alpha = schedule["alpha"]
        peak = lr
        if schedule["restarts"]:
            t_mul, m_mul = schedule["t_mul"], schedule["m_mul"]
            while t >= p:  # walk to the cycle that holds t
                t -= p
                p *= t_mul
                peak *= m_mul
        frac = min(t, p) / p
        return peak * (alpha + (1 - alpha) * 0.5 * (1 + math.cos(math.pi * frac)))
    raise ValueError(f"unknown schedule {name!r}")
