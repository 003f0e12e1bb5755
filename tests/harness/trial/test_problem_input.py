"""A user's model and data that a trial could not train on, run through the real
commands: each ends, before any trial, in one line on stderr naming the grid
file and the key (``error: grid.toml: datasets[0].loader: ...``), with exit 2
and no traceback.

``lrbench show`` loads and checks the data as ``lrbench sweep`` does, and has
the same child process build every model; a data or grid error comes before
that child's verdict (a tenth of a second here), a model error after it has
imported TensorFlow (several seconds each), so the model cases are few and
marked slow. ``show`` runs in this process (Typer's runner) with the project
folder as its working directory, and the user's modules it imports are
forgotten after each test; ``sweep`` runs as the ``lrbench`` console script.
"""

from __future__ import annotations

import subprocess
import sys
import textwrap
import traceback
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from lrbench.cli import app

_SCRIPT = Path(sys.executable).with_name("lrbench")
LRBENCH = [str(_SCRIPT)] if _SCRIPT.exists() else [sys.executable, "-m", "lrbench.cli"]

# Loaders of a small tabular problem (20 training and 5 validation rows of 6
# features, 3 classes), each getting one thing wrong; ``good`` gets nothing wrong.
LOADERS = """
import numpy as np


def _x(n, d=6):
    return np.random.default_rng(0).normal(size=(n, d)).astype("float32")


def _y(n):
    return (np.arange(n) % 3).astype("int64")


def good():
    return (_x(20), _y(20)), (_x(5), _y(5))


def pair():
    return _x(20), _y(20)


def nothing():
    return None


def lengths():
    return (_x(20), _y(19)), (_x(5), _y(5))


def outside():
    y = _y(20)
    y[3] = 3
    return (_x(20), y), (_x(5), _y(5))


def outside_val():
    y = _y(5)
    y[1] = 7
    return (_x(20), _y(20)), (_x(5), y)


def negative():
    y = _y(20)
    y[3] = -1
    return (_x(20), y), (_x(5), _y(5))


def fractional():
    return (_x(20), _y(20) + 0.5), (_x(5), _y(5))


def text_labels():
    return (_x(20), _y(20).astype(str)), (_x(5), _y(5))


def nan():
    x = _x(20)
    x[7, 2] = np.nan
    return (x, _y(20)), (_x(5), _y(5))


def inf():
    x = _x(5)
    x[1, 0] = -np.inf
    return (_x(20), _y(20)), (x, _y(5))


def empty():
    return (_x(20), _y(20)), (_x(0), _y(0))


def shapes():
    return (_x(20), _y(20)), (_x(5, 7), _y(5))


def raises():
    raise FileNotFoundError("data/train.csv\\nwhile reading the training split")
"""

# Builders for that problem, each getting one thing wrong.
BUILDERS = """
import keras
from keras import layers


def build(width, input_shape, num_classes, depth=1):
    x = inputs = keras.Input(input_shape)
    for _ in range(depth):
        x = layers.Dense(max(1, int(8 * width)), activation="relu")(x)
    return keras.Model(inputs, layers.Dense(num_classes, activation="softmax")(x))


def fixed(input_shape, num_classes):
    return build(1, input_shape, num_classes)


def raises(width, input_shape, num_classes):
    raise ValueError(f"cannot build at width {width}\\nthe layer wants 4 dimensions")


def not_a_model(width, input_shape, num_classes):
    return {"layers": [8, num_classes]}


def five(width, input_shape, num_classes):
    return build(width, input_shape, 5)
"""

GRID_TAIL = """
optimizers = ["adam", "gd"]
lr = [0.01, 0.1]
batch_size = 10
"""


@dataclass(frozen=True)
class Ran:
    """A command's exit code and output, from a process or from Typer's runner."""

    returncode: int
    stdout: str
    stderr: str


def lrbench(cwd: Path, *args: str) -> Ran:
    """The ``lrbench`` console script in a fresh process with ``cwd`` as its working directory."""
    done = subprocess.run([*LRBENCH, *args], cwd=cwd, capture_output=True, text=True, timeout=300)
    return Ran(done.returncode, done.stdout, done.stderr)


def _forget(folder: Path) -> None:
    """Drop the modules imported from ``folder`` (a user's, imported by a command
    in this process), so that the next test imports its own."""
    prefix = str(folder.resolve()) + "/"
    for name, module in list(sys.modules.items()):
        if (getattr(module, "__file__", None) or "").startswith(prefix):
            del sys.modules[name]


@pytest.fixture
def show(tmp_path, monkeypatch):
    """``lrbench show GRID [OPTIONS]`` run in this process with ``where`` as the
    working directory; ``sys.path`` and the user's modules are as before afterwards."""
    monkeypatch.setattr(sys, "path", list(sys.path))
    runner = CliRunner()

    def run(where: Path, grid: str = "grid.toml", *options: str) -> Ran:
        monkeypatch.chdir(where)
        result = runner.invoke(app, ["show", grid, *options])
        stderr = result.stderr
        if result.exception is not None and not isinstance(result.exception, SystemExit):
            stderr += "".join(traceback.format_exception(result.exception))  # "Traceback ..."
        return Ran(result.exit_code, result.stdout, stderr)

    yield run
    _forget(tmp_path)


def one_error(done: Ran, key: str, *parts: str) -> str:
    """The command's only line, on stderr: ``error: grid.toml: KEY: ...`` holding
    ``parts``; exit 2, nothing on stdout, no traceback anywhere."""
    out = done.stdout + done.stderr
    assert done.returncode == 2, out
    assert "Traceback" not in out, out
    assert done.stdout == "", out
    lines = done.stderr.splitlines()
    assert len(lines) == 1, out
    assert lines[0].startswith(f"error: grid.toml: {key}: "), lines[0]
    for part in parts:
        assert part in lines[0], lines[0]
    return lines[0]


def project(where: Path, datasets: str, models: str = '["mlp"]', tail: str = GRID_TAIL) -> Path:
    """A user's project folder: the loaders and builders above beside a grid.toml."""
    where.mkdir(parents=True, exist_ok=True)
    (where / "loaders.py").write_text(LOADERS)
    (where / "nets").mkdir(exist_ok=True)
    (where / "nets" / "__init__.py").write_text("")
    (where / "nets" / "models.py").write_text(BUILDERS)
    grid = f"datasets = {datasets}\nmodels = {models}\n" + textwrap.dedent(tail)
    (where / "grid.toml").write_text(grid)
    return where


def loader(name: str, extra: str = "") -> str:
    return f'[{{ name = "mine", loader = "loaders:{name}"{extra} }}]'


# ------------------------------------------------------------------- data ---

CLASSES = ", num_classes = 3"


@pytest.mark.parametrize(
    ("datasets", "message"),
    [
        pytest.param(
            loader("pair"),
            "returned tuple; a loader returns (x_train, y_train), (x_val, y_val), "
            "as keras.datasets.*.load_data() does",
            id="only-one-split",
        ),
        pytest.param(loader("nothing"), "returned NoneType; a loader returns", id="none"),
        pytest.param(loader("lengths"), "x_train has 20 examples but y_train has 19", id="lengths"),
        pytest.param(
            loader("outside", CLASSES),
            "y_train: label 3 is outside [0, 3) (num_classes = 3)",
            id="label-outside",
        ),
        pytest.param(
            loader("outside_val", CLASSES),
            "y_val: label 7 is outside [0, 3) (num_classes = 3)",
            id="val-label-outside",
        ),
        pytest.param(
            loader("negative"),
            "y_train: label -1 is negative; labels are in [0, num_classes)",
            id="negative-label",
        ),
        pytest.param(
            loader("fractional"),
            "y_train: labels must be integer class ids, got non-integer values",
            id="non-integer-labels",
        ),
        pytest.param(
            loader("text_labels"),
            "y_train: labels must be integer class ids, got dtype <U",
            id="text-labels",
        ),
        pytest.param(
            loader("nan"),
            "x_train: holds NaN or infinite values (the first in example 7)",
            id="nan",
        ),
        pytest.param(
            loader("inf"),
            "x_val: holds NaN or infinite values (the first in example 1)",
            id="inf",
        ),
        pytest.param(
            loader("empty"), "x_val is empty; each split needs at least one example", id="empty"
        ),
        pytest.param(
            loader("shapes"), "x_train's examples have shape (6,) but x_val's (7,)", id="shapes"
        ),
        pytest.param(
            loader("raises"),
            # the exception's first line: the loader's own words
            "loaders:raises raised FileNotFoundError: data/train.csv",
            id="loader-raises",
        ),
        pytest.param(
            loader("nope"), "module 'loaders' has no attribute 'nope'", id="missing-attribute"
        ),
        pytest.param(
            '[{ name = "mine", loader = "no_such_module:load" }]',
            "no module named 'no_such_module' (looked in ",
            id="missing-module",
        ),
    ],
)
def test_a_loader_that_gets_its_data_wrong_is_one_line(show, tmp_path, datasets, message):
    one_error(show(project(tmp_path, datasets)), "datasets[0].loader", message)


def test_a_loader_module_that_does_not_import_is_one_line(show, tmp_path):
    where = project(tmp_path, loader("good"))
    (where / "loaders.py").write_text("import numpy as np\n\ndef good(:\n    pass\n")
    one_error(
        show(where),
        "datasets[0].loader",
        "cannot import 'loaders': SyntaxError: ",
        "loaders.py, line 3",
    )


def _npz(where: Path, name: str, **arrays: np.ndarray) -> None:
    where.mkdir(parents=True, exist_ok=True)
    np.savez(where / name, **arrays)


@pytest.mark.parametrize(
    ("keys", "message"),
    [
        (("x", "y"), "has keys x, y; needs x_train, y_train, and x_val, y_val (or x_test, y_test)"),
        (("x_train", "y_train"), "has keys x_train, y_train; needs x_train, y_train, and x_val"),
        (("x_train", "y_train", "x_val"), "has keys x_train, x_val, y_train; needs"),
    ],
    ids=["no-keys", "no-validation", "half-a-validation-split"],
)
def test_an_npz_file_missing_its_keys_is_one_line(show, tmp_path, keys, message):
    x, y = np.zeros((20, 6), np.float32), np.arange(20) % 3
    _npz(tmp_path, "mine.npz", **{k: x if k.startswith("x") else y for k in keys})
    where = project(tmp_path, '[{ name = "mine", path = "mine.npz" }]')
    one_error(show(where), "datasets[0].path", f"mine.npz: {message}")


def test_an_npz_file_that_is_not_one_or_is_absent_is_one_line(show, tmp_path):
    where = project(tmp_path, '[{ name = "mine", path = "mine.npz" }]')
    one_error(
        show(where),
        "datasets[0].path",
        "mine.npz: no such file (a path is relative to the grid file)",
    )
    (where / "mine.npz").write_text("x_train,y_train\n0.5,1\n")
    one_error(
        show(where),
        "datasets[0].path",
        "mine.npz: not an .npz file (a zip of .npy arrays, as numpy.savez writes)",
    )


def test_npz_test_keys_stand_for_validation_and_show_checks_the_batch(show, tmp_path):
    """The x_test/y_test form stands for the validation split; integer labels
    give the class count when num_classes is not given."""
    x, y = np.zeros((20, 6), np.float32), np.arange(20) % 4
    _npz(tmp_path, "mine.npz", x_train=x, y_train=y, x_test=x[:5], y_test=y[:5])
    where = project(
        tmp_path, '[{ name = "mine", path = "mine.npz" }]', tail='optimizers = ["adam"]\nlr = 0.1\n'
    )
    # the data passes, so show goes on to the batch size the sweep would refuse
    one_error(
        show(where),
        "batch_size",
        "100 is larger than the 20 training examples of mine; at most 20",
    )


def test_an_npz_path_is_relative_to_the_grid_file(show, tmp_path):
    x, y = np.zeros((20, 6), np.float32), np.arange(20) % 3
    _npz(tmp_path / "proj" / "data", "mine.npz", x_train=x, y_train=y, x_val=x[:5], y_val=y[:5])
    project(tmp_path / "proj", '[{ name = "mine", path = "data/mine.npz" }]')
    (tmp_path / "elsewhere").mkdir()
    done = show(tmp_path / "elsewhere", "../proj/grid.toml", "--no-build")
    assert done.returncode == 0, done.stdout + done.stderr
    assert (
        "data        mine: 20 train and 5 validation examples of shape (6,) (float32), "
        "3 classes, integer labels"
    ) in done.stdout.splitlines()


def test_the_grid_folder_is_searched_from_another_working_directory(show, tmp_path):
    where = project(tmp_path / "proj", loader("outside", CLASSES))
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    done = show(elsewhere, str(where / "grid.toml"))
    assert done.returncode == 2 and done.stdout == "", done.stderr
    assert done.stderr.splitlines() == [
        f"error: {where / 'grid.toml'}: datasets[0].loader: "
        "y_train: label 3 is outside [0, 3) (num_classes = 3)"
    ]


def test_sweep_gives_the_same_line_before_any_trial_and_writes_nothing(show, tmp_path):
    where = project(tmp_path, loader("nan"))
    shown = one_error(show(where), "datasets[0].loader")
    swept = one_error(lrbench(where, "sweep", "grid.toml", "--out", "out"), "datasets[0].loader")
    assert swept == shown
    assert not (where / "out").exists()
    assert not (where / "results").exists()


# ------------------------------------------------------------------- grid ---


@pytest.mark.parametrize(
    ("datasets", "models", "key", "message"),
    [
        pytest.param(
            '[{ name = "mine", loader = "loaders:good", path = "mine.npz" }]',
            '["mlp"]',
            "datasets[0].path",
            "give a loader or a path, not both",
            id="loader-and-path",
        ),
        pytest.param(
            loader("good"),
            '[{ name = "tiny_cnn", builder = "nets.models:build" }]',
            "models[0].name",
            "'tiny_cnn' is a built-in model; give yours another name",
            id="model-named-like-a-built-in",
        ),
        pytest.param(
            '[{ name = "mnist", loader = "loaders:good" }]',
            '["mlp"]',
            "datasets[0].name",
            "'mnist' is a built-in dataset; give yours another name",
            id="dataset-named-like-a-built-in",
        ),
        pytest.param(
            loader("good"),
            '[{ name = "mine", builder = "nets.models.build" }]',
            "models[0].builder",
            "'nets.models.build' is not 'module:function' or 'path/to/file.py:function'",
            id="not-a-reference",
        ),
        pytest.param(
            '[{ name = "mine", path = "mine.csv" }]',
            '["mlp"]',
            "datasets[0].path",
            "must be an .npz file, got 'mine.csv'",
            id="path-not-npz",
        ),
        pytest.param(
            '[{ name = "mnist5k", num_classes = 3 }]',
            '["mlp"]',
            "datasets[0].num_classes",
            "is set by the built-in dataset 'mnist5k'",
            id="num-classes-of-a-built-in",
        ),
        pytest.param(
            '[{ name = "mine", loader = "loaders:good", num_classes = 1 }]',
            '["mlp"]',
            "datasets[0].num_classes",
            "must be >= 2, got 1",
            id="one-class",
        ),
    ],
)
def test_a_grid_that_names_user_code_wrongly_is_one_line(
    show, tmp_path, datasets, models, key, message
):
    one_error(show(project(tmp_path, datasets, models)), key, message)


@pytest.mark.slow  # runs the lrbench console script's sweep twice
def test_a_builder_module_that_cannot_be_found_stops_the_sweep_at_once(tmp_path):
    """The sweep fingerprints each builder's module before it loads data: a
    module that is not there, or whose package fails to import, is one line."""
    where = project(tmp_path, loader("good"), '[{ name = "mine", builder = "nets.gone:build" }]')
    line = one_error(
        lrbench(where, "sweep", "grid.toml", "--out", "out"),
        "models[0].builder",
        "no module named 'nets.gone' (looked in ",
    )
    assert str(where) in line
    (where / "nets" / "__init__.py").write_text("raise RuntimeError('set NETS_HOME first')\n")
    (where / "grid.toml").write_text(
        (where / "grid.toml").read_text().replace("nets.gone", "nets.models")
    )
    one_error(
        lrbench(where, "sweep", "grid.toml", "--out", "out"),
        "models[0].builder",
        "cannot import 'nets.models': RuntimeError: set NETS_HOME first",
    )
    assert not (where / "out").exists()


# ----------------------------------------------------------------- models ---


@pytest.mark.slow  # each check imports TensorFlow in the check's child process
@pytest.mark.parametrize(
    ("models", "key", "message"),
    [
        pytest.param(
            '[{ name = "mine", builder = "nets.broken:build" }]',
            "models[0].builder",
            "cannot import 'nets.broken': SyntaxError: ",
            id="module-does-not-import",
        ),
        pytest.param(
            '[{ name = "mine", builder = "nets.models:biuld" }]',
            "models[0].builder",
            "module 'nets.models' has no attribute 'biuld'",
            id="missing-attribute",
        ),
        pytest.param(
            '[{ name = "mine", builder = "nets.models:raises", widths = [0.5, 1] }]',
            "models[0].builder",
            # the message's last line, which says what went wrong
            "nets.models:raises raised at width 0.5: ValueError: the layer wants 4 dimensions",
            id="builder-raises",
        ),
        pytest.param(
            '[{ name = "mine", builder = "nets.models:not_a_model" }]',
            "models[0].builder",
            "nets.models:not_a_model returned dict; a builder returns an uncompiled keras.Model",
            id="not-a-model",
        ),
        pytest.param(
            '[{ name = "mine", builder = "nets/models.py:five" }]',  # the file form
            "models[0].builder",
            "the model of nets/models.py:five gives outputs of shape (5,) per example; "
            "mine has 3 classes, so the model must end in 3 units, one per class",
            id="output-units",
        ),
        pytest.param(
            '[{ name = "mine", builder = "nets.models:fixed", widths = [1, 2] }]',
            "models[0].widths",
            "nets.models:fixed takes no width argument, so only widths = [1] is allowed",
            id="no-width-argument",
        ),
        pytest.param(
            '[{ name = "mine", builder = "nets.models:build", kwargs = { deep = 2 } }]',
            "models[0].kwargs.deep",
            "not a keyword of nets.models:build; allowed: depth",
            id="unknown-keyword",
        ),
    ],
)
def test_a_builder_a_trial_could_not_use_is_one_line(show, tmp_path, models, key, message):
    where = project(tmp_path, loader("good"), models)
    (where / "nets" / "broken.py").write_text("import keras\n\ndef build(width:\n    pass\n")
    one_error(show(where), key, message)
