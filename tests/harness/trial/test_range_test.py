"""The LR range test on real tiny training, and ``lrbench find-lr``."""

from __future__ import annotations

import math
import shutil
from dataclasses import asdict

import numpy as np
import pytest
from typer.testing import CliRunner

from analysis.finder import suggest as F
from harness.grid.specs import FinderParams, FinderSpec
from harness.store.results import Store
from harness.trial.range_test import lr_range_test, run_finder
from lrbench.cli import app
from tests import helpers

pytestmark = pytest.mark.slow
runner = CliRunner()
PARAMS = FinderParams(start_lr=1e-5, end_lr=100.0, num_steps=150)


def adam_spec(**changes) -> FinderSpec:
    """The setup of ``helpers.BASE`` (tiny_cnn, adam, mnist5k) as a range test."""
    return FinderSpec(**{**asdict(helpers.BASE.setup()), "params": PARAMS, **changes})


def test_curve_descends_then_diverges_and_suggestions_lie_in_the_range(mnist5k):
    out = run_finder(adam_spec(), mnist5k)
    assert out.stop_reason in ("diverged", "nan")
    lr = np.array([p.lr for p in out.points])
    smooth = np.array([p.smoothed_loss for p in out.points])
    steps = [p.step for p in out.points]
    assert steps == list(range(1, len(steps) + 1)) and len(steps) < PARAMS.num_steps
    np.testing.assert_allclose(lr, [PARAMS.lr_at(s - 1) for s in steps], rtol=1e-5)
    low = int(np.nanargmin(smooth))
    assert smooth[low] < 0.7 * smooth[0]  # it descended
    assert not math.isfinite(smooth[-1]) or smooth[-1] > PARAMS.stop_factor * smooth[low]
    for rule, value in F.suggest(lr, smooth).items():
        assert math.isfinite(value) and PARAMS.start_lr / 10 <= value <= PARAMS.end_lr, rule
    assert F.suggest(lr, smooth)["steepest"] >= PARAMS.start_lr


def test_initial_weights_are_restored(mnist5k):
    import keras

    from harness.grid.specs import ModelRef
    from harness.trial.models import build_loss, build_model
    from harness.trial.train import make_dataset

    keras.utils.set_random_seed(0)
    model = build_model(ModelRef("tiny_cnn", "", 1.0))
    before = [w.copy() for w in model.get_weights()]
    data = mnist5k.head(1000)
    points, reason = lr_range_test(
        model,
        "momentum",
        {},
        build_loss("crossentropy", "softmax"),
        make_dataset(data, 100, 0, 1),
        100,
        10,
        FinderParams(start_lr=1e-3, end_lr=10.0, num_steps=40),
    )
    assert len(points) > 5
    after = model.get_weights()
    assert all(np.array_equal(a, b) for a, b in zip(before, after, strict=True))


GRID = """
name = "finder-grid"
datasets = [{ name = "mnist5k", train_size = 2000 }]
models = ["tiny_cnn"]
optimizers = ["gd", "adam"]
lr = [0.01, 0.1]
[stop]
target = 0.8
budget_s = 3600
max_epochs = 5
"""


def test_find_lr_stores_curves_resumes_and_draws(write_grid, tmp_path):
    grid = write_grid(GRID)
    out = tmp_path / "res"
    args = ["find-lr", str(grid), "--out", str(out), "--steps", "60", "--start", "1e-4"]
    first = runner.invoke(app, [*args, "--optimizer", "adam"])
    assert first.exit_code == 0, first.output
    assert "[1/1] adam" in first.output and "steepest" in first.output
    assert (out / "finder.png").stat().st_size > 10_000 and (out / "finder.svg").exists()
    again = runner.invoke(app, args)  # adam is stored: only gd runs
    assert again.exit_code == 0, again.output
    assert "1 of 2 range tests already stored" in again.output and "[1/1] gd" in again.output
    points = Store(str(out)).read_finder()
    assert set(points["optimizer"]) == {"gd", "adam"}
    assert (points.groupby("finder_id")["step"].max() <= 60).all()
    assert (points["train_size"] == 2000).all() and (points["start_lr"] == 1e-4).all()


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--end", "1e-8"], "--end: must be above the start LR (1e-07)"),
        (["--optimizer", "lion"], "--optimizer: 'lion' is not in"),
        (["--steps", "3"], "--steps: must be >= 10"),
    ],
)
def test_find_lr_bad_input_is_one_line(write_grid, tmp_path, extra, message):
    result = runner.invoke(app, ["find-lr", str(write_grid(GRID)), "--out", str(tmp_path), *extra])
    assert result.exit_code == 2
    lines = result.output.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and message in lines[0], lines


def test_report_sets_suggestions_against_the_real_sweep(real_sweep, tmp_path):
    from tests.conftest import ANALYSIS_GRID

    out = tmp_path / "sweep"
    shutil.copytree(real_sweep, out, ignore=shutil.ignore_patterns("report*"))
    grid = tmp_path / "grid.toml"
    grid.write_text(ANALYSIS_GRID)
    found = runner.invoke(app, ["find-lr", str(grid), "--out", str(out), "--steps", "120"])
    assert found.exit_code == 0, found.output
    result = runner.invoke(app, ["report", str(out)])
    assert result.exit_code == 0, result.output
    report = out / "report"
    assert (report / "figures" / "finder.png").exists()
    import pandas as pd

    compared = pd.read_csv(report / "tables" / "finder.csv")
    table = pd.read_csv(report / "tables" / "optimizers.csv").set_index("series")
    assert set(compared["rule"]) == set(F.RULES)
    for _, row in compared.iterrows():  # each suggestion next to its optimizer's measured best
        assert row["best_lr"] == pytest.approx(table.loc[row["optimizer"], "best_lr"])
        expected = math.log10(row["suggested_lr"] / row["best_lr"])
        assert row["decades_from_best"] == pytest.approx(expected)
    assert "LR range test" in (report / "index.html").read_text()


def test_find_lr_optimizer_keyword_typo_is_one_line(write_grid, tmp_path):
    grid = write_grid(GRID.replace('"adam"]', '{ name = "adam", kwargs = { beta_one = 0.8 } }]'))
    result = runner.invoke(app, ["find-lr", str(grid), "--out", str(tmp_path / "r")])
    assert result.exit_code == 2, result.output
    line = result.output.strip().splitlines()[-1]
    assert "optimizers[1].kwargs.beta_one: not a keyword of adam" in line, result.output
