"""Growing a sweep in place: a superset grid runs only its new trials."""

from __future__ import annotations

import json
import tomllib

import pytest
from typer.testing import CliRunner

from harness.grid.growth import compare
from harness.grid.parse import parse_grid
from harness.grid.resolved import ResolvedGrid
from lrbench.cli import app

runner = CliRunner()

BASE = """
name = "grow"
datasets = [{ name = "mnist5k", train_size = 500 }]
models = ["tiny_cnn"]
optimizers = ["gd"]
lr = [100.0]
seeds = [0]
[stop]
target = 0.8
budget_s = 3600
max_epochs = 2
"""


def _grid(text: str):
    return ResolvedGrid.fixed(parse_grid(tomllib.loads(text), "grow.toml"))


def _stored(text: str = BASE) -> dict:
    return _grid(text).to_json()


def test_added_values_on_each_axis_are_growth():
    grown = BASE.replace("lr = [100.0]", "lr = [100.0, 0.01]").replace(
        'optimizers = ["gd"]', 'optimizers = ["gd", "adam"]'
    )
    grown = grown.replace("seeds = [0]", "seeds = [0, 1]")
    wider = 'models = [{ name = "tiny_cnn", widths = [1, 2] }]'
    grown = grown.replace('models = ["tiny_cnn"]', wider)
    change = compare(_stored(), _grid(grown))
    assert change.grows and change.problem is None
    assert set(change.added) == {"lrs", "optimizers", "seeds", "models"}
    assert change.added["lrs"] == [0.01] and change.added["seeds"] == [1]
    assert change.added["models"] == [{"name": "tiny_cnn", "kwargs": {}, "width": 2.0}]
    pruned = BASE.replace("budget_s = 3600", "budget_s = 3600\nprune = true")
    same = compare(_stored(), _grid(pruned))
    assert same.same and not same.grows  # pruning is outside trial ids


@pytest.mark.parametrize(
    ("edit", "says"),
    [
        (("target = 0.8", "target = 0.9"), "stop.target 0.8 -> 0.9"),
        (("max_epochs = 2", "max_epochs = 3"), "stop.max_epochs 2 -> 3"),
        (("lr = [100.0]", "lr = [0.01]"), "lrs: drops 100.0, stored here"),
        (("train_size = 500", "train_size = 400"), 'datasets: drops {name = "mnist5k"'),
    ],
)
def test_incomparable_or_shrinking_changes_are_refused(edit, says):
    change = compare(_stored(), _grid(BASE.replace(*edit)))
    assert change.problem is not None and says in change.problem, change.problem


@pytest.mark.slow
def test_a_grown_grid_runs_only_its_new_trials(write_grid, tmp_path):
    out = tmp_path / "out"
    first = write_grid(BASE, "v1.toml")
    result = runner.invoke(app, ["sweep", str(first), "--out", str(out)])
    assert result.exit_code == 0, result.output
    assert "1 trials (0 already stored, 1 run now)" in result.output
    assert "; 1 compacted" in result.output  # a finished sweep merges its files
    assert [p.name.startswith("part-") for p in (out / "trials").iterdir()] == [True]

    grown = write_grid(BASE.replace("lr = [100.0]", "lr = [100.0, 0.01]"), "v2.toml")
    shown = runner.invoke(app, ["show", str(grown), "--out", str(out), "--no-build"])
    assert shown.exit_code == 0, shown.output
    assert f"stored      1 of 2 in {out}; 1 to run" in shown.output
    assert "grows       the stored grid: lrs +1" in shown.output

    result = runner.invoke(app, ["sweep", str(grown), "--out", str(out)])
    assert result.exit_code == 0, result.output
    assert "2 trials (1 already stored, 1 run now)" in result.output
    assert len(list((out / "trials").glob("part-*.parquet"))) == 2
    manifest = json.loads((out / "manifest.json").read_text())
    versions = manifest["grid_versions"]
    assert [v["grid"]["lrs"] for v in versions] == [[100.0], [0.01, 100.0]]
    assert manifest["grid"]["lrs"] == [0.01, 100.0]
    assert manifest["grid_digest"] == versions[-1]["digest"]
    assert [r["grid_digest"] for r in manifest["runs"]] == [v["digest"] for v in versions]

    # the first version still resumes there (nothing to run), and leaves the grid grown
    result = runner.invoke(app, ["sweep", str(first), "--out", str(out)])
    assert result.exit_code == 0 and "1 already stored, 0 run now" in result.output
    assert json.loads((out / "manifest.json").read_text())["grid"]["lrs"] == [0.01, 100.0]

    # the report covers the union
    result = runner.invoke(app, ["report", str(out), "--out", str(tmp_path / "r")])
    assert result.exit_code == 0, result.output
    cells = (tmp_path / "r" / "tables" / "cells.csv").read_text()
    assert "100.0" in cells and "0.01" in cells

    # a change that makes the rows incomparable: one line, exit 2, nothing run
    other = write_grid(BASE.replace("target = 0.8", "target = 0.9"), "v3.toml")
    for command in ("sweep", "show"):
        result = runner.invoke(app, [command, str(other), "--out", str(out)])
        lines = result.output.strip().splitlines()
        assert result.exit_code == 2 and len(lines) == 1, result.output
        assert "stop.target 0.8 -> 0.9 would make stored and new trials incomparable" in lines[0]
        assert lines[0].endswith("use another --out")
