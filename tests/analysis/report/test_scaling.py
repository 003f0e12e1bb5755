"""Width-scaling analysis on handmade data with known slopes and exponents."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from analysis.report import scaling as S
from tests.helpers import trials


def test_linear_fit_recovers_slope_intercept_and_r2():
    x = np.array([1, 2, 3, 4, 5.0])
    fit = S.fit_linear(x, 2.5 * x + 1.0)
    assert fit["slope"] == pytest.approx(2.5) and fit["intercept"] == pytest.approx(1.0)
    assert fit["r2"] == pytest.approx(1.0)
    noisy = S.fit_linear(x, 2.5 * x + np.array([0.3, -0.3, 0.3, -0.3, 0.0]))
    assert 0.9 < noisy["r2"] < 1.0
    assert math.isnan(S.fit_linear([1.0], [2.0])["slope"])  # one point: no fit


def test_power_fit_recovers_the_exponent():
    x = np.array([3300, 9000, 25000, 70000.0])
    fit = S.fit_power(x, 0.002 * x**1.3)
    assert fit["exponent"] == pytest.approx(1.3) and fit["coefficient"] == pytest.approx(0.002)
    assert fit["r2_log"] == pytest.approx(1.0)
    assert S.fit_power(x, 5.0 * x)["exponent"] == pytest.approx(1.0)  # linear growth


def scaled(widths, time_per_width, steps=100, seeds=1, miss=()):
    """adam at one LR over widths: time = time_per_width * width, n_params ~ width^2."""
    rows = []
    for w in widths:
        for seed in range(seeds):
            if w in miss:
                rows.append(("adam", 0.01, "budget", None, None, seed))
            else:
                rows.append(("adam", 0.01, "reached", time_per_width * w, steps, seed))
    df = trials(rows)
    df["width"] = [float(w) for w in widths for _ in range(seeds)]
    df["n_params"] = (1000 * df["width"] ** 2).astype("int64")
    df["step_time_s"] = df["time_to_target_s"].fillna(10.0) / steps
    return df


def test_points_and_fits_on_known_growth():
    df = scaled([1, 2, 3, 4], time_per_width=0.5, seeds=2)
    points = S.scaling_points(df)
    assert list(points["width"]) == [1.0, 2.0, 3.0, 4.0]
    assert list(points["n"]) == [2, 2, 2, 2]
    assert points["series"].iloc[0] == "adam @ lr 0.01"
    fits = S.scaling_fits(points).set_index(["measure", "size"])
    time_w = fits.loc[("time_to_target_s", "width")]
    assert time_w["slope"] == pytest.approx(0.5) and time_w["r2"] == pytest.approx(1.0)
    # time ~ width = n_params ** 0.5
    assert fits.loc[("time_to_target_s", "n_params"), "exponent"] == pytest.approx(0.5)
    assert fits.loc[("steps_to_target", "width"), "slope"] == pytest.approx(0.0)
    assert fits.loc[("step_time_s", "width"), "exponent"] == pytest.approx(1.0)


def test_missed_widths_are_left_out_of_the_time_fit():
    points = S.scaling_points(scaled([1, 2, 3, 4], time_per_width=1.0, miss=(4,)))
    assert list(points["outcome"]) == ["reached"] * 3 + ["missed"]
    fits = S.scaling_fits(points).set_index(["measure", "size"])
    assert fits.loc[("time_to_target_s", "width"), "n_points"] == 3
    assert fits.loc[("time_to_target_s", "width"), "n_sizes"] == 4
    assert fits.loc[("step_time_s", "width"), "n_points"] == 4  # step time: every width


def test_single_width_has_no_scaling():
    one = scaled([1], time_per_width=1.0)
    assert not S.has_scaling(one)
    assert S.scaling_fits(S.scaling_points(one)).empty
    assert S.has_scaling(scaled([1, 2], time_per_width=1.0))
    assert not S.has_scaling(pd.DataFrame(columns=["optimizer", "lr", "width"]))
