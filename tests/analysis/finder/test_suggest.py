"""The range-test suggestion rules on hand-built curves, and the comparison
with a grid's band."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from analysis.finder import suggest as F
from harness.store.records import TrialStatus
from tests import helpers

# 161 log-spaced LRs, 1e-7 .. 10 (x = log10 lr steps by 0.05)
LR = 10 ** np.linspace(-7, 1, 161)
X = np.log10(LR)


def known_curve() -> np.ndarray:
    """Falls along a logistic step centred at x = -3 (its steepest point), keeps
    falling to its minimum at x = -1, then rises."""
    falling = 1 + 1 / (1 + np.exp(4 * (X + 3))) - 0.01 * (X + 7)
    at_min = falling[X <= -1 + 1e-9][-1]
    return np.where(X <= -1 + 1e-9, falling, at_min + (X + 1) ** 2)


def test_each_rule_returns_the_known_answer():
    loss = known_curve()
    s = F.suggest(LR, loss)
    assert s["steepest"] == pytest.approx(1e-3, rel=1e-6)
    assert s["min/10"] == pytest.approx(1e-2, rel=1e-6)  # the minimum is at 0.1
    # it falls all the way from the first point to the minimum: the middle of 1e-7 .. 0.1
    assert s["longest-descent"] == pytest.approx(1e-4, rel=1e-6)
    # fastai: points 16 .. 155 kept; the 105 falling ones from the first end at
    # kept index 104, start = 104 - 105 = -1, pick -1 + int(35) + int(17.5) = 51
    assert s["fastai-valley"] == pytest.approx(LR[16 + 51], rel=1e-12)


def test_longest_descent_is_the_longest_consecutive_descent_not_noise():
    rng = np.random.default_rng(0)
    loss = known_curve() + np.where(X < -5, rng.normal(0, 0.01, len(X)), 0)
    first, last = F.longest_descent(loss)
    assert X[last] == pytest.approx(-1) and -5.1 <= X[first] < -4.5
    assert F.longest_descent(np.array([3.0, 3.0, 3.0])) == (0, 0)
    assert F.longest_descent(np.array([3.0, 2.0, 2.5, 2.0, 1.0, 0.5])) == (2, 5)


def sawtooth_then_clean_run() -> np.ndarray:
    """100 points: 0-59 fall from 10 to 5 with every fourth point bumped up (runs
    of at most 3 falls, but 3 of every 4 points fall below all before them);
    60-69 jump to 8 and fall cleanly to 6 (9 falls in a row, yet above the
    sawtooth's end); 70-99 rise."""
    k = np.arange(60)
    saw = 10 - k * 5 / 60 + np.where(k % 4 == 3, 0.2, 0.0)
    clean = np.linspace(8, 6, 10)
    return np.concatenate([saw, clean, np.linspace(9, 12, 30)])


def test_fastai_valley_takes_the_longest_decreasing_subsequence_not_a_run():
    lr = 10 ** np.linspace(-7, 1, 100)
    loss = sawtooth_then_clean_run()
    s = F.suggest(lr, loss, num_steps=100)
    # ours: the clean run 60 .. 69, the longest without a rise
    assert F.longest_descent(loss) == (60, 69)
    assert s["longest-descent"] == pytest.approx(np.sqrt(lr[60] * lr[69]), rel=1e-12)
    # fastai's: points 10 .. 94 kept (the first num_steps // 10, the last 5 dropped);
    # the longest decreasing subsequence is the sawtooth's 37 unbumped points, ending at
    # point 58 (kept index 48): start = 48 - 37 = 11, pick 11 + int(12.3) + int(6.2) = 29
    assert F.longest_decreasing(loss[10:-5]) == (11, 48)
    assert s["fastai-valley"] == pytest.approx(lr[10 + 29], rel=1e-12)
    # num_steps is the planned ramp: a test stopped early still skips a tenth of the plan
    # (30 here): 22 unbumped points in 30 .. 58, ending at kept index 28: start 6, pick
    # 6 + int(7.3) + int(3.7) = 16
    assert F.fastai_valley(lr, loss, num_steps=300) == pytest.approx(lr[30 + 16], rel=1e-12)


def fastai_reference(lrs: list[float], losses: list[float]) -> float:
    """fastai's valley loop as its source writes it, on an already-trimmed curve."""
    n = len(losses)
    max_start, max_end = 0, 0
    lds = [1] * n
    for i in range(1, n):
        for j in range(0, i):
            if losses[i] < losses[j] and lds[i] < lds[j] + 1:
                lds[i] = lds[j] + 1
            if lds[max_end] < lds[i]:
                max_end = i
                max_start = max_end - lds[max_end]
    sections = (max_end - max_start) / 3
    return lrs[max_start + int(sections) + int(sections / 2)]


@pytest.mark.parametrize("seed", range(8))
def test_fastai_valley_matches_fastais_loop_on_noisy_curves(seed):
    rng = np.random.default_rng(seed)
    lr = LR[20:140]  # falls to its minimum at point 100, then rises
    loss = known_curve()[20:140] + rng.normal(0, 0.05 * (seed % 3), 120)
    kept_lr, kept = lr[12:-5], loss[12:-5]
    assert F.fastai_valley(lr, loss) == fastai_reference(list(kept_lr), list(kept))


def test_fastai_valley_cuts_at_the_first_nan_after_trimming():
    lr = 10 ** np.linspace(-7, 1, 100)
    loss = sawtooth_then_clean_run()
    # 10 .. 49 kept: 30 unbumped points, ending at point 49 (kept index 39): start 9,
    # pick 9 + 10 + 5 = 24
    loss[50:] = np.nan
    assert F.fastai_valley(lr, loss) == pytest.approx(lr[10 + 24], rel=1e-12)
    assert math.isnan(F.fastai_valley(lr[:5], loss[:5]))  # nothing left once trimmed


def test_steepest_skips_the_noisy_start_and_ignores_the_rise():
    loss = known_curve()
    loss[1] = loss[0] - 0.5  # a cliff in the first points (not the minimum): skipped
    assert F.steepest(LR, loss) == pytest.approx(1e-3, rel=1e-6)
    assert F.steepest(LR, loss, skip_start=0) == pytest.approx(LR[0])


def test_nan_tail_is_dropped_and_all_nan_gives_nan():
    loss = known_curve()
    loss[-5:] = np.nan
    assert F.suggest(LR, loss)["min/10"] == pytest.approx(1e-2, rel=1e-6)
    assert all(math.isnan(v) for v in F.suggest(LR[:3], np.full(3, np.nan)).values())


def finder_frame(optimizer: str = "adam", fid: str = "f1") -> pd.DataFrame:
    loss = known_curve()
    return pd.DataFrame(
        {
            "finder_id": fid,
            "sweep": "test",
            "dataset": "mnist5k",
            "train_size": pd.array([None] * len(LR), dtype="Int64"),
            "model": "tiny_cnn",
            "width": 1.0,
            "model_kwargs": "{}",
            "optimizer": optimizer,
            "optimizer_kwargs": "{}",
            "loss": "crossentropy",
            "batch_size": pd.array([100] * len(LR), dtype="Int64"),
            "seed": 0,
            "builder": "",
            "start_lr": 1e-7,
            "end_lr": 10.0,
            "num_steps": len(LR),
            "stop_reason": "end",
            "wall_s": 1.0,
            "step": np.arange(1, len(LR) + 1),
            "lr": LR,
            "batch_loss": loss,
            "smoothed_loss": loss,
        }
    )


def test_suggestions_against_the_grid_band_and_best():
    finder = pd.concat([finder_frame("adam", "f1"), finder_frame("rmsprop", "f2")])
    trials = pd.DataFrame(
        [
            helpers.outcome(TrialStatus.REACHED, time_s=2.0, lr=1e-4).record.to_row(),
            helpers.outcome(TrialStatus.REACHED, time_s=1.0, lr=1e-3).record.to_row(),
            helpers.outcome(TrialStatus.REACHED, time_s=3.0, lr=1e-2).record.to_row(),
            helpers.outcome(TrialStatus.DIVERGED, lr=1e-1).record.to_row(),
        ]
    )
    trials["train_size"] = trials["train_size"].astype("Int64")
    compared = F.against_grid(F.suggestions(finder), trials)
    adam = compared[compared["optimizer"] == "adam"].set_index("rule")
    assert adam.loc["steepest", "best_lr"] == pytest.approx(1e-3)
    assert adam.loc["steepest", "decades_from_best"] == pytest.approx(0.0, abs=1e-9)
    assert adam.loc["min/10", "decades_from_best"] == pytest.approx(1.0)
    assert adam.loc["longest-descent", "decades_from_best"] == pytest.approx(-1.0)
    assert list(adam["in_band"]) == [True, True, True, True]  # band 1e-4 .. 1e-2
    assert adam.loc["fastai-valley", "decades_from_best"] == pytest.approx(-3.65 + 3)
    rms = compared[compared["optimizer"] == "rmsprop"]  # no grid series: no verdict
    assert rms["best_lr"].isna().all() and rms["in_band"].isna().all()
    scores = F.rule_scores(compared).set_index("rule")
    assert scores.loc["steepest", "tests"] == 1 and scores.loc["min/10", "in_band"] == 1
    assert scores.loc["min/10", "median_abs_decades"] == pytest.approx(1.0)
    # without any grid, every suggestion is still listed
    alone = F.against_grid(F.suggestions(finder), None)
    assert len(alone) == 2 * len(F.RULES) and alone["best_lr"].isna().all()
