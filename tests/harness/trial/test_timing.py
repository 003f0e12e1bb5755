"""Time to target is measured the same way for a fresh and a reused trial.

A training set that is not a multiple of the batch size ends each epoch with
a short batch: a second batch shape. Under XLA (Keras' ``jit_compile="auto"``
on a GPU) the train step is compiled once per shape, so the first short batch
costs a compile as long as the first step's. These tests force XLA on the
CPU, run real trials with such a short last batch, and check from the
recorded timings (``startup_s`` and the per-step clock of the curve) that no
compile falls inside the timed clock, whether the trial built its model or
reused a cached one.
"""

from __future__ import annotations

from typing import Any

import pytest

import harness.trial.train
from harness.store.records import TrialOutcome, TrialStatus
from harness.trial.reuse import CACHE
from harness.trial.train import run_trial
from tests import helpers

pytestmark = pytest.mark.slow

# 250 images in batches of 100: epochs of 100 + 100 + 50 images, so the short
# batch is every third step; a check at every step, so the curve times each step.
SHORT_LAST = {
    "model": "mlp",
    "train_size": 250,
    "check_every": 1,
    "window": 3,
    "target_acc": 0.9,
    "budget_s": 3600,
    "max_epochs": 20,
}


@pytest.fixture
def xla(monkeypatch: pytest.MonkeyPatch) -> Any:
    """Every model built by a trial compiles its steps with XLA, as Keras'
    ``jit_compile="auto"`` does on a GPU; the model cache is emptied before
    and after, so no other test gets an XLA model."""
    build = harness.trial.train.build_compiled

    def build_xla(spec: Any, data: Any) -> Any:
        model = build(spec, data)
        model.jit_compile = True
        return model

    monkeypatch.setattr(harness.trial.train, "build_compiled", build_xla)
    CACHE.drop()
    yield
    CACHE.drop()


def step_seconds(out: TrialOutcome) -> list[float]:
    """Seconds of each timed step, from the curve (a check at every step)."""
    steps = [p.step for p in out.curve]
    assert steps == list(range(1, len(steps) + 1))
    return [b.elapsed_s - a.elapsed_s for a, b in zip(out.curve, out.curve[1:], strict=False)]


def numbers(out: TrialOutcome) -> list[tuple]:
    """The curve without its timing."""
    return [
        (p.step, p.examples, p.train_loss, p.train_acc, p.running_acc, p.recent_acc, p.val_acc)
        for p in out.curve
    ]


def test_a_short_last_batch_compiles_before_the_clock_fresh_and_reused(mnist5k, xla):
    spec = helpers.spec(**SHORT_LAST)
    fresh = run_trial(spec, mnist5k)
    reused = run_trial(spec, mnist5k)
    a, b = fresh.record, reused.record
    assert a.error is None and b.error is None, (a.error, b.error)
    assert not a.reused and b.reused
    # the same training, to the bit: the same verdict at the same step
    assert a.status is b.status is TrialStatus.REACHED
    assert a.steps_to_target == b.steps_to_target > 3  # past the first short batch
    assert numbers(fresh) == numbers(reused)
    # A compile's cost: what the fresh trial compiled in its startup (at least
    # the full batch's step) and the reused one did not need to.
    compile_s = a.startup_s - b.startup_s
    steps = {"fresh": step_seconds(fresh), "reused": step_seconds(reused)}
    # no timed step of either trial carried a compile (the first short batch,
    # step 3, did in the fresh trial before its warm-up) ...
    assert max(max(s) for s in steps.values()) < compile_s / 5, (compile_s, steps)
    # ... so neither time to target holds one the other does not
    assert abs(a.time_to_target_s - b.time_to_target_s) < compile_s / 5, (compile_s, steps)


def test_a_model_with_its_own_step_times_its_first_short_batch_apart(mnist5k, xla):
    # not warmed (its step cannot be reset exactly), so steps 3 and 4 compile in training
    own_step = {"model": "own", "builder": "tests.problems:own_step_net"}
    own = helpers.spec(**{**SHORT_LAST, **own_step, "max_epochs": 2, "target_acc": 1.0})
    out = run_trial(own, mnist5k)
    r = out.record
    assert r.error is None and r.status is TrialStatus.BUDGET and r.steps == 6
    # startup holds three compiles (steps 1, 3 and 4: after two shapes, the
    # step is traced again for any batch size); no timed step holds one
    seconds = step_seconds(out)
    assert max(seconds) < r.startup_s / 5, (r.startup_s, seconds)
