"""The same grid, swept twice, gives bit-identical curves (docs/reproduction.md)."""

from __future__ import annotations

import pandas as pd
import pytest

from harness.grid.parse import load_grid
from harness.grid.resolved import ResolvedGrid
from harness.store.results import Store
from harness.sweep.driver import run_sweep

pytestmark = pytest.mark.slow

# Three trials of one setup on one CPU each: on a 2-core machine Ray runs two workers,
# so one of them trains a second trial on its reused model, and which one does may
# differ between the two sweeps. Epochs end every trial (1,000 images, 10 steps an
# epoch, 3 epochs), never the clock, so the outcome does not depend on the machine.
GRID = """
name = "reproducible"
datasets = [{ name = "mnist5k", train_size = 1000 }]
models = ["tiny_cnn"]
optimizers = ["adam"]
lr = [0.001, 0.01, 0.1]
[stop]
target = 0.8
budget_s = 3600
max_epochs = 3
[resources]
cpus = 1
"""
TIMING = ["elapsed_s"]  # the only curve column that depends on the clock
# the trials' outcome columns that do not depend on the clock
OUTCOME = [
    "trial_id",
    "status",
    "steps",
    "epochs",
    "steps_to_target",
    "final_train_loss",
    "final_train_acc",
    "best_train_acc",
    "final_val_acc",
    "n_params",
    "cpus",
]


def _sorted(df: pd.DataFrame, by: list[str]) -> pd.DataFrame:
    return df.sort_values(by).reset_index(drop=True)


def test_two_sweeps_of_one_grid_give_bit_identical_curves(tmp_path, write_grid):
    grid = ResolvedGrid.fixed(load_grid(write_grid(GRID)))
    outs = [tmp_path / "first", tmp_path / "second"]
    for out in outs:
        result = run_sweep(grid, str(out))
        assert result.ran == 3 and result.unfinished == 0, result

    first, second = (Store(str(out)) for out in outs)
    curves = [_sorted(s.read_curves(), ["trial_id", "step"]) for s in (first, second)]
    trials = [_sorted(s.read_trials(), ["trial_id"]) for s in (first, second)]
    assert set(curves[0].trial_id) == {t.trial_id for t in grid.expand()}
    assert list(curves[0].trial_id) == list(curves[1].trial_id)
    assert (trials[0].error.isna() & (trials[0].cpus == 1.0)).all()
    # exact: every loss and accuracy at every check, to the last bit
    pd.testing.assert_frame_equal(
        curves[0].drop(columns=TIMING), curves[1].drop(columns=TIMING), check_exact=True
    )
    pd.testing.assert_frame_equal(trials[0][OUTCOME], trials[1][OUTCOME], check_exact=True)
    # and the three LRs trained apart, so the comparison compares something
    final = curves[0].groupby("trial_id").train_loss.last()
    assert final.nunique() == 3
    assert len(curves[0]) >= 3 * 10
