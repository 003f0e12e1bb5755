from __future__ import annotations

import math

import numpy as np
import pytest

from harness.rules.tracker import default_check_every
from harness.store.records import TrialStatus
from harness.trial.train import run_trial
from tests import helpers

pytestmark = pytest.mark.slow


def test_reaches_target_and_records_time_steps_epochs_examples(mnist5k):
    out = run_trial(helpers.reaching(), mnist5k)
    r = out.record
    assert r.status is TrialStatus.REACHED, r.error
    every = default_check_every(40)  # 4,000 images / batch 100 = 40 steps an epoch
    assert r.steps_to_target % every == 0
    assert r.examples_to_target == r.steps_to_target * 100
    assert r.epochs_to_target == pytest.approx(r.examples_to_target / 4000)
    assert 0 < r.time_to_target_s == r.train_s < r.budget_s
    assert r.startup_s > 0 and r.wall_s >= r.startup_s + r.train_s + r.val_s
    assert r.final_train_acc >= 0.8 and r.best_train_acc >= r.final_train_acc
    assert r.n_params == 3300 and r.device.startswith("cpu")
    assert r.final_val_acc is not None and r.final_val_acc > 0.6
    # the curve: increasing steps and clock, the target metric at each check
    steps = [p.step for p in out.curve]
    assert steps == sorted(steps) and steps[0] == 1 and steps[-1] == r.steps_to_target
    assert all(b.elapsed_s >= a.elapsed_s for a, b in zip(out.curve, out.curve[1:], strict=False))
    assert out.curve[-1].train_acc == r.final_train_acc
    assert out.curve[-1].val_acc == r.final_val_acc
    assert all(p.lr == pytest.approx(0.01) for p in out.curve)


def test_runs_out_of_budget_within_one_check(mnist5k):
    # the clock's stop: a hopeless trial, a short time budget and epochs to spare
    out = run_trial(helpers.out_of_budget(budget_s=1.5, max_epochs=10_000), mnist5k)
    r = out.record
    assert r.status is TrialStatus.BUDGET
    assert r.time_to_target_s is None and r.steps_to_target is None
    assert r.epochs < r.max_epochs  # the clock stopped it, not the epochs
    # it stopped at the first check past the budget: the check before was still
    # inside it, at most one check interval (4 steps here) earlier
    before, last = out.curve[-2], out.curve[-1]
    assert before.elapsed_s < 1.5 <= last.elapsed_s == r.train_s
    assert 0 < last.step - before.step <= default_check_every(40)
    assert r.final_train_acc < 0.5


def test_max_epochs_is_a_budget_stop(mnist5k):
    out = run_trial(helpers.out_of_budget(max_epochs=2, train_size=500), mnist5k)
    assert out.record.status is TrialStatus.BUDGET
    assert out.record.epochs == pytest.approx(2.0)
    # validation at each epoch end (the stop here is the second epoch's end)
    assert [p.step for p in out.curve if p.val_acc is not None] == [5, 10]


def test_diverges_and_stops_at_the_first_check(mnist5k):
    out = run_trial(helpers.diverging(check_every=3), mnist5k)
    r = out.record
    assert r.status is TrialStatus.DIVERGED
    assert r.steps <= 3  # stopped at once, not at the end of the budget
    last = out.curve[-1].train_loss
    assert not math.isfinite(last) or last > 5 * out.curve[0].train_loss


def test_an_exception_is_recorded_as_error(mnist5k):
    r = run_trial(helpers.failing(), mnist5k).record
    assert r.status is TrialStatus.ERROR
    assert "no_such_keyword" in r.error and "\n" not in r.error
    assert "Traceback" in r.traceback


def test_running_accuracy_is_cumulative_since_step_zero(mnist5k):
    # check_every=1 and window=1: recent_acc is each batch's accuracy. 250 images in
    # batches of 100 make epochs of 100 + 100 + 50, so epoch accounting is exercised.
    out = run_trial(
        helpers.spec(
            train_size=250,
            check_every=1,
            window=1,
            target_acc=1.0,
            target_metric="running",
            max_epochs=4,
            budget_s=3600,
        ),
        mnist5k,
    )
    curve = out.curve
    sizes = np.diff([0] + [p.examples for p in curve])
    assert list(sizes[:3]) == [100, 100, 50] and len(curve) == 12
    correct = np.array([p.recent_acc for p in curve]) * sizes
    assert np.allclose(correct, np.round(correct))  # whole numbers of correct examples
    running = np.cumsum(correct) / np.cumsum(sizes)
    assert np.allclose([p.running_acc for p in curve], running)
    assert [p.train_acc for p in curve] == [p.running_acc for p in curve]


def test_the_val_metric_reaches_on_validation_accuracy_and_records_the_choice(mnist5k):
    spec = helpers.reaching(target_metric="val", val_every=10, target_acc=0.8)
    record = run_trial(spec, mnist5k).record
    assert record.status is TrialStatus.REACHED and record.target_metric == "val"
    assert record.final_val_acc is not None and record.final_val_acc >= 0.8
    assert record.steps_to_target % 10 == 0 and record.val_s > 0
    assert record.input_shape == "[28, 28, 1]" and record.num_classes == 10
    assert spec.trial_id != helpers.reaching(target_metric="val").trial_id  # val_every counts
    assert "val_every" not in helpers.reaching().stop.id_fields()  # unset: ids as before


def test_threads_report_what_tensorflow_runs_with_once_it_has_started():
    """TensorFlow refuses a thread count after its first op; the count then
    reported is what it runs with (its default: every core), not the one asked."""
    import subprocess
    import sys

    code = (
        "import os, tensorflow as tf\n"
        "from harness.trial.train import configure_threads\n"
        "tf.constant(1.0) + 1.0\n"
        "print(configure_threads(1), os.cpu_count())\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    reported, cores = map(int, done.stdout.split())
    assert reported == cores
