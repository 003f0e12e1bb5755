from __future__ import annotations

import glob
import hashlib

import pytest

from harness.errors import GridError
from harness.grid.parse import load_grid, log_spaced, parse_grid
from harness.grid.plan import plan
from harness.grid.resolved import ResolvedGrid
from harness.grid.specs import Fixed
from tests import helpers

BASE = {
    "datasets": ["mnist5k"],
    "models": [{"name": "tiny_cnn", "widths": [1, 2]}],
    "optimizers": ["gd", {"name": "momentum", "kwargs": {"momentum": 0.5}}, "adam"],
    "lr": {"start": 1e-6, "stop": 100, "num": 48},
    "batch_size": 100,
    "seeds": 2,
    "stop": {"target": 0.97, "budget_s": 120},
}


def grid(**changes):
    return ResolvedGrid.fixed(parse_grid({**BASE, **changes}, "g.toml"))


def test_expansion_counts_every_axis():
    trials = grid().expand()
    assert len(trials) == 2 * 3 * 48 * 2  # widths x optimizers x lrs x seeds
    assert len({t.trial_id for t in trials}) == len(trials)
    assert {t.width for t in trials} == {1.0, 2.0}
    assert {t.seed for t in trials} == {0, 1}
    momentum = [t for t in trials if t.optimizer == "momentum"]
    assert momentum[0].optimizer_kwargs == {"momentum": 0.5}


def test_log_spaced_includes_endpoints():
    lrs = log_spaced(1e-6, 100, 48)
    assert len(lrs) == 48 and lrs[0] == 1e-6 and lrs[-1] == 100.0
    ratios = [b / a for a, b in zip(lrs, lrs[1:], strict=False)]
    assert max(ratios) / min(ratios) < 1.0001  # evenly spaced in log


def test_trial_ids_are_stable_and_ignore_the_sweep_name():
    a = grid().expand()
    b = ResolvedGrid.fixed(parse_grid({**BASE, "name": "other"}, "other.toml")).expand()
    assert [t.trial_id for t in a] == [t.trial_id for t in b]
    # a known id pins the hash across machines and versions
    first = a[0]
    assert (first.optimizer, first.lr, first.width, first.seed) == ("gd", 1e-6, 1.0, 0)
    # Stored results are matched to their trials by this id: a change here means every
    # existing results directory (and nightly history) re-runs instead of resuming.
    assert first.trial_id == "e5e6334eacc5a593"


def test_digest_ignores_resources_but_not_axes():
    assert grid().digest == grid(resources={"cpus": 2}).digest
    assert grid().digest != grid(lr=[0.1]).digest


def test_duplicate_entries_expand_once():
    twice = grid(optimizers=["adam", "adam"]).expand()
    assert len(twice) == len(grid(optimizers=["adam"]).expand())


def test_shipped_grids_load():
    paper = load_grid("grids/paper.toml")
    assert len(ResolvedGrid.fixed(paper).expand()) == 6 * 48
    assert paper.stop.target == 0.97 and paper.stop.budget_s == 120
    assert paper.stop.metric == "running"
    assert isinstance(paper.lr, Fixed)
    assert paper.lr.lrs[0] == 1e-6 and paper.lr.lrs[-1] == 100.0
    assert [o.name for o in paper.optimizers] == [
        "gd",
        "momentum",
        "adam",
        "adagrad",
        "adadelta",
        "rmsprop",
    ]
    assert paper.optimizers[1].kwargs == {"momentum": 0.5}
    smoke = load_grid("grids/smoke.toml")
    assert isinstance(smoke.lr, Fixed)
    assert 8 <= len(smoke.lr.lrs) <= 12
    assert smoke.lr.lrs[0] == 1e-5 and smoke.lr.lrs[-1] == 100.0
    assert smoke.models[0].name == "tiny_cnn" and smoke.datasets[0].name == "mnist5k"


def test_plan_reports_count_and_worst_case():
    lines = plan(grid(), cpus=2)
    text = "\n".join(lines)
    assert "trials      576" in text
    assert "worst case  9h 40m" in text  # 288 rounds x (120 + 1) s
    assert "cannot run" in "\n".join(plan(grid(resources={"gpus": 1}), cpus=2, gpus=0))


@pytest.mark.parametrize(
    ("changes", "field", "message"),
    [
        ({"optimzers": ["adam"]}, "optimzers", "unknown key; allowed: name, description"),
        (
            {"optimizers": ["adamm"]},
            "optimizers[0].name",
            "unknown optimizer 'adamm'; allowed: gd,",
        ),
        ({"models": ["resnet"]}, "models[0].name", "unknown value 'resnet'; allowed: tutorial_cnn"),
        ({"datasets": ["cifar"]}, "datasets[0].name", "unknown value 'cifar'; allowed: mnist,"),
        ({"stop": {"budget_s": -5}}, "stop.budget_s", "must be > 0, got -5"),
        ({"stop": {"budget_s": 0}}, "stop.budget_s", "must be > 0, got 0"),
        ({"stop": {"target": 1.5}}, "stop.target", "must be in (0, 1], got 1.5"),
        ({"stop": {"target": 0}}, "stop.target", "must be in (0, 1], got 0"),
        ({"stop": {"metric": "ema"}}, "stop.metric", "allowed: recent, running"),
        ({"stop": {"budget": 5}}, "stop.budget", "unknown key; allowed: target, metric"),
        ({"lr": []}, "lr", "is empty; give at least one learning rate"),
        ({"lr": {"start": 1e-3, "stop": 1}}, "lr.num", "is required for a log-spaced lr axis"),
        ({"lr": {"start": 1e-3, "stop": 1, "num": 0}}, "lr.num", "must be > 0"),
        ({"lr": [0.1, -1]}, "lr", "learning rates must be positive finite numbers, got -1"),
        ({"loss": "hinge"}, "loss", "unknown loss 'hinge'; allowed: crossentropy, mse"),
        ({"batch_size": 0}, "batch_size", "must be integers >= 1, got 0"),
        ({"resources": {"gpu": 1}}, "resources.gpu", "unknown key; allowed: cpus, gpus"),
        (
            {"models": [{"name": "mlp", "kwargs": {"hiden": 3}}]},
            "models[0].kwargs.hiden",
            "unknown keyword; allowed: hidden, hidden_activation, output_activation",
        ),
        (
            {"models": [{"name": "mlp", "kwargs": {"output_activation": "relu"}}]},
            "models[0].kwargs.output_activation",
            "allowed: softmax, sigmoid, linear",
        ),
        (
            {"optimizers": [{"name": "adam", "kwargs": {"learning_rate": 1}}]},
            "optimizers[0].kwargs.learning_rate",
            "is swept by the lr axis",
        ),
    ],
)
def test_bad_input_names_file_field_and_what_is_allowed(changes, field, message):
    with pytest.raises(GridError) as info:
        grid(**changes)
    text = str(info.value)
    assert text.startswith(f"g.toml: {field}: ")
    assert message in text
    assert "\n" not in text


def test_missing_models_axis_is_an_error():
    data = dict(BASE)
    del data["models"]
    with pytest.raises(GridError, match="g.toml: models: is required; models: tutorial_cnn"):
        parse_grid(data, "g.toml")


def test_unreadable_and_invalid_files(tmp_path, write_grid):
    with pytest.raises(GridError, match=r"nope\.toml: cannot read grid file"):
        load_grid(tmp_path / "nope.toml")
    bad = write_grid("name = [unclosed\n")
    with pytest.raises(GridError, match=r"grid\.toml: not valid TOML"):
        load_grid(bad)


def test_relative_data_dir_is_relative_to_the_grid_file(tmp_path, write_grid):
    path = write_grid(
        'data_dir = "data"\nmodels = ["tiny_cnn"]\noptimizers = ["adam"]\nlr = [0.1]\n'
    )
    assert load_grid(path).data_dir == str((tmp_path / "data").resolve())


def test_loading_a_grid_imports_neither_tensorflow_nor_ray():
    import subprocess
    import sys

    code = (
        "import sys, lrbench.cli, harness.grid.parse, harness.grid.resolved\n"
        "grid = harness.grid.parse.load_grid('grids/paper.toml')\n"
        "harness.grid.resolved.ResolvedGrid.fixed(grid).expand()\n"
        "heavy = [m for m in ('tensorflow', 'keras', 'ray', 'pandas') if m in sys.modules]\n"
        "assert not heavy, heavy\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr


# Each shipped reference grid's digest and a hash of its trial ids in order, as
# stored results know them: a change here would orphan every stored trial.
REFERENCE_IDS = {
    "smoke": ("aea0f00c421b938c", 66, "ff61f455a8ef"),
    "paper": ("af1f9b3123a8b21a", 288, "803f12257a7b"),
    "pitfalls": ("3e3615e532eb67d4", 100, "f7a6b13ca928"),
    "nightly": ("33c658c8610e57b2", 96, "f33421006fb2"),
}


@pytest.mark.parametrize("name", sorted(REFERENCE_IDS))
def test_the_reference_grids_keep_their_digests_and_trial_ids(name):
    grid = ResolvedGrid.fixed(load_grid(f"grids/{name}.toml"))
    ids = [t.trial_id for t in grid.expand()]
    got = (grid.digest, len(ids), hashlib.sha256("".join(ids).encode()).hexdigest()[:12])
    assert got == REFERENCE_IDS[name]


@pytest.mark.parametrize("path", sorted(glob.glob("grids/*.toml")))
def test_every_shipped_grid_reads_back_from_its_stored_json(path):
    """What a manifest, a Parquet file and a history store is the same grid
    again: JSON, digest, trial ids and provenance (``lr = { best | finder }``
    grids are read back here with no LR chosen yet, and resolved in tests/analysis)."""
    helpers.stored_and_read_back(helpers.declared(load_grid(path)))
