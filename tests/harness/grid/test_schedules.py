from __future__ import annotations

import math

import numpy as np
import pytest

from harness.errors import GridError
from harness.grid.parse import parse_grid
from harness.grid.resolved import ResolvedGrid
from harness.grid.schedules import parse_schedule, schedule_label, schedule_lr
from harness.grid.specs import is_constant
from harness.trial import train as trial
from harness.trial.keras_schedules import build_schedule
from harness.trial.reuse import CACHE
from harness.trial.train import run_trial
from tests import helpers

LR = 0.1
PER_EPOCH = 40  # 4,000 images / batch 100
STEPS = [0, 1, 7, 39, 40, 41, 79, 80, 150, 399, 400, 401, 1000, 2500]


def parsed(value):
    return parse_schedule(value, "g.toml", "schedule[0]")


# The formulas, written out independently of harness.grid.schedules.
EXPECTED = {
    "constant": ("constant", lambda t: LR),
    "step": (
        {"name": "step", "factor": 0.5, "epochs": 1},
        lambda t: LR * 0.5 ** (t // 40),
    ),
    "exponential": (
        {"name": "exponential", "factor": 0.1, "steps": 100},
        lambda t: LR * 0.1 ** (t / 100),
    ),
    "time": ({"name": "time", "k": 2.0, "epochs": 1}, lambda t: LR / (1 + 2.0 * t / 40)),
    "linear": (
        {"name": "linear", "end_factor": 0.1, "steps": 400},
        lambda t: LR - (LR - LR * 0.1) * min(t, 400) / 400,
    ),
    "warmup": (
        {"name": "warmup", "steps": 40, "start_factor": 0.1},
        lambda t: LR * (0.1 + 0.9 * t / 40) if t < 40 else LR,
    ),
    "warmup_then_step": (
        {"name": "warmup", "steps": 40, "then": {"name": "step", "factor": 0.5, "steps": 100}},
        lambda t: LR * t / 40 if t < 40 else LR * 0.5 ** ((t - 40) // 100),
    ),
    "cyclical": (
        {"name": "cyclical", "max_factor": 5, "steps": 100},
        # up from LR to 5 LR over 100 steps, down over the next 100, repeat
        lambda t: LR + 4 * LR * (1 - abs((t % 200) - 100) / 100),
    ),
    "cosine": (
        {"name": "cosine", "steps": 400, "alpha": 0.1},
        lambda t: LR * (0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * min(t, 400) / 400))),
    ),
    "cosine_restarts": (
        {"name": "cosine", "steps": 100, "restarts": True, "t_mul": 2.0, "m_mul": 0.5},
        # cycles of 100, 200, 400 steps starting at 0, 100, 300, 700, peaks LR, LR/2, LR/4
        lambda t: _restart(t),
    ),
}


def _restart(t):
    start, length, peak = 0, 100, LR
    while t >= start + length:
        start, length, peak = start + length, length * 2, peak * 0.5
    return peak * 0.5 * (1 + math.cos(math.pi * (t - start) / length))


@pytest.mark.parametrize("case", list(EXPECTED))
def test_each_schedule_gives_its_formula_in_python_and_in_keras(case):
    value, formula = EXPECTED[case]
    schedule = parsed(value)
    expected = [formula(t) for t in STEPS]
    plain = [schedule_lr(schedule, LR, PER_EPOCH, t) for t in STEPS]
    np.testing.assert_allclose(plain, expected, rtol=1e-9)
    built = build_schedule(schedule, LR, PER_EPOCH)
    if is_constant(schedule):
        assert built == LR
        return
    keras_values = [float(np.asarray(built(t))) for t in STEPS]
    np.testing.assert_allclose(keras_values, expected, rtol=2e-5, atol=1e-9)


def test_defaults_are_filled_and_labels_name_what_differs():
    s = parsed("step")
    assert s == {"name": "step", "factor": 0.5, "epochs": 1.0}
    assert schedule_label(s) == "step(epochs=1)"
    assert schedule_label(parsed("constant")) == "constant"
    w = parsed({"name": "warmup", "steps": 50, "then": {"name": "cosine", "epochs": 2}})
    assert schedule_label(w) == "warmup(steps=50, then=cosine(epochs=2))"
    c = parsed({"name": "cosine", "restarts": True})
    assert schedule_label(c) == "cosine(epochs=10, restarts=true)"


@pytest.mark.parametrize(
    ("value", "field", "message"),
    [
        ("cosin", "schedule[0].name", "unknown schedule 'cosin'; allowed: constant, step"),
        ({"name": "step", "factr": 0.5}, "schedule[0].factr", "allowed: name, factor, epochs"),
        ({"name": "step", "factor": -1}, "schedule[0].factor", "must be > 0"),
        ({"name": "step", "epochs": 1, "steps": 10}, "schedule[0].steps", "not both"),
        ({"name": "step", "epochs": 0}, "schedule[0].epochs", "must be > 0"),
        ({"name": "cyclical", "max_factor": 0.5}, "schedule[0].max_factor", "must be > 1"),
        ({"name": "cosine", "restarts": "yes"}, "schedule[0].restarts", "true or false"),
        ({"name": "warmup", "then": "nope"}, "schedule[0].then.name", "unknown schedule"),
        ({"name": "constant", "epochs": 1}, "schedule[0].epochs", "allowed: name"),
        (3, "schedule[0]", "schedule name or a table"),
    ],
)
def test_bad_schedules_name_the_field(value, field, message):
    with pytest.raises(GridError) as info:
        parsed(value)
    assert info.value.field == field and message in str(info.value)


def test_schedule_axis_multiplies_trials_and_keeps_constant_ids():
    base = {"models": ["tiny_cnn"], "optimizers": ["adam"], "lr": [0.1, 1.0]}
    plain = ResolvedGrid.fixed(parse_grid(base, "g.toml"))
    both = ResolvedGrid.fixed(parse_grid({**base, "schedule": ["constant", "cosine"]}, "g.toml"))
    assert len(both.expand()) == 2 * len(plain.expand())
    constant_ids = {t.trial_id for t in plain.expand()}
    assert constant_ids < {t.trial_id for t in both.expand()}
    # a grid without schedules has the digest it had before the axis existed
    assert "schedules" in plain.to_json()
    constant = ResolvedGrid.fixed(parse_grid({**base, "schedule": "constant"}, "g.toml"))
    assert plain.digest == constant.digest
    assert plain.digest != both.digest


@pytest.mark.slow
@pytest.mark.parametrize(
    "value",
    [
        {"name": "step", "factor": 0.5, "steps": 20},
        {"name": "warmup", "steps": 30, "then": {"name": "cyclical", "steps": 20}},
    ],
)
def test_a_trial_with_a_schedule_records_its_lr_in_the_curve(mnist5k, value):
    schedule = parsed(value)
    spec = helpers.reaching(lr=0.01, check_every=5, schedule=schedule, target_acc=0.85)
    out = run_trial(spec, mnist5k)
    assert out.record.status.value == "reached", out.record.error
    assert out.record.schedule == schedule_label(schedule)
    lrs = [p.lr for p in out.curve]
    keras_schedule = build_schedule(schedule, 0.01, PER_EPOCH)  # what the optimizer used
    expected = [float(np.asarray(keras_schedule(p.step - 1))) for p in out.curve]
    np.testing.assert_allclose(lrs, expected, rtol=1e-5)
    assert len(set(np.round(lrs, 9))) > 2  # it did change along the way


# 1,000 images in batches of 100 (10 steps an epoch), three epochs, and a target no
# trial reaches: every run has the same 30 steps, checked at step 1 and every 2 steps.
SHORT = {
    "train_size": 1000,
    "max_epochs": 3,
    "budget_s": 3600,
    "check_every": 2,
    "target_acc": 0.99,
}


def numbers(out):
    """A curve's points without their timing (elapsed_s), for an exact comparison."""
    return [
        (p.step, p.epoch, p.examples, p.lr, p.train_loss, p.train_acc, p.running_acc,
         p.recent_acc, p.val_acc)
        for p in out.curve
    ]  # fmt: skip


@pytest.mark.slow
def test_a_schedule_trial_after_others_follows_its_own_schedule_in_its_optimizer(
    mnist5k, monkeypatch
):
    built = []  # each trial's freshly built model, to read its optimizer afterwards
    build = trial.build_compiled
    monkeypatch.setattr(trial, "build_compiled", lambda *a: built.append(build(*a)) or built[-1])
    halving = parsed({"name": "step", "factor": 0.5, "steps": 10})
    cycling = parsed({"name": "warmup", "steps": 10, "then": {"name": "cyclical", "steps": 5}})
    constant = helpers.spec(lr=0.01, **SHORT)
    first = helpers.spec(lr=0.01, schedule=halving, **SHORT)
    second = helpers.spec(lr=0.03, schedule=cycling, **SHORT)

    CACHE.drop()
    runs = [run_trial(spec, mnist5k) for spec in (constant, first, second)]
    assert [out.record.error for out in runs] == [None] * 3
    # the constant trial's cached model is not taken: a schedule is traced into the step
    assert [out.record.reused for out in runs] == [False] * 3 and len(built) == 3
    assert [out.record.steps for out in runs] == [30] * 3

    # each optimizer's own rate, at each check's update, is its trial's schedule's
    for spec, out, model in zip((first, second), runs[1:], built[1:], strict=True):
        optimizer = model.optimizer
        assert int(np.asarray(optimizer.iterations)) == 30
        ends = float(np.asarray(optimizer.learning_rate))  # the rate of a next step
        assert ends == pytest.approx(schedule_lr(spec.schedule, spec.lr, 10, 30), rel=1e-5)
        for p in out.curve:
            t = p.step - 1  # the iteration count before that step's update
            optimizer.iterations.assign(t)
            own = float(np.asarray(optimizer.learning_rate))
            assert own == pytest.approx(schedule_lr(spec.schedule, spec.lr, 10, t), rel=1e-5)
            assert own == pytest.approx(p.lr, rel=1e-5), p.step
    lrs = [[p.lr for p in out.curve] for out in runs]
    assert lrs[0] == [0.01] * 16 and len(set(lrs[1])) == 3 and len(set(lrs[2])) > 5

    # step by step the same numbers as a fresh run of the same trial, to the bit
    CACHE.drop()
    alone = run_trial(second, mnist5k)
    assert numbers(runs[2]) == numbers(alone)
    # and the rate paths train apart, so that comparison tells them apart: the
    # halving one shares the constant one's first 10 steps (both at 0.01), then not
    losses = [[p.train_loss for p in out.curve] for out in runs]
    assert [p.step for p in runs[0].curve[:7]] == [1, 2, 4, 6, 8, 10, 12]
    assert losses[0][:6] == losses[1][:6]
    assert all(x != y for x, y in zip(losses[0][6:], losses[1][6:], strict=True))
    for other in losses[:2]:
        assert all(x != y for x, y in zip(other[1:], losses[2][1:], strict=True))
