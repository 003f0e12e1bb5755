"""The stop rule on a synthetic stream of Keras batch logs and a fake clock: no training."""

from __future__ import annotations

from dataclasses import replace

import pytest

from harness.grid.parse import parse_grid
from harness.grid.resolved import ResolvedGrid
from harness.grid.specs import StopRule
from harness.rules.tracker import StopTracker
from harness.store.records import TrialStatus

N_TRAIN = 1000  # 10 steps an epoch at batch size 100
BATCH = 100


def make_spec(**stop):
    grid = {"models": ["tiny_cnn"], "optimizers": ["adam"], "lr": [0.01]}
    spec = ResolvedGrid.fixed(parse_grid(grid, "test")).expand()[0]
    rule = StopRule(**{"window": 4, "check_every": 2, "budget_s": 1e6, "max_epochs": 5, **stop})
    return replace(spec, stop=rule)


class Clock:
    """A clock that moves only when told."""

    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def feed(tracker, clock, correct, losses, seconds_per_step=1.0):
    """Feed per-batch correct counts and losses as Keras reports them (means
    since the epoch began); stop where the tracker says. Returns the steps fed."""
    per_epoch = N_TRAIN // BATCH
    epoch_correct, epoch_loss, fed = 0, 0.0, 0
    for i, (c, loss) in enumerate(zip(correct, losses, strict=True)):
        batch = i % per_epoch
        if batch == 0:
            epoch_correct, epoch_loss = 0, 0.0
        epoch_correct += c
        epoch_loss += loss * BATCH
        seen = (batch + 1) * BATCH
        clock.now += seconds_per_step
        fed += 1
        logs = {"acc": epoch_correct / seen, "loss": epoch_loss / seen}
        if tracker.batch_end(logs):
            return fed
        if batch == per_epoch - 1 and tracker.epoch_end(i // per_epoch, logs):
            return fed
    return fed


def tracker_for(spec, clock, val_seconds=0.0, val_acc=0.5):
    def validate() -> float:
        clock.now += val_seconds
        return val_acc

    return StopTracker(spec, N_TRAIN, trial_start=clock.now - 2.0, validate=validate, clock=clock)


def test_reaches_at_the_first_check_whose_recent_window_passes_the_target():
    clock = Clock()
    spec = make_spec(target=0.9)
    tracker = tracker_for(spec, clock)
    correct = [50] * 6 + [95] * 20  # 50 % for six steps, then 95 %
    feed(tracker, clock, correct, [1.0] * len(correct))
    assert tracker.status is TrialStatus.REACHED
    # checks at steps 1, 2, 4, 6, 8, 10: the window of 4 steps back from step 10
    # starts at the check at step 6, so steps 7-10 are all at 95 %
    assert tracker.reached is not None and tracker.reached.step == 10
    assert tracker.reached.recent_acc == pytest.approx(0.95)
    assert tracker.reached.running_acc == pytest.approx((6 * 50 + 4 * 95) / 1000)
    assert [p.step for p in tracker.curve] == [1, 2, 4, 6, 8, 10]
    assert tracker.startup_s == pytest.approx(3.0)  # 2 s before the trial, 1 s for step 1
    assert tracker.reached.elapsed_s == pytest.approx(9.0)  # the clock starts after step 1


def test_running_metric_counts_every_example_since_step_0():
    clock = Clock()
    tracker = tracker_for(make_spec(target=0.9, metric="running", max_epochs=10), clock)
    correct = [50] * 6 + [95] * 60
    feed(tracker, clock, correct, [1.0] * len(correct))
    assert tracker.status is TrialStatus.REACHED
    step = tracker.reached.step
    assert sum(correct[:step]) / (step * BATCH) >= 0.9
    assert sum(correct[: step - 2]) / ((step - 2) * BATCH) < 0.9  # not at the check before


def test_diverges_when_the_loss_passes_the_factor_times_the_first_loss():
    clock = Clock()
    tracker = tracker_for(make_spec(diverge_factor=5.0), clock)
    losses = [2.0, 2.0, 2.0, 50.0, 50.0, 50.0]
    fed = feed(tracker, clock, [10] * len(losses), losses)
    assert tracker.status is TrialStatus.DIVERGED
    assert fed == 4  # the check at step 4 sees the mean loss of steps 3-4: 26 > 5 x 2


def test_a_nan_loss_diverges():
    clock = Clock()
    tracker = tracker_for(make_spec(), clock)
    feed(tracker, clock, [10] * 4, [2.0, float("nan"), 2.0, 2.0])
    assert tracker.status is TrialStatus.DIVERGED


def test_budget_is_checked_at_every_step_and_excludes_validation_time():
    clock = Clock()
    spec = make_spec(budget_s=12.5, check_every=1000)  # checks only at step 1 and budget
    tracker = tracker_for(spec, clock, val_seconds=100.0)
    fed = feed(tracker, clock, [10] * 40, [2.0] * 40)
    assert tracker.status is TrialStatus.BUDGET
    # step 1 starts the clock; 13 more steps pass 12.5 s; the 100 s of
    # validation at the end of epoch 1 (step 10) do not count
    assert fed == 14
    assert tracker.val_s == pytest.approx(100.0)
    assert tracker.curve[-1].elapsed_s == pytest.approx(13.0)


def test_max_epochs_ends_with_budget_and_validates_each_epoch():
    clock = Clock()
    tracker = tracker_for(make_spec(max_epochs=2), clock, val_acc=0.7)
    fed = feed(tracker, clock, [10] * 50, [2.0] * 50)
    assert fed == 20 and tracker.status is TrialStatus.BUDGET
    assert [p.step for p in tracker.curve if p.val_acc is not None] == [10, 20]
    assert tracker.finish() is TrialStatus.BUDGET


def test_finish_without_a_verdict_is_budget_and_validates_the_last_point():
    clock = Clock()
    tracker = tracker_for(make_spec(), clock, val_acc=0.42)
    feed(tracker, clock, [10] * 3, [2.0] * 3)  # training ended mid-epoch, no verdict
    assert tracker.status is None
    assert tracker.finish() is TrialStatus.BUDGET
    assert tracker.curve[-1].val_acc == 0.42


def test_the_val_metric_validates_every_val_every_steps_with_the_clock_paused():
    clock = Clock()
    spec = make_spec(metric="val", val_every=3, target=0.9)
    accs = iter([0.2, 0.5, 0.7, 0.95, 0.99])
    calls = []

    def validate() -> float:
        clock.now += 10.0  # validation is slow, and off the clock
        calls.append(clock.now)
        return next(accs)

    tracker = StopTracker(spec, N_TRAIN, clock(), validate, clock=clock)
    # training accuracy stays at chance: only the validation accuracy can stop it
    fed = feed(tracker, clock, [10] * 30, [2.3] * 30)
    assert tracker.status is TrialStatus.REACHED
    # checks at step 1, then every 3 steps: 3, 6, 9 (the fourth validation reaches)
    assert [p.step for p in tracker.curve] == [1, 3, 6, 9] and fed == 9
    assert all(p.val_acc is not None and p.train_acc == p.val_acc for p in tracker.curve)
    assert tracker.reached is not None and tracker.reached.val_acc == 0.95
    assert tracker.val_s == pytest.approx(40.0) and len(calls) == 4
    # the clock ran 8 steps of a second each after the first, validation excluded
    assert tracker.reached.elapsed_s == pytest.approx(8.0)


def feed_steps(tracker, clock, seconds, n_train, batch=BATCH, acc=0.5, loss=1.0):
    """Feed one step per entry of ``seconds`` (each moves the clock that much), over
    epochs of ``n_train`` examples whose last batch may be short, with ``epoch_end``
    after each epoch's last step; stop where the tracker says."""
    per_epoch = -(-n_train // batch)
    for i, spent in enumerate(seconds):
        clock.now += spent
        logs = {"acc": acc, "loss": loss}
        if tracker.batch_end(logs):
            return
        if i % per_epoch == per_epoch - 1 and tracker.epoch_end(i // per_epoch, logs):
            return


def test_unwarmed_the_first_short_batch_and_the_step_after_are_timed_apart_in_startup():
    # 250 examples in batches of 100: steps of 100, 100 and 50 examples an epoch.
    # The model did not run on the short batch before training, so its first step
    # (step 3) traces it: 10 s more than a step.
    seconds = [1.0, 1.0, 11.0, 1.0, 1.0, 1.0, 1.0]
    spec = make_spec(check_every=1, max_epochs=3)

    def run(warmed: bool) -> StopTracker:
        clock = Clock()
        tracker = StopTracker(spec, 250, clock.now - 2.0, lambda: 0.5, clock=clock, warmed=warmed)
        feed_steps(tracker, clock, seconds, 250)
        return tracker

    cold, warm = run(warmed=False), run(warmed=True)
    assert (cold.untimed_steps, warm.untimed_steps) == ((3, 4), ())
    # 2 s before the trial and step 1, then all of step 3 (its trace and its
    # update) and of step 4 (the full batch compiled again after two shapes)
    assert cold.startup_s == pytest.approx(3.0 + 11.0 + 1.0)
    assert [p.elapsed_s for p in cold.curve] == pytest.approx([0, 1, 1, 1, 2, 3, 4])
    # the second short batch (step 6) is on the clock; warmed, the first one is too
    assert warm.startup_s == pytest.approx(3.0)
    assert [p.elapsed_s for p in warm.curve] == pytest.approx([0, 1, 12, 13, 14, 15, 16])
    # a training set that is a multiple of the batch, or a single batch, has no short step
    assert StopTracker(spec, 300, 0.0, lambda: 0.5, warmed=False).untimed_steps == ()
    assert StopTracker(spec, 50, 0.0, lambda: 0.5, warmed=False).untimed_steps == ()


class OnDevice:
    """A log value still on the device: converting it waits for its step to finish
    (``wait`` seconds on the clock, once per step)."""

    def __init__(self, value: float, step: dict, clock: Clock, wait: float) -> None:
        self.value, self.step, self.clock, self.wait = value, step, clock, wait

    def __float__(self) -> float:
        if not self.step["done"]:
            self.clock.now += self.wait
            self.step["done"] = True
        return self.value


def test_a_step_ends_when_its_result_is_on_the_host():
    # each step is dispatched in 1 s and its result reaches the host 0.5 s later
    clock = Clock()
    tracker = tracker_for(make_spec(check_every=1), clock)
    for _ in range(5):
        clock.now += 1.0
        step = {"done": False}
        tracker.batch_end(
            {"acc": OnDevice(0.5, step, clock, 0.5), "loss": OnDevice(1.0, step, clock, 0.5)}
        )
    # step 1's wait is startup (2 s before the trial, 1.5 s for the step), and each
    # timed step is 1.5 s
    assert tracker.startup_s == pytest.approx(3.5)
    assert [p.elapsed_s for p in tracker.curve] == pytest.approx([0.0, 1.5, 3.0, 4.5, 6.0])
