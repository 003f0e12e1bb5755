from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from harness.grid.specs import TrialSpec
from harness.store.records import TrialOutcome
from harness.trial.reuse import CACHE, reuse_key
from harness.trial.train import run_trial
from tests import helpers

# 1,000 images in batches of 100: 10 steps an epoch, three epochs, and a target no
# trial reaches early, so every run has the same 30 steps to compare.
SHORT = {"train_size": 1000, "max_epochs": 3, "budget_s": 3600, "check_every": 2}


def _spec(**changes: object) -> TrialSpec:
    return helpers.spec(**{**SHORT, **changes})


def fresh(spec: TrialSpec, data: object) -> TrialOutcome:
    CACHE.drop()
    out = run_trial(spec, data)
    assert not out.record.reused
    return out


# Every number of a curve point but its timing (elapsed_s).
CURVE_NUMBERS = (
    "step",
    "epoch",
    "examples",
    "lr",
    "train_loss",
    "train_acc",
    "running_acc",
    "recent_acc",
    "val_acc",
)


def numbers(out: TrialOutcome) -> list[tuple]:
    """The curve's points without their timing, for an exact comparison."""
    return [tuple(getattr(p, name) for name in CURVE_NUMBERS) for p in out.curve]


def assert_same(reused: TrialOutcome, fresh: TrialOutcome) -> None:
    """The same verdict and steps exactly, the same curve within float tolerance."""
    a, b = reused.record, fresh.record
    assert a.error is None and b.error is None, (a.error, b.error)
    assert (a.status, a.steps, a.steps_to_target, a.n_params) == (
        b.status,
        b.steps,
        b.steps_to_target,
        b.n_params,
    )
    assert len(reused.curve) == len(fresh.curve) >= 10
    for p, q in zip(reused.curve, fresh.curve, strict=True):
        assert (p.step, p.examples, p.epoch, p.lr) == (q.step, q.examples, q.epoch, q.lr)
        for name in ("train_loss", "train_acc", "running_acc", "recent_acc"):
            assert getattr(p, name) == pytest.approx(getattr(q, name), rel=1e-6, abs=1e-9), (
                p.step,
                name,
            )
        assert (p.val_acc is None) == (q.val_acc is None)
        if p.val_acc is not None:
            assert p.val_acc == pytest.approx(q.val_acc, rel=1e-6)


@pytest.mark.slow
@pytest.mark.parametrize(
    "setup",
    [
        {"optimizer": "adam"},  # slots and an iteration count
        {"optimizer": "momentum"},
        {"optimizer": "adagrad"},  # its accumulators start at 0.1, not 0
        {"optimizer": "rmsprop", "model": "keras_cnn", "width": 0.125},  # dropout
        # a user's builder: BatchNorm's moving statistics and Dropout's seed state
        {"optimizer": "adam", "model": "bn_dropout", "builder": "tests.problems:bn_dropout_net"},
    ],
    ids=lambda s: "-".join(str(v) for v in s.values()),
)
def test_a_reused_model_trains_exactly_like_a_fresh_one(mnist5k, setup):
    a = _spec(lr=0.003, **setup)
    b = _spec(lr=0.03, **setup)  # the same setup at another LR
    c = _spec(lr=0.003, seed=1, **setup)  # a seed the cached model has not seen
    fresh_a, fresh_c = fresh(a, mnist5k), fresh(c, mnist5k)

    CACHE.drop()
    first = run_trial(a, mnist5k)
    runs = [run_trial(spec, mnist5k) for spec in (b, a, c, a)]
    assert not first.record.reused
    assert all(out.record.reused for out in runs)
    assert runs[0].record.lr == 0.03 and runs[0].curve[0].lr == pytest.approx(0.03)
    assert_same(first, fresh_a)
    assert_same(runs[1], fresh_a)  # A after B
    assert_same(runs[2], fresh_c)  # a new seed on the reused model
    assert_same(runs[3], fresh_a)  # A after C


@pytest.mark.slow
def test_a_reused_model_at_another_lr_trains_bit_for_bit_like_a_fresh_one_at_that_lr(mnist5k):
    # The record's and the curve's lr come from the spec: only the optimizer and
    # the numbers it trains to show which rate a reused model really used.
    slow, quick = _spec(lr=0.001), _spec(lr=0.03)  # adam: 0.03 reaches 0.8 in ~2 epochs
    CACHE.drop()
    first = run_trial(slow, mnist5k)
    reused = run_trial(quick, mnist5k)
    assert not first.record.reused and reused.record.reused
    assert first.record.error is None and reused.record.error is None

    # the cached model's own rate is the second trial's, not the first's
    model = CACHE.take(quick)
    assert model is not None
    rate = np.asarray(model.optimizer.learning_rate)
    assert rate.dtype == np.float32 and rate == np.float32(0.03), rate
    assert int(np.asarray(model.optimizer.iterations)) == reused.record.steps

    # step by step the same numbers as a fresh build at that rate, to the bit
    at_quick = fresh(quick, mnist5k)
    assert numbers(reused) == numbers(at_quick)
    assert (reused.record.status, reused.record.steps) == (
        at_quick.record.status,
        at_quick.record.steps,
    )

    # and the two rates train clearly apart, so that comparison tells them apart: a
    # reused model left at 0.001 would fail it from the second check on
    pairs = list(zip(first.curve, reused.curve, strict=False))
    assert len(pairs) >= 10 and all(p.step == q.step for p, q in pairs)
    assert all(p.train_loss != q.train_loss for p, q in pairs[1:])
    assert pairs[-1][1].train_loss < 0.5 * pairs[-1][0].train_loss
    assert first.record.status.value == "budget" and reused.record.status.value == "reached"


@pytest.mark.slow
def test_a_different_setup_or_a_schedule_builds_afresh(mnist5k):
    CACHE.drop()
    assert not run_trial(_spec(max_epochs=1), mnist5k).record.reused
    assert run_trial(_spec(max_epochs=1, lr=0.1), mnist5k).record.reused
    other = _spec(max_epochs=1, optimizer_kwargs={"beta_1": 0.8})
    assert not run_trial(other, mnist5k).record.reused
    step = {"name": "step", "factor": 0.5, "epochs": 1.0}
    assert not run_trial(_spec(max_epochs=1, schedule=step), mnist5k).record.reused
    assert not run_trial(_spec(max_epochs=1), mnist5k).record.reused  # the schedule dropped it


@pytest.mark.slow
def test_a_failed_trial_drops_the_cached_model(mnist5k):
    CACHE.drop()
    run_trial(_spec(max_epochs=1), mnist5k)
    assert run_trial(helpers.failing(**SHORT), mnist5k).record.status.value == "error"
    assert not run_trial(_spec(max_epochs=1), mnist5k).record.reused


@pytest.mark.slow
def test_a_model_with_its_own_training_step_is_always_built_afresh(mnist5k):
    own = {"model": "own", "builder": "tests.problems:own_step_net"}
    CACHE.drop()
    first = run_trial(_spec(**own), mnist5k)
    again = run_trial(_spec(**own), mnist5k)
    assert first.record.error is None and not again.record.reused
    assert_same(again, first)


def test_the_key_ignores_lr_seed_and_stop_rule_but_not_the_setup():
    base = helpers.spec()
    assert reuse_key(base) == reuse_key(helpers.spec(lr=0.5, seed=3, max_epochs=9))
    for change in (
        {"optimizer": "gd"},
        {"optimizer_kwargs": {"beta_1": 0.8}},
        {"width": 2.0},
        {"batch_size": 50},
        {"train_size": 100},
        {"loss": "mse"},
        {"builder": "tests.problems:bn_dropout_net"},
    ):
        assert reuse_key(dataclasses.replace(base, **change)) != reuse_key(base), change
    assert reuse_key(helpers.spec(schedule={"name": "step", "factor": 0.5, "epochs": 1.0})) is None
