"""CIFAR-10 from Keras' files: synthetic batch files in the real files' layout,
read from a data directory and from Keras' cache, compared with Keras' own
loader, and grids/cifar10.toml run in miniature through ``lrbench sweep``."""

from __future__ import annotations

import io
import json
import os
import pickle
import struct
import tomllib
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

from harness.errors import DataError
from harness.trial.data import CIFAR_DIR, CIFAR_FILES, _cifar_batch, load_cifar10, load_dataset
from tests import helpers

ROOT = helpers.ROOT
GRID = ROOT / "grids" / "cifar10.toml"
PER_BATCH = 60  # images per synthetic batch file (the real ones hold 10,000)
# One colour per class, far apart in RGB: the class is in every pixel's mean, so a
# tiny network learns it within a few dozen updates; the noise makes pixels and
# channels differ, so any mix-up of their order shows in an exact comparison.
PALETTE = np.array(
    [
        (230, 25, 75),
        (60, 180, 75),
        (255, 225, 25),
        (0, 130, 200),
        (245, 130, 48),
        (145, 30, 180),
        (70, 240, 240),
        (240, 50, 230),
        (120, 120, 120),
        (0, 0, 128),
    ],
    dtype=np.float32,
)


class _Python2Pickler(pickle._Pickler):
    """Pickles as Python 2 wrote the real files: text as Python 2 ``str``
    (BINSTRING opcodes), which Python 3 reads back as bytes with
    ``encoding="bytes"`` (protocol 2 here)."""

    dispatch = pickle._Pickler.dispatch.copy()

    def _save_py2_str(self, obj: bytes | str) -> None:
        raw = obj if isinstance(obj, bytes) else obj.encode("latin-1")
        if len(raw) < 256:
            self.write(pickle.SHORT_BINSTRING + bytes([len(raw)]) + raw)
        else:
            self.write(pickle.BINSTRING + struct.pack("<i", len(raw)) + raw)
        self.memoize(obj)

    dispatch[bytes] = _save_py2_str
    dispatch[str] = _save_py2_str


def _py2_pickle(obj: Any) -> bytes:
    """``obj`` as a Python 2 pickle (protocol 2), NumPy under its old module name."""
    buf = io.BytesIO()
    _Python2Pickler(buf, protocol=2).dump(obj)
    return buf.getvalue().replace(b"cnumpy._core.multiarray\n", b"cnumpy.core.multiarray\n")


def synthetic_images(n: int, seed: int) -> tuple[np.ndarray, list[int]]:
    """``n`` 32x32x3 uint8 images (channels last), each its class's colour plus noise."""
    rng = np.random.default_rng(seed)
    labels = rng.permutation(np.arange(n) % 10)
    noise = rng.normal(0.0, 40.0, (n, 32, 32, 3))
    images = np.clip(PALETTE[labels][:, None, None, :] + noise, 0, 255).astype(np.uint8)
    return images, [int(y) for y in labels]


def write_batch(
    path: Path, images: np.ndarray, labels: list[int], title: str, py2: bool = True
) -> None:
    """One batch file as the real ones are: a dict of b"batch_label", b"labels"
    (a list of ints), b"data" (uint8, one 3072-byte row per image: the red
    plane, then green, then blue, each row by row) and b"filenames"."""
    batch = {
        b"batch_label": title.encode(),
        b"labels": labels,
        b"data": images.transpose(0, 3, 1, 2).reshape(len(images), 3072),
        b"filenames": [f"synthetic_{i}.png".encode() for i in range(len(images))],
    }
    path.write_bytes(_py2_pickle(batch) if py2 else pickle.dumps(batch))


def write_cifar(folder: Path, per_batch: int = PER_BATCH, py2: bool = True) -> dict[str, Any]:
    """The six batch files in ``folder`` (created); returns the images and labels written."""
    folder.mkdir(parents=True, exist_ok=True)
    written: dict[str, Any] = {}
    for i, name in enumerate(CIFAR_FILES):
        images, labels = synthetic_images(per_batch, seed=i)
        title = "testing batch 1 of 1" if name == "test_batch" else f"training batch {i + 1} of 5"
        write_batch(folder / name, images, labels, title, py2)
        written[name] = (images, labels)
    return written


def _expected(written: dict[str, Any]) -> tuple[np.ndarray, ...]:
    train = [written[name] for name in CIFAR_FILES[:-1]]
    x_val, y_val = written["test_batch"]
    return (
        np.concatenate([x for x, _ in train]),
        np.concatenate([y for _, y in train]),
        x_val,
        np.asarray(y_val),
    )


def _check(data: Any, written: dict[str, Any]) -> None:
    x_train, y_train, x_val, y_val = _expected(written)
    assert data.name == "cifar10" and data.num_classes == 10
    assert data.x_train.shape == (5 * PER_BATCH, 32, 32, 3) and data.x_train.dtype == np.uint8
    assert data.x_val.shape == (PER_BATCH, 32, 32, 3) and data.x_val.dtype == np.uint8
    assert data.y_train.shape == (5 * PER_BATCH,) and data.y_train.dtype.kind in "iu"
    assert data.sparse and data.scaled and data.input_shape == (32, 32, 3)
    assert np.array_equal(data.x_train, x_train) and np.array_equal(data.x_val, x_val)
    assert np.array_equal(data.y_train, y_train) and np.array_equal(data.y_val, y_val)


@pytest.mark.parametrize("inside", [False, True], ids=["parent", "folder-itself"])
def test_reads_a_data_dir_or_its_cifar_folder(tmp_path, inside):
    written = write_cifar(tmp_path / CIFAR_DIR)
    where = tmp_path / CIFAR_DIR if inside else tmp_path
    _check(load_cifar10(str(where)), written)
    _check(load_dataset("cifar10", str(where)), written)


@pytest.mark.parametrize("layout", [f"{CIFAR_DIR}-target/{CIFAR_DIR}", CIFAR_DIR])
def test_reads_keras_cache(tmp_path, monkeypatch, layout):
    # Keras 3 extracts into cifar-10-batches-py-target/; older Keras beside it
    monkeypatch.setenv("KERAS_HOME", str(tmp_path))
    monkeypatch.setattr("harness.trial.data._download", _no_download)
    written = write_cifar(tmp_path / "datasets" / layout)
    _check(load_cifar10(), written)


@pytest.mark.parametrize("py2", [True, False], ids=["python2-pickle", "python3-pickle"])
def test_pixels_and_channels_are_keras_own(tmp_path, py2):
    from keras.src.datasets.cifar import load_batch

    write_cifar(tmp_path, py2=py2)
    for name in CIFAR_FILES:
        x, y = _cifar_batch(tmp_path / name)
        want_x, want_y = load_batch(str(tmp_path / name))
        assert np.array_equal(x, want_x.transpose(0, 2, 3, 1))  # Keras' channels_last
        assert np.array_equal(y, np.asarray(want_y))
    data = load_cifar10(str(tmp_path))
    x, _ = load_batch(str(tmp_path / "data_batch_2"))
    assert np.array_equal(data.x_train[PER_BATCH : 2 * PER_BATCH], x.transpose(0, 2, 3, 1))


def _no_download(name: str, where: Path) -> None:
    raise AssertionError(f"tried to download {name} into {where}")


def _one_line_error(data_dir: str | None) -> str:
    with pytest.raises(DataError) as info:
        load_cifar10(data_dir)
    text = str(info.value)
    assert "\n" not in text
    return text


def test_missing_files_name_the_folder_and_the_files(tmp_path, monkeypatch):
    monkeypatch.setattr("harness.trial.data._download", _no_download)
    text = _one_line_error(str(tmp_path))
    assert f"{tmp_path / CIFAR_DIR}" in text and "not found" in text
    assert "data_batch_1..5, test_batch" in text and "--data-dir" not in text

    # a partial copy: the folder that holds it, and the files it lacks
    write_cifar(tmp_path / CIFAR_DIR)
    (tmp_path / CIFAR_DIR / "data_batch_3").unlink()
    (tmp_path / CIFAR_DIR / "test_batch").unlink()
    for where in (tmp_path, tmp_path / CIFAR_DIR):
        text = _one_line_error(str(where))
        assert f"data_batch_3, test_batch not found in {tmp_path / CIFAR_DIR};" in text


def test_offline_without_data_dir_does_not_download(tmp_path, monkeypatch):
    assert os.environ["LRBENCH_OFFLINE"] == "1"  # tests/conftest.py
    monkeypatch.setenv("KERAS_HOME", str(tmp_path))  # an empty Keras cache
    monkeypatch.setattr("harness.trial.data._download", _no_download)
    text = _one_line_error(None)
    assert str(tmp_path / "datasets" / CIFAR_DIR) in text and "set --data-dir" in text


@pytest.mark.parametrize(
    "batch, says",
    [
        ([1, 2, 3], "not a CIFAR-10 batch"),
        ({b"data": np.zeros((2, 3072), np.uint8)}, "not a CIFAR-10 batch"),
        ({b"data": np.zeros((2, 100), np.uint8), b"labels": [0, 1]}, "(n, 3072)"),
        ({b"data": np.zeros((2, 3072), np.uint8), b"labels": [0]}, "1 labels for 2 images"),
        ({b"data": np.zeros((2, 3072), np.uint8), b"labels": [0, 300]}, "outside 0..9"),
    ],
)
def test_a_malformed_batch_is_one_line(tmp_path, batch, says):
    write_cifar(tmp_path)
    (tmp_path / "data_batch_1").write_bytes(pickle.dumps(batch))
    text = _one_line_error(str(tmp_path))
    assert text.startswith(f"dataset 'cifar10': cannot read {tmp_path}") and says in text


def test_a_batch_file_cannot_run_code(tmp_path):
    class Gadget:
        def __reduce__(self) -> tuple[Any, ...]:
            return (os.system, ("echo pwned",))

    write_cifar(tmp_path)
    (tmp_path / "test_batch").write_bytes(pickle.dumps({b"data": Gadget(), b"labels": []}))
    assert "refusing posix.system" in _one_line_error(str(tmp_path))


# ------------------------------------------------------ grids/cifar10.toml ---


def _toml(value: Any) -> str:
    """A TOML value (inline) for the plain types a grid holds."""
    if isinstance(value, dict):
        return "{ " + ", ".join(f"{k} = {_toml(v)}" for k, v in value.items()) + " }"
    if isinstance(value, list):
        return "[" + ", ".join(_toml(v) for v in value) + "]"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return json.dumps(value)
    return repr(value)


def dump_grid(grid: dict[str, Any]) -> str:
    """A grid's TOML text: top-level keys first, then its tables."""
    tables = {k: v for k, v in grid.items() if isinstance(v, dict) and k in ("stop", "resources")}
    lines = [f"{k} = {_toml(v)}" for k, v in grid.items() if k not in tables]
    for name, table in tables.items():
        lines += [f"[{name}]", *(f"{k} = {_toml(v)}" for k, v in table.items())]
    return "\n".join(lines) + "\n"


def test_the_shipped_grid_is_the_reference_experiment_on_cifar10():
    from harness.grid.parse import load_grid
    from harness.grid.resolved import ResolvedGrid

    grid = tomllib.loads(GRID.read_text())
    assert grid["datasets"] == ["cifar10"]
    assert [m["name"] for m in grid["models"]] == ["small_resnet"]
    names = [o if isinstance(o, str) else o["name"] for o in grid["optimizers"]]
    assert names == ["gd", "momentum", "adam", "adagrad", "adadelta", "rmsprop"]
    assert grid["lr"] == {"start": 1e-6, "stop": 100, "num": 48}
    assert grid["stop"]["budget_s"] == 120 and 0.1 < grid["stop"]["target"] < 0.97
    assert grid["description"]
    assert len(ResolvedGrid.fixed(load_grid(GRID)).expand()) == 6 * 48


@pytest.mark.slow
def test_miniature_cifar10_grid_sweeps_and_reports(tmp_path):
    """grids/cifar10.toml shrunk to four short trials of a small small_resnet,
    through the real ``lrbench sweep --data-dir`` and ``lrbench report``."""
    from lrbench.cli import app

    data_dir = tmp_path / "data"
    write_cifar(data_dir / CIFAR_DIR)
    grid = tomllib.loads(GRID.read_text())
    grid["name"] = "cifar10-mini"
    grid["datasets"] = [{"name": "cifar10", "train_size": 200}]
    grid["models"] = [{"name": "small_resnet", "widths": [0.25], "kwargs": {"depth": 1}}]
    grid["optimizers"] = [o for o in grid["optimizers"] if o in ("gd", "adam")]
    grid["lr"] = [1e-6, 0.01]
    grid["batch_size"] = 20
    # epochs, not the clock, end the trials
    grid["stop"].update(budget_s=3600, max_epochs=2)
    # one worker with both cores: it reuses each optimizer's compiled model for
    # the second LR, where two workers would build all four (half this test's time)
    grid["resources"]["cpus"] = min(2, os.cpu_count() or 1)
    path = tmp_path / "cifar10-mini.toml"
    path.write_text(dump_grid(grid))

    runner = CliRunner()
    out = tmp_path / "out"
    swept = runner.invoke(app, ["sweep", str(path), "--out", str(out), "--data-dir", str(data_dir)])
    assert swept.exit_code == 0, swept.output
    trials = pd.read_parquet(out / "trials")
    assert len(trials) == 4 and set(trials.optimizer) == {"gd", "adam"}
    assert (trials.dataset == "cifar10").all()
    assert (trials.input_shape == "[32, 32, 3]").all() and (trials.num_classes == 10).all()
    assert not (trials.status == "error").any(), trials[["optimizer", "lr", "status", "error"]]
    # the colours are learnt (adam at 0.01: 34 % recent accuracy by step 10, 52 % by 20,
    # seeded), and 1e-6 stays at chance: the band shows even in miniature
    status = trials.set_index(["optimizer", "lr"])["status"]
    assert status[("adam", 0.01)] == "reached"
    assert status[("adam", 1e-6)] == "budget" and status[("gd", 1e-6)] == "budget"

    reported = runner.invoke(app, ["report", str(out), "--out", str(tmp_path / "report")])
    assert reported.exit_code == 0, reported.output
    assert (tmp_path / "report" / "index.html").exists()
