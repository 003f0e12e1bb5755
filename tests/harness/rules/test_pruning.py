"""Verdict-preserving pruning: the rule on synthetic curves, then real sweeps
run unpruned and pruned, with the replay of the first predicting the second."""

from __future__ import annotations

import pyarrow.dataset as ds
import pytest
from typer.testing import CliRunner

from harness.grid.parse import parse_grid
from harness.grid.resolved import ResolvedGrid
from harness.grid.specs import StopRule
from harness.rules.pruning import prune_check
from harness.store.records import CurvePoint
from lrbench.cli import app

RULE = StopRule(target=0.9, window=10, budget_s=1e6, max_epochs=10, prune="optimistic")
PER_EPOCH = 20  # batch 100, 2,000 training examples


def curve(accs: list[float]) -> list[CurvePoint]:
    """A curve with one check per step and the given target metric."""
    return [
        CurvePoint("t", s, s / PER_EPOCH, s * 100, 0.01 * (s - 1), 0.1, 1.0, a, a, a)
        for s, a in enumerate(accs, 1)
    ]


def first_prune(accs: list[float], rule: StopRule = RULE):
    points = curve(accs)
    for i in range(1, len(points) + 1):
        decision = prune_check(rule.prune, points[:i], rule)
        if decision is not None:
            return decision
    return None


def test_a_flat_curve_is_pruned_right_after_the_warm_up():
    decision = first_prune([0.1] * 200)
    assert decision is not None
    assert decision.step == 50  # a quarter of 10 epochs x 20 steps
    assert decision.bound < 0.9 and decision.margin == pytest.approx(0.9 - decision.bound)


def test_a_slow_steady_climb_that_would_reach_is_never_pruned():
    # 0.1 -> 0.95 linearly over the 200 steps the epochs allow: reaches at the end
    accs = [0.1 + 0.85 * s / 200 for s in range(1, 201)]
    assert first_prune(accs) is None


def take_off(early: float, factor: float) -> list[float]:
    """A rise of ``early`` per step for 60 steps, then ``factor`` times steeper."""
    accs = [0.1 + early * s for s in range(60)]
    accs += [accs[-1] + factor * early * s for s in range(1, 141)]
    return [min(a, 0.95) for a in accs]


def test_a_late_take_off_up_to_four_times_the_early_rise_is_kept():
    accs = take_off(0.0013, 4.0)  # reaches 0.9 just before the 200 steps end
    assert max(accs) >= 0.9 and first_prune(accs) is None


def test_a_take_off_far_steeper_than_anything_before_is_cut():
    # the rule's known limit (what replays of real sweeps check): 12 times the
    # early rise, from near chance, is beyond the optimism the bound allows
    accs = take_off(0.0005, 12.0)
    assert max(accs) >= 0.9 and first_prune(accs) is not None


def test_no_pruning_when_off_or_before_two_windows():
    grid = parse_grid(
        {"models": ["tiny_cnn"], "optimizers": ["gd"], "lr": [1], "stop": {"prune": False}}, "g"
    )
    assert grid.stop.prune is None
    short = StopRule(target=0.9, window=100, budget_s=1e6, max_epochs=10, prune="optimistic")
    assert first_prune([0.1] * 199, short) is None  # 2 x 100 steps not yet seen


def test_prune_is_outside_trial_ids_and_grid_digests():
    base = {"models": ["tiny_cnn"], "optimizers": ["gd"], "lr": [1]}
    on = ResolvedGrid.fixed(parse_grid({**base, "stop": {"prune": "optimistic"}}, "g"))
    off = ResolvedGrid.fixed(parse_grid({**base, "stop": {"prune": False}}, "g"))
    assert on.digest == off.digest
    assert on.expand()[0].trial_id == off.expand()[0].trial_id


GRID = """
name = "prune-test"
datasets = [{{ name = "mnist5k", train_size = 1000 }}]
models = ["tiny_cnn"]
optimizers = ["gd", "adam"]
lr = [1e-5, 0.003, 0.1]
[stop]
target = 0.8
window = 10
budget_s = 3600
max_epochs = 12
prune = {prune}
"""


def rows(out) -> dict:
    table = ds.dataset(str(out / "trials")).to_table().to_pandas()
    return {(r.optimizer, r.lr): r for r in table.itertuples(index=False)}


@pytest.mark.slow
def test_live_pruning_keeps_verdicts_and_matches_the_replay(tmp_path, write_grid):
    runner = CliRunner()
    for prune, out in (("false", "full"), ('"optimistic"', "pruned")):
        grid = write_grid(GRID.format(prune=prune), f"{out}.toml")
        result = runner.invoke(app, ["sweep", str(grid), "--out", str(tmp_path / out)])
        assert result.exit_code == 0, result.output
    full, pruned = rows(tmp_path / "full"), rows(tmp_path / "pruned")
    assert {k: r.status for k, r in full.items()} == {k: r.status for k, r in pruned.items()}
    assert not any(r.pruned for r in full.values())
    # a hopeless LR: pruned well before its 12 epochs (120 steps), verdict budget
    hopeless = pruned[("gd", 1e-5)]
    assert hopeless.status == "budget" and hopeless.pruned
    assert hopeless.pruned_at_step == hopeless.steps <= 60
    # a slow one that reaches (gd at 0.1 needs most of its epochs) is not pruned
    slow = pruned[("gd", 0.1)]
    assert slow.status == "reached" and not slow.pruned and slow.steps_to_target > 60

    # the replay of the full sweep predicts exactly what the live rule and its
    # frontier guard did: which trials stay pruned, where, and which ran again
    from analysis.load import load_results
    from analysis.replay import replay, stop_rules

    loaded = load_results(str(tmp_path / "full"))
    stops = stop_rules(loaded.manifests)
    replayed = replay(loaded.trials, loaded.curves, stops, "optimistic", guard=True)
    predicted = {(r.optimizer, r.lr): r.pruned_at_step for r in replayed.itertuples() if r.pruned}
    live = {k: r.pruned_at_step for k, r in pruned.items() if r.pruned}
    assert predicted == live and live
    rechecked = {(r.optimizer, r.lr) for r in replayed.itertuples() if r.rechecked}
    assert rechecked == {k for k, r in pruned.items() if r.rechecked} and rechecked

    result = runner.invoke(app, ["replay", str(tmp_path / "full")])
    assert result.exit_code == 0, result.output
    assert "rule optimistic alone: 6 of 6 trials keep their verdict" in result.output
    assert "rule optimistic + frontier guard: 6 of 6 trials keep their verdict" in result.output
    refused = runner.invoke(app, ["replay", str(tmp_path / "pruned")])
    assert refused.exit_code == 2 and "were pruned" in refused.output

    # the report says what pruning saved, and marks the pruned cells
    result = runner.invoke(app, ["report", str(tmp_path / "pruned")])
    assert result.exit_code == 0, result.output
    index = (tmp_path / "pruned" / "report" / "index.html").read_text()
    assert f"the pruning rule stopped {len(live)} of 6 trials" in index
    assert f"Frontier guard: {len(rechecked)} pruned trials next to a reached cell" in index
    cells = (tmp_path / "pruned" / "report" / "tables" / "cells.csv").read_text()
    assert "n_pruned" in cells.splitlines()[0]
