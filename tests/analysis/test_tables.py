"""The pure analysis functions on small handmade trial tables with known answers."""

from __future__ import annotations

import math

import pandas as pd
import pytest

from analysis import cells as C
from analysis import labels as L
from analysis import tables as T
from harness.store.records import Manifest
from tests.helpers import trials

# adam: band 1e-3 .. 1e-1 with a hole at 1e-2; best at 1e-1 (ties broken below)
# gd:   band 1 .. 1 (one LR); nothing else
# rmsprop: never reaches
VALLEYS = trials(
    [
        ("adam", 1e-4, "budget", None, None),
        ("adam", 1e-3, "reached", 4.0, 400),
        ("adam", 1e-2, "budget", None, None),
        ("adam", 1e-1, "reached", 1.0, 100),
        ("adam", 1.0, "diverged", None, None),
        ("gd", 1e-4, "budget", None, None),
        ("gd", 1e-3, "budget", None, None),
        ("gd", 1e-2, "budget", None, None),
        ("gd", 1e-1, "budget", None, None),
        ("gd", 1.0, "reached", 2.0, 300),
        ("rmsprop", 1e-4, "budget", None, None),
        ("rmsprop", 1e-3, "budget", None, None),
        ("rmsprop", 1e-2, "diverged", None, None),
        ("rmsprop", 1e-1, "diverged", None, None),
        ("rmsprop", 1.0, "error", None, None),
    ]
)


def by_series(frame: pd.DataFrame) -> pd.DataFrame:
    return frame.set_index("series")


def test_band_edges_width_and_holes():
    b = by_series(C.band(VALLEYS))
    assert b.loc["adam", "lr_low"] == 1e-3 and b.loc["adam", "lr_high"] == 1e-1
    assert b.loc["adam", "decades"] == pytest.approx(2.0)
    assert b.loc["adam", "holes"] == 1 and b.loc["adam", "n_success_lrs"] == 2
    assert b.loc["gd", "lr_low"] == b.loc["gd", "lr_high"] == 1.0
    assert b.loc["gd", "decades"] == 0.0 and b.loc["gd", "holes"] == 0


def test_no_success_gives_nan_band_and_best_not_an_error():
    b = by_series(C.band(VALLEYS))
    assert math.isnan(b.loc["rmsprop", "lr_low"]) and math.isnan(b.loc["rmsprop", "decades"])
    assert b.loc["rmsprop", "n_success_lrs"] == 0
    best = by_series(C.best_lr(VALLEYS))
    assert math.isnan(best.loc["rmsprop", "best_lr"])
    nothing = VALLEYS[VALLEYS.optimizer == "rmsprop"]
    assert math.isnan(T.union_band(nothing).iloc[0]["lr_low"])
    assert (C.envelope(nothing)["n_reached"] == 0).all()
    assert C.best_curves(nothing, pd.DataFrame(columns=["trial_id", "step"])).empty
    table = T.optimizer_table(nothing).iloc[0]
    assert table["reached"] == 0 and table["diverged"] == 2 and table["error"] == 1


def test_best_lr_is_fastest_and_ties_go_to_fewer_steps_then_lower_lr():
    best = by_series(C.best_lr(VALLEYS))
    assert best.loc["adam", "best_lr"] == 1e-1 and best.loc["adam", "best_time_s"] == 1.0
    assert best.loc["adam", "best_steps"] == 100
    tie = trials(
        [
            ("adam", 0.1, "reached", 1.0, 120),
            ("adam", 0.01, "reached", 1.0, 90),
            ("adam", 0.001, "reached", 1.0, 90),
        ]
    )
    assert C.best_lr(tie).iloc[0]["best_lr"] == 0.001
    assert C.best_lr(tie[tie.lr > 0.005]).iloc[0]["best_lr"] == 0.01


def test_envelope_names_fastest_and_slowest_per_lr():
    env = C.envelope(VALLEYS).set_index("lr")
    assert env.loc[1.0, "fastest"] == "gd" and env.loc[1.0, "slowest"] == "gd"
    assert env.loc[1e-1, "fastest"] == "adam" and env.loc[1e-1, "fastest_time_s"] == 1.0
    assert env.loc[1e-2, "n_reached"] == 0 and env.loc[1e-2, "fastest"] == ""
    two = trials([("adam", 0.1, "reached", 1.0, 100), ("gd", 0.1, "reached", 3.0, 250)])
    row = C.envelope(two).iloc[0]
    assert (row["fastest"], row["slowest"], row["slowest_time_s"]) == ("adam", "gd", 3.0)


def test_union_band_is_where_any_optimizer_succeeds():
    u = T.union_band(VALLEYS).iloc[0]
    assert (u["lr_low"], u["lr_high"]) == (1e-3, 1.0)
    assert u["decades"] == pytest.approx(3.0)
    assert u["holes"] == 1  # 1e-2: no optimizer reaches
    assert u["low_by"] == "adam" and u["high_by"] == "gd"


def test_optimizer_table_counts_and_wasted_time():
    t = by_series(T.optimizer_table(VALLEYS))
    assert list(t.index) == ["gd", "adam", "rmsprop"]  # the reference experiment's order
    assert (t.loc["adam", "reached"], t.loc["adam", "trials"]) == (2, 5)
    assert t.loc["adam", "diverged"] == 1 and t.loc["adam", "budget"] == 2
    # wall seconds of the three misses: 10.5 each
    assert t.loc["adam", "wasted_s"] == pytest.approx(31.5)


def test_repeats_median_spread_and_success_rate_per_cell():
    rep = trials(
        [
            ("adam", 0.1, "reached", 1.0, 100, 0),
            ("adam", 0.1, "reached", 3.0, 300, 1),
            ("adam", 0.1, "budget", None, None, 2),
            ("adam", 1.0, "reached", 0.5, 50, 0),
            ("adam", 1.0, "diverged", None, None, 1),
            ("adam", 1.0, "diverged", None, None, 2),
        ]
    )
    c = C.cells(rep).set_index("lr")
    assert c.loc[0.1, "n"] == 3 and c.loc[0.1, "success_rate"] == pytest.approx(2 / 3)
    assert c.loc[0.1, "outcome"] == "reached" and c.loc[0.1, "time_median_s"] == 2.0
    assert (c.loc[0.1, "time_min_s"], c.loc[0.1, "time_max_s"]) == (1.0, 3.0)
    # drawn values: the miss sits at the budget, so the median of (1, 3, 10) is 3
    assert c.loc[0.1, "plot_time_s"] == 3.0 and c.loc[0.1, "plot_time_hi_s"] == 10.0
    assert c.loc[1.0, "outcome"] == "diverged" and c.loc[1.0, "success_rate"] == pytest.approx(
        1 / 3
    )
    assert C.best_lr(rep).iloc[0]["best_lr"] == 0.1  # 1.0's single fast seed is a minority
    assert C.best_lr(rep, min_success=0.3).iloc[0]["best_lr"] == 1.0


def test_missed_trials_are_drawn_at_budget_and_step_ceiling():
    v = C.with_plot_values(VALLEYS).set_index(["optimizer", "lr"])
    assert v.loc[("adam", 1e-4), "plot_time_s"] == 10.0
    assert v.loc[("adam", 1.0), "plot_time_s"] == 10.0  # diverged: at the budget too
    assert v.loc[("adam", 1e-4), "plot_steps"] == 500  # the most steps any trial took
    assert v.loc[("adam", 1e-3), "plot_steps"] == 400
    assert math.isnan(v.loc[("rmsprop", 1.0), "plot_time_s"])  # error: not drawn


def test_a_varying_axis_splits_series_and_sources_stay_apart():
    a = trials([("adam", 0.1, "reached", 1.0, 100), ("gd", 0.1, "budget", None, None)])
    b = trials([("adam", 0.1, "reached", 2.0, 100)], loss="mse")
    mixed = pd.concat([a, b.assign(trial_id="m0")], ignore_index=True)
    labelled = L.label_series(mixed)
    assert set(labelled["series"]) == {"adam (loss=crossentropy)", "adam (loss=mse)", "gd"}
    momentum = trials(
        [("momentum", 0.1, "reached", 1.0, 100), ("momentum", 0.1, "reached", 2.0, 100)]
    )
    momentum["optimizer_kwargs"] = ['{"momentum": 0.5}', '{"momentum": 0.9}']
    assert set(L.label_series(momentum)["series"]) == {
        "momentum (momentum=0.5)",
        "momentum (momentum=0.9)",
    }
    two = pd.concat([a.assign(source="x"), a.assign(source="y")], ignore_index=True)
    assert len(T.optimizer_table(two)) == 4
    summary = T.sweep_summary(two, {})
    assert list(summary["source"]) == ["x", "y"] and (summary["trials"] == 2).all()
    cmp = T.compare_sources(T.optimizer_table(two), summary, two).set_index(["source", "series"])
    assert cmp.loc[("y", "adam"), "time_ratio"] == pytest.approx(1.0)
    assert cmp.loc[("y", "adam"), "differs"] == ""
    other = pd.concat(
        [a.assign(source="x"), a.assign(source="y", device="gpu: H100", target_acc=0.95)],
        ignore_index=True,
    )
    cmp = T.compare_sources(T.optimizer_table(other), T.sweep_summary(other, {}), other)
    assert cmp.set_index(["source", "series"]).loc[("y", "gd"), "differs"] == "device, target_acc"


def test_summary_wall_time_prefers_the_manifest():
    runs = [{"run_id": "a", "wall_s": 30.0}, {"run_id": "b", "wall_s": 12.5}]
    s = T.sweep_summary(VALLEYS, {"hand": Manifest.from_json({"runs": runs})})
    assert s.iloc[0]["wall_s"] == 42.5 and s.iloc[0]["runs"] == 2
    assert s.iloc[0]["tensorflow"] == "2.21.0" and s.iloc[0]["reached"] == 3
    spanned = T.sweep_summary(VALLEYS, {}).iloc[0]["wall_s"]
    # started 0..14 s apart; the last (an error) ran 10.5 s
    assert spanned == pytest.approx(24.5)
