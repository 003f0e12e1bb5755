"""The digits example (examples/digits, grids/digits.toml): a user's loader and
builder, named by reference, checked alone and through a real sweep."""

from __future__ import annotations

import json
import tomllib
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from examples.digits.data import load
from examples.digits.models import build
from tests import helpers

ROOT = helpers.ROOT
GRID = ROOT / "grids" / "digits.toml"
N_IMAGES = 1797


def test_the_loader_gives_a_fixed_stratified_split_of_scaled_images():
    (x_train, y_train), (x_val, y_val) = load()
    assert x_train.shape == (1437, 8, 8, 1) and x_val.shape == (360, 8, 8, 1)
    for x in (x_train, x_val):
        assert x.dtype == np.float32 and x.min() == 0.0 and x.max() == 1.0
    for y in (y_train, y_val):
        assert y.dtype == np.int64 and y.ndim == 1 and set(np.unique(y)) == set(range(10))
    # stratified: each class is 20 % of its images in validation, to one image
    total = np.bincount(np.concatenate([y_train, y_val]), minlength=10)
    assert total.sum() == N_IMAGES
    assert np.all(np.abs(np.bincount(y_val, minlength=10) - 0.2 * total) <= 1)

    (x_again, y_again), (xv_again, yv_again) = load()  # the same split every call
    assert np.array_equal(x_again, x_train) and np.array_equal(y_again, y_train)
    assert np.array_equal(xv_again, x_val) and np.array_equal(yv_again, y_val)
    (_, _), (x_other, _) = load(seed=1)  # the seed decides it
    assert not np.array_equal(x_other, x_val)


def test_the_builder_returns_an_uncompiled_model_that_width_scales():
    from keras import Model

    from harness.grid.specs import ModelRef
    from harness.trial.models import build_model

    model = build(1.0, input_shape=(8, 8, 1), num_classes=7)
    assert isinstance(model, Model) and not model.compiled  # lrbench compiles it
    assert model.output_shape == (None, 7)
    assert build(1.0).count_params() == 9802
    sizes = [build(w).count_params() for w in (0.5, 1, 2)]
    assert sizes[0] < sizes[1] < sizes[2]
    # as lrbench builds it from the grid's reference, with a keyword
    ref = ModelRef("digits_cnn", "examples.digits.models:build", 2.0, {"hidden": 8})
    wide = build_model(ref, (8, 8, 1), 10, [str(ROOT)])
    assert wide.count_params() == build(2.0, hidden=8).count_params()


def _toml(value: Any) -> str:
    """A value as TOML (strings, numbers, booleans, lists and inline tables)."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return json.dumps(value)
    if isinstance(value, int | float):
        return repr(value)
    if isinstance(value, list):
        return "[" + ", ".join(_toml(v) for v in value) + "]"
    return "{ " + ", ".join(f"{k} = {_toml(v)}" for k, v in value.items()) + " }"


def _write(grid: dict[str, Any], path: Path) -> None:
    tables = {k: v for k, v in grid.items() if k in ("stop", "resources")}
    lines = [f"{k} = {_toml(v)}" for k, v in grid.items() if k not in tables]
    for name, table in tables.items():
        lines += [f"[{name}]", *(f"{k} = {_toml(v)}" for k, v in table.items())]
    path.write_text("\n".join(lines) + "\n")


def _lrbench(*args: str) -> None:
    """Run an ``lrbench`` command in this process (no second TensorFlow import)."""
    from typer.testing import CliRunner

    from lrbench.cli import app

    result = CliRunner().invoke(app, list(args))
    assert result.exit_code == 0, f"{result.output[-2000:]}\n{result.exception!r}"


@pytest.mark.slow
def test_a_shrunk_digits_grid_sweeps_and_reports(tmp_path, monkeypatch):
    from harness.store.results import Store

    # from the repository root, as a user runs it: the grid sits in a temporary
    # folder, so its references (examples.digits...) resolve through the
    # working directory
    monkeypatch.chdir(ROOT)

    grid = tomllib.loads(GRID.read_text())
    # the real file's model and data references; adam at a good LR and at one that
    # diverges, epochs bounding the sweep (adam at 0.01 reaches 0.9 in 2.3 epochs)
    grid.update(name="digits-test", optimizers=["adam"], lr=[0.01, 100.0])
    grid["stop"].update(max_epochs=4, budget_s=600)
    path = tmp_path / "digits-test.toml"
    _write(grid, path)
    out = tmp_path / "out"
    _lrbench("sweep", str(path), "--out", str(out))
    _lrbench("report", str(out))

    trials = Store(str(out)).read_trials()
    assert len(trials) == 2
    assert set(trials.builder) == {"examples.digits.models:build"}
    assert set(trials.input_shape) == {"[8, 8, 1]"}
    assert set(trials.num_classes) == {10}
    assert all(trials.builder_fingerprint.str.len() > 0)
    assert set(trials.n_params) == {9802}
    assert (trials.status == "reached").any()
    assert (out / "report" / "index.html").is_file()
