"""A store that cannot be written stops the sweep at once (``FatalError``):
one line, exit 1, no trial retrained, nothing half-written."""

from __future__ import annotations

import pytest
from typer.testing import CliRunner

from lrbench.cli import app

pytestmark = pytest.mark.slow

GRID = """
name = "fatal"
datasets = [{ name = "mnist5k", train_size = 500 }]
models = ["tiny_cnn"]
optimizers = ["gd"]
lr = [1e-5, 1e-4, 1e-3, 1e-2]
[stop]
budget_s = 600
max_epochs = 1
"""


def test_an_unwritable_store_is_one_fatal_line_and_the_sweep_stops(tmp_path, write_grid):
    out = tmp_path / "out"
    out.mkdir()
    (out / "curves").write_text("a file where the curves folder belongs")
    result = CliRunner().invoke(app, ["sweep", str(write_grid(GRID)), "--out", str(out)])
    assert result.exit_code == 1, result.output
    errors = [line for line in result.output.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and "cannot store results" in errors[0] and str(out) in errors[0]
    assert "Traceback" not in result.output
    assert not (out / "trials").exists()  # no row written, no error rows either
    # the manifest says the run started and never closed
    assert '"finished_at"' not in (out / "manifest.json").read_text()
