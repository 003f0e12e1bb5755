from __future__ import annotations

import subprocess
import sys

import pytest
from typer.testing import CliRunner

from lrbench.cli import app

runner = CliRunner()


def test_show_prints_axes_count_and_worst_case():
    result = runner.invoke(app, ["show", "grids/paper.toml", "--cpus", "2", "--no-build"])
    assert result.exit_code == 0, result.output
    assert "trials      288" in result.output
    assert "48 values, 1e-06 .. 100" in result.output
    assert "worst case  4h 50m" in result.output


def test_bad_grid_is_one_line_with_nonzero_exit(write_grid):
    path = write_grid('models = ["tiny_cnn"]\noptimizers = ["adamm"]\nlr = [0.1]\n')
    for command in ("show", "sweep"):
        result = runner.invoke(app, [command, str(path)])
        assert result.exit_code == 2
        lines = result.output.strip().splitlines()
        assert lines == [
            f"error: {path}: optimizers[0].name: unknown optimizer 'adamm'; "
            "allowed: gd, momentum, adam, adagrad, adadelta, rmsprop, sgd, adamw, "
            "adamax, nadam, ftrl, lion, lamb, adafactor, muon"
        ]


def test_missing_grid_file(tmp_path):
    result = runner.invoke(app, ["sweep", str(tmp_path / "nope.toml")])
    assert result.exit_code == 2
    assert "nope.toml: cannot read grid file" in result.output


@pytest.mark.slow  # starts Ray, and the check imports TensorFlow
def test_bad_optimizer_keyword_is_caught_before_any_trial(write_grid, tmp_path):
    path = write_grid(
        'models = ["tiny_cnn"]\n'
        'optimizers = [{name = "momentum", kwargs = {momentom = 0.5}}]\nlr = [0.1]\n'
    )
    result = runner.invoke(app, ["sweep", str(path), "--out", str(tmp_path / "o")])
    assert result.exit_code == 2
    assert "optimizers[0].kwargs.momentom: not a keyword of momentum; allowed:" in result.output
    assert not (tmp_path / "o").exists()


def test_missing_dataset_is_one_line(write_grid, tmp_path):
    path = write_grid(
        'datasets = ["mnist"]\nmodels = ["tiny_cnn"]\noptimizers = ["adam"]\nlr = [0.1]\n'
    )
    result = runner.invoke(
        app, ["sweep", str(path), "--out", str(tmp_path / "o"), "--data-dir", str(tmp_path)]
    )
    assert result.exit_code == 2
    assert result.output.startswith("error: dataset 'mnist': mnist.npz not found in")


def test_help_is_fast_and_light():
    code = (
        "import sys; from lrbench.cli import app\n"
        "assert 'tensorflow' not in sys.modules and 'ray' not in sys.modules"
    )
    subprocess.run([sys.executable, "-c", code], check=True)
    result = subprocess.run(
        [sys.executable, "-m", "lrbench.cli", "--help"], capture_output=True, text=True, check=True
    )
    assert "sweep" in result.stdout and "show" in result.stdout
