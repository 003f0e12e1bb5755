"""The issue's acceptance test: a user's own model and data, in a project folder
outside this repository, named by reference in a grid there, go through the
real commands run from that folder: ``lrbench sweep``, ``report``, ``find-lr``,
the same sweep again (nothing re-run), and a sweep refused after the builder's
module changed.

The problem is not MNIST's: 8x8x3 uint8 images (scaled per batch) of 4
classes with integer labels (the sparse loss), and a builder with BatchNorm
whose hidden layer scales with the width, taking a keyword from the grid. One
sweep of 2 optimizers x 2 LRs, bounded by epochs, is shared by the tests below.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

from harness import userref

pytestmark = pytest.mark.slow  # a real Ray sweep, TensorFlow in its workers

_SCRIPT = Path(sys.executable).with_name("lrbench")
LRBENCH = [str(_SCRIPT)] if _SCRIPT.exists() else [sys.executable, "-m", "lrbench.cli"]

MODELS = '''"""A user's builder: Flatten, Dense(hidden * width), BatchNorm, ReLU, softmax."""

import keras
from keras import layers


def build(width, input_shape, num_classes, hidden=8):
    inputs = keras.Input(input_shape)
    x = layers.Flatten()(inputs)
    x = layers.Dense(int(hidden * width), use_bias=False)(x)
    x = layers.ReLU()(layers.BatchNormalization()(x))
    outputs = layers.Dense(num_classes, activation="softmax")(x)
    return keras.Model(inputs, outputs, name="mynet")
'''

DATA = '''"""A user's loader: 4 classes of 8x8x3 uint8 images, each class a noisy copy
of its own random picture; integer labels. Seeded, and easily learnt."""

import numpy as np


def load():
    rng = np.random.default_rng(7)
    pictures = rng.integers(0, 256, size=(4, 8, 8, 3))

    def split(n):
        y = rng.integers(0, 4, size=n)
        x = pictures[y] + rng.normal(0, 40, size=(n, 8, 8, 3))
        return np.clip(x, 0, 255).astype(np.uint8), y.astype(np.int32)

    return split(256), split(64)
'''

GRID = """
name = "userproj"
datasets = [{ name = "pictures", loader = "mynets.data:load" }]
optimizers = ["adam", "gd"]
lr = [0.01, 0.3]
batch_size = 32

[[models]]
name = "mynet"
builder = "mynets.models:build"
widths = [2]
kwargs = { hidden = 8 }

[stop]
target = 0.9
window = 8
budget_s = 600
max_epochs = 3
"""
# Epochs end the trials, not the clock: 8 steps an epoch, 24 at most.

HIDDEN = 8 * 2  # hidden * width
N_PARAMS = 8 * 8 * 3 * HIDDEN + 4 * HIDDEN + HIDDEN * 4 + 4  # Dense, BatchNorm, softmax


def lrbench(cwd: Path, *args: str) -> subprocess.CompletedProcess:
    """The ``lrbench`` console script, run from the user's project folder."""
    return subprocess.run([*LRBENCH, *args], cwd=cwd, capture_output=True, text=True, timeout=600)


def ok(done: subprocess.CompletedProcess) -> str:
    assert done.returncode == 0, done.stdout + done.stderr
    assert "Traceback" not in done.stdout + done.stderr, done.stderr
    return done.stdout


def stored(out: Path) -> dict[str, bytes]:
    """Every file a sweep stored: the manifest, the trials' and the curves' Parquet files."""
    return {
        str(p.relative_to(out)): p.read_bytes()
        for p in sorted(out.rglob("*"))
        if p.is_file() and p.relative_to(out).parts[0] in ("manifest.json", "trials", "curves")
    }


@pytest.fixture(scope="module")
def project(tmp_path_factory) -> Path:
    """The user's project folder, swept once: ``userproj/{grid.toml, mynets/}``,
    results in ``userproj/out``."""
    root = tmp_path_factory.mktemp("user") / "userproj"
    package = root / "mynets"
    package.mkdir(parents=True)
    (package / "__init__.py").write_text("")
    (package / "models.py").write_text(MODELS)
    (package / "data.py").write_text(DATA)
    (root / "grid.toml").write_text(GRID)
    done = lrbench(root, "sweep", "grid.toml", "--out", "out")
    assert "4 trials (0 already stored, 4 run now)" in ok(done), done.stderr
    return root


def test_the_rows_record_the_users_problem(project):
    trials = pd.read_parquet(project / "out" / "trials")
    assert len(trials) == 4 and trials.trial_id.is_unique
    assert set(zip(trials.optimizer, trials.lr, strict=True)) == {
        (o, lr) for o in ("adam", "gd") for lr in (0.01, 0.3)
    }
    assert (trials.status != "error").all(), trials[["optimizer", "lr", "status", "error"]]
    assert (trials.status == "reached").any()
    assert (trials.model == "mynet").all() and (trials.width == 2.0).all()
    assert (trials.builder == "mynets.models:build").all()
    assert (trials.input_shape == "[8, 8, 3]").all()
    assert (trials.num_classes == 4).all()
    assert (trials.n_params == N_PARAMS).all()  # the width and the grid's keyword reached it
    # a hash of the package Ray shipped to the workers, the builder's module in it
    shipped = userref.fingerprint("mynets.models:build", [str(project)])
    assert (trials.builder_fingerprint == shipped).all()
    assert trials.data_fingerprint.str.len().eq(16).all() and trials.data_fingerprint.nunique() == 1


def test_report_reads_the_sweep(project):
    out = ok(lrbench(project, "report", "out"))
    assert "adam" in out and "gd" in out
    assert out.rstrip().endswith("report: out/report/index.html"), out
    assert (project / "out" / "report" / "index.html").is_file()


def test_find_lr_runs_the_range_test_on_the_users_model(project):
    out = ok(lrbench(project, "find-lr", "grid.toml", "--out", "out", "--steps", "12"))
    for i, optimizer in enumerate(("adam", "gd"), 1):
        assert f"[{i}/2] {optimizer} on mynet x2, pictures: stopped" in out, out
    assert "figure: out/finder.png" in out and (project / "out" / "finder.png").is_file()


def test_replay_export_and_width_scaling_take_the_users_problem(project, tmp_path):
    ok(lrbench(project, "replay", "out", "--prune", "optimistic"))
    out = ok(lrbench(project, "export", "out", "--tensorboard", str(tmp_path / "tb")))
    assert "tensorboard: 4 runs written" in out, out
    # width scaling at each optimizer's best LR of the sweep: the user's model, two widths
    scaling = GRID.replace('name = "userproj"', 'name = "userproj-scaling"')
    scaling = scaling.replace("lr = [0.01, 0.3]", 'lr = { best = "out" }')
    (project / "scaling.toml").write_text(scaling.replace("widths = [2]", "widths = [1, 2]"))
    out = ok(lrbench(project, "show", "scaling.toml", "--no-build"))
    assert "lr          best 1 of out: " in out, out
    assert "data        pictures: " in out and "(8, 8, 3) (uint8), 4 classes" in out, out


def test_the_same_sweep_again_runs_nothing(project):
    before = stored(project / "out")
    out = ok(lrbench(project, "sweep", "grid.toml", "--out", "out"))
    assert "out: 4 trials (4 already stored, 0 run now)" in out, out
    assert stored(project / "out") == before


def test_a_grown_sweep_after_the_builder_changed_is_refused(project, tmp_path):
    """On a copy of the project: the builder's module gains a comment line and
    the grid one LR; the sweep stops before any trial, in one line naming the
    module, and the stored rows stay as they were."""
    copy = tmp_path / "userproj"
    shutil.copytree(project, copy)
    before = stored(copy / "out")
    with open(copy / "mynets" / "models.py", "a") as f:
        f.write("# a comment changes the module's fingerprint\n")
    grid = copy / "grid.toml"
    grid.write_text(grid.read_text().replace("lr = [0.01, 0.3]", "lr = [0.01, 0.1, 0.3]"))
    done = lrbench(copy, "sweep", "grid.toml", "--out", "out")
    assert done.returncode == 2, done.stdout + done.stderr
    assert "Traceback" not in done.stdout + done.stderr
    lines = done.stderr.splitlines()
    assert len(lines) == 1, done.stderr
    assert lines[0].startswith(
        "error: grid.toml: models[0].builder: the module of mynets.models:build changed "
        "since the 4 trials stored in out ran (fingerprint "
    ), lines[0]
    assert lines[0].endswith("restore that module, or sweep into a new --out"), lines[0]
    assert stored(copy / "out") == before
    assert not (copy / "out" / ".lock").exists()


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (
            "data",
            "error: grid.toml: datasets[0]: dataset 'pictures' changed since the 4 trials "
            "stored in out ran (fingerprint ",
        ),
        (
            "resources",
            "error: grid.toml: resources.cpus: 2 per trial, but the 4 trials stored in out "
            "ran with 1 (their times would not compare); set it back, or sweep into a new --out",
        ),
    ],
)
def test_a_grown_sweep_on_other_data_or_resources_is_refused(project, tmp_path, change, message):
    """On a copy of the project: the loader draws other pictures, or each trial
    asks for another CPU count, and the grid gains one LR; the sweep stops
    before any trial, in one line naming what changed, and stores nothing."""
    copy = tmp_path / "userproj"
    shutil.copytree(project, copy)
    before = stored(copy / "out")
    grid = copy / "grid.toml"
    text = grid.read_text().replace("lr = [0.01, 0.3]", "lr = [0.01, 0.1, 0.3]")
    if change == "data":
        data = copy / "mynets" / "data.py"
        data.write_text(data.read_text().replace("default_rng(7)", "default_rng(8)"))
    else:
        text += "\n[resources]\ncpus = 2\n"
    grid.write_text(text)
    done = lrbench(copy, "sweep", "grid.toml", "--out", "out")
    assert done.returncode == 2, done.stdout + done.stderr
    assert "Traceback" not in done.stdout + done.stderr
    lines = done.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith(message), done.stderr
    assert stored(copy / "out") == before
    assert not (copy / "out" / ".lock").exists()
