"""``grids/pitfalls.toml``, reduced: MSE on a softmax output needs a higher LR
than cross-entropy. A real sweep on the bundled MNIST subset."""

from __future__ import annotations

import dataclasses

import pytest

from analysis import tables as T
from analysis.load import load_results
from analysis.report.shifts import valley_shifts
from harness.grid.parse import load_grid
from harness.grid.resolved import ResolvedGrid
from harness.grid.specs import Fixed
from harness.sweep.driver import run_sweep
from tests import helpers

pytestmark = pytest.mark.slow
GRID = helpers.ROOT / "grids" / "pitfalls.toml"


def test_mse_best_lr_is_above_crossentropys(tmp_path):
    grid = load_grid(GRID)
    softmax = [m for m in grid.models if m.kwargs["output_activation"] == "softmax"]
    assert {m.kwargs["output_activation"] for m in grid.models} == {"softmax", "sigmoid"}
    assert set(grid.losses) == {"mse", "crossentropy"} and grid.datasets[0].train_size == 1000
    reduced = dataclasses.replace(
        grid,
        models=tuple(softmax),
        lr=Fixed((0.1, 1.0, 10.0)),
        # epochs end the trials, not the clock: on these 1,000 images cross-entropy
        # reaches 0.9 in 9 epochs at LR 1 (31 at 0.1), MSE in 13 at LR 10 (85 at 1)
        stop=dataclasses.replace(grid.stop, budget_s=3600.0, max_epochs=50),
    )
    result = run_sweep(ResolvedGrid.fixed(reduced), str(tmp_path / "pitfalls"))
    assert result.unfinished == 0
    results = load_results([str(tmp_path / "pitfalls")])
    table = T.optimizer_table(results.trials).set_index("series")
    best = {loss: table.loc[f"gd (loss={loss})", "best_lr"] for loss in ("mse", "crossentropy")}
    assert best["mse"] > best["crossentropy"], table
    assert best["mse"] > 1
    shifts = valley_shifts(results.trials, table.reset_index(), results.curves)
    mse = shifts.set_index("series").loc["gd (loss=mse)"]
    assert mse["reference"] == "gd (loss=crossentropy)" and mse["best_shift_decades"] >= 1
    assert mse["initial_loss"] < 0.2 < 2.0 < shifts["initial_loss"].max()  # the loss scale
