"""A real Ray Tune sweep on the bundled MNIST subset."""

from __future__ import annotations

import pandas as pd
import pyarrow.parquet as pq
import pytest

from harness.grid.parse import load_grid
from harness.grid.resolved import ResolvedGrid
from harness.store.schemas import curves_schema, trials_schema
from harness.sweep.driver import run_sweep

pytestmark = pytest.mark.slow

GRID = """
name = "sweep-test"
datasets = ["mnist5k"]
models = ["tiny_cnn"]
optimizers = ["gd", "adam"]
lr = [1e-6, 0.01, 100.0]
[stop]
target = 0.8
budget_s = 3600
max_epochs = 5
"""
# Epochs end the trials, not the clock: adam at 0.01 reaches 0.8 in about 1.6 epochs.


def test_real_sweep_writes_documented_parquet_and_resumes(tmp_path, write_grid):
    grid = ResolvedGrid.fixed(load_grid(write_grid(GRID)))
    out = tmp_path / "out"
    result = run_sweep(grid, str(out))
    assert result.total == 6 and result.ran == 6 and result.unfinished == 0

    # plain pandas reads the datasets back, with the documented columns and types
    trials = pd.read_parquet(out / "trials")
    curves = pd.read_parquet(out / "curves")
    assert set(trials.columns) == set(trials_schema().names)
    assert set(curves.columns) == set(curves_schema().names)
    schema = pq.read_schema(next((out / "trials").glob("*.parquet")))
    for name in ("lr", "time_to_target_s", "train_s", "startup_s"):
        assert str(schema.field(name).type) == "double"
    for name in ("steps_to_target", "n_params", "batch_size"):
        assert str(schema.field(name).type) == "int64"
    assert len(trials) == 6 and trials.trial_id.is_unique
    assert set(trials.trial_id) == {t.trial_id for t in grid.expand()}
    assert set(curves.trial_id) == set(trials.trial_id)

    by = trials.set_index(["optimizer", "lr"])["status"]
    assert by[("adam", 0.01)] == "reached"
    assert by[("gd", 1e-6)] == "budget" and by[("adam", 1e-6)] == "budget"
    assert by[("gd", 100.0)] == "diverged" and by[("adam", 100.0)] == "diverged"
    reached = trials[trials.status == "reached"]
    assert reached.time_to_target_s.notna().all() and (reached.steps_to_target > 0).all()
    assert trials.sweep.eq("sweep-test").all() and trials.host.str.len().gt(0).all()
    assert trials.node_id.nunique() == 1 and trials.node_id.str.len().gt(0).all()
    assert trials.node_ip.nunique() == 1 and trials.node_ip.str.len().gt(0).all()
    # reused workers: fewer processes than trials, and one CPU each
    assert trials.worker_pid.nunique() < len(trials)
    assert (trials.cpus == 1.0).all()

    manifest = (out / "manifest.json").read_text()
    assert f'"grid_digest": "{grid.digest}"' in manifest

    again = run_sweep(grid, str(out))
    assert again.ran == 0 and again.already_stored == 6
    assert len(pd.read_parquet(out / "trials")) == 6
