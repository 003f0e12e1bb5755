"""Pruning and its frontier guard in real sweeps (Ray, TensorFlow, the bundled
MNIST subset): a hopeless trial is pruned, a series with no reached cell keeps
its pruned verdicts, and a grown grid whose new LR reaches puts the stored
pruned trial next to it on the frontier: it is released from its compacted
part, run again in full, and takes its real verdict."""

from __future__ import annotations

import pandas as pd
import pytest

from harness.grid.parse import load_grid
from harness.grid.resolved import ResolvedGrid
from harness.store.results import Store
from harness.sweep.driver import run_sweep

pytestmark = pytest.mark.slow

GRID = """
name = "guard-test"
datasets = [{{ name = "mnist5k", train_size = 2000 }}]
models = ["tiny_cnn"]
optimizers = ["gd"]
lr = {lrs}
batch_size = 50
[stop]
target = 0.85
window = 40
budget_s = 3600
max_epochs = 10
prune = true
"""
# 40 steps an epoch, 400 in all: epochs end the trials, not the clock. gd at
# 1e-5 and 1e-4 stays near chance (pruned after the warm-up, a quarter of the
# steps); at 0.1 it reaches 0.85 in about 160 steps.
FULL_STEPS = 400


def _rows(out) -> pd.DataFrame:
    return Store(str(out)).read_trials().set_index("lr").sort_index()


def test_pruned_trials_next_to_a_new_reached_cell_are_rechecked_in_full(tmp_path, write_grid):
    out = tmp_path / "out"
    first = ResolvedGrid.fixed(load_grid(write_grid(GRID.format(lrs="[1e-5, 1e-4]"))))
    assert first.spec.stop.prune == "optimistic"
    result = run_sweep(first, str(out))
    assert result.rechecked == 0 and result.compacted == 2
    rows = _rows(out)
    # hopeless trials are pruned; with no reached cell beside them, they stay so
    assert list(rows.status) == ["budget", "budget"]
    assert rows.pruned.all() and not rows.rechecked.any()
    assert (rows.steps < FULL_STEPS).all() and (rows.pruned_at_step == rows.steps).all()
    assert list((out / "trials").glob("part-*.parquet"))  # their rows are in a part
    pruned_at = int(rows.loc[1e-4, "pruned_at_step"])

    grown = ResolvedGrid.fixed(
        load_grid(write_grid(GRID.format(lrs="[1e-5, 1e-4, 0.1]"), name="grown.toml"))
    )
    result = run_sweep(grown, str(out))
    assert result.already_stored == 2 and result.ran == 1 and result.rechecked == 1
    rows = _rows(out)
    assert len(rows) == 3 and rows.trial_id.is_unique  # the recheck replaced the row
    assert rows.loc[0.1, "status"] == "reached"
    recheck = rows.loc[1e-4]  # next to the band: run again in full
    assert recheck.status == "budget" and recheck.rechecked and not recheck.pruned
    assert recheck.steps == FULL_STEPS and recheck.pruned_at_step == pruned_at
    far = rows.loc[1e-5]  # two LRs from the band: its pruned verdict stands
    assert far.pruned and not far.rechecked and far.steps < FULL_STEPS
    curves = Store(str(out)).read_curves()
    steps = curves[curves.trial_id == recheck.trial_id].step
    assert steps.max() == FULL_STEPS and steps.is_unique  # the full run's curve alone

    again = run_sweep(grown, str(out))  # nothing left to run or recheck
    assert again.ran == 0 and again.rechecked == 0 and again.already_stored == 3
