"""A real two-node Ray cluster on this machine (``ray start``, token
authentication on, as Ray's default): ``lrbench sweep --address`` spreads a
grid over both nodes, and survives losing the second node mid-sweep."""

from __future__ import annotations

import os
import secrets
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest

pytestmark = pytest.mark.slow

BIN = Path(sys.executable).parent
# Token authentication, as on a cluster of Ray >= 2.59: every process that
# talks to the cluster (both nodes, the sweep's driver, its workers) needs
# RAY_AUTH_MODE=token and the cluster's token, here RAY_AUTH_TOKEN.
ENV = {
    **os.environ,
    "RAY_AUTH_MODE": "token",
    "RAY_AUTH_TOKEN": secrets.token_hex(32),
    "RAY_USAGE_STATS_ENABLED": "0",
}

GRID = """
name = "cluster-test"
datasets = [{{ name = "mnist5k", train_size = 1000 }}]
models = ["tiny_cnn"]
optimizers = ["gd"]
lr = {lrs}
[stop]
budget_s = 3600
max_epochs = {epochs}
"""
# Hopeless LRs: each trial ends as "budget" after its epochs (10 steps each).


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _ray(*args: str, **kwargs) -> subprocess.CompletedProcess:
    return subprocess.run(
        [str(BIN / "ray"), *args], env=ENV, capture_output=True, text=True, **kwargs
    )


def _alive_nodes(address: str) -> int:
    code = (
        f"import ray; ray.init(address={address!r}, logging_level='ERROR', log_to_driver=False); "
        "print(sum(n['Alive'] for n in ray.nodes()))"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], env=ENV, capture_output=True, text=True, timeout=120
    )
    return int(done.stdout.strip().splitlines()[-1]) if done.returncode == 0 else 0


@pytest.fixture
def cluster():
    """A head node and a second node (1 CPU each). Yields the address and the
    second node's process, whose process group holds that node's raylet and
    workers: killing the group loses the node."""
    _ray("stop", "--force")
    address, client_port = f"127.0.0.1:{_free_port()}", _free_port()
    head = _ray(
        "start", "--head", "--port", address.split(":")[1], "--num-cpus", "1",
        "--ray-client-server-port", str(client_port),
        "--include-dashboard", "false", "--disable-usage-stats", timeout=120,
    )  # fmt: skip
    assert head.returncode == 0, head.stdout + head.stderr
    second = subprocess.Popen(
        [str(BIN / "ray"), "start", "--address", address, "--num-cpus", "1", "--block"],
        env=ENV,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    try:
        deadline = time.monotonic() + 120
        while _alive_nodes(address) < 2:
            assert second.poll() is None, "the second node exited"
            assert time.monotonic() < deadline, "the second node never joined"
            time.sleep(1)
        yield address, second, f"ray://127.0.0.1:{client_port}"
    finally:
        if second.poll() is None:
            os.killpg(second.pid, signal.SIGKILL)
        _ray("stop", "--force")


def _sweep(grid: Path, out: Path, address: str) -> subprocess.Popen:
    return subprocess.Popen(
        [str(BIN / "lrbench"), "sweep", str(grid), "--out", str(out), "--address", address],
        env=ENV,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )


def test_without_the_token_the_sweep_says_so_in_one_line(cluster, write_grid, tmp_path):
    address, _, _ = cluster
    grid = write_grid(GRID.format(lrs="[1e-6]", epochs=1))
    env = {**ENV, "RAY_AUTH_MODE": "disabled"}
    env.pop("RAY_AUTH_TOKEN")
    done = subprocess.run(
        [str(BIN / "lrbench"), "sweep", str(grid), "--out", str(tmp_path / "o"), "--address",
         address],
        env=env, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert done.returncode == 2
    errors = [line for line in done.stderr.splitlines() if line.startswith("error: ")]
    assert len(errors) == 1 and "needs RAY_AUTH_MODE=token and its token" in errors[0]


def test_a_sweep_runs_on_both_nodes_of_an_existing_cluster(cluster, write_grid, tmp_path):
    _, _, client = cluster  # through Ray Client, as from a machine outside the cluster
    grid = write_grid(GRID.format(lrs="[1e-6, 2e-6, 3e-6, 4e-6]", epochs=10))
    proc = _sweep(grid, tmp_path / "out", client)
    output, _ = proc.communicate(timeout=300)
    assert proc.returncode == 0, output
    trials = pd.read_parquet(tmp_path / "out" / "trials")
    assert len(trials) == 4 and set(trials.status) == {"budget"}
    assert trials.node_id.nunique() == 2  # both nodes ran trials
    assert trials.host.nunique() == 1  # ... on one machine: the node, not the host, tells


def test_losing_a_node_mid_sweep_loses_no_trial(cluster, write_grid, tmp_path):
    address, second, _ = cluster
    lrs = [1e-6 * (i + 1) for i in range(6)]
    grid = write_grid(GRID.format(lrs=lrs, epochs=60))  # a few seconds a trial
    out = tmp_path / "out"
    proc = _sweep(grid, out, address)
    deadline = time.monotonic() + 240
    # once a trial is stored, both nodes are busy with the next ones: lose the second
    while not list((out / "trials").glob("*.parquet")) if (out / "trials").exists() else True:
        assert proc.poll() is None, proc.stdout.read()
        assert time.monotonic() < deadline, "no trial finished in time"
        time.sleep(0.2)
    time.sleep(1.0)
    os.killpg(second.pid, signal.SIGKILL)
    output, _ = proc.communicate(timeout=400)
    assert proc.returncode in (0, 1), output  # 1: some trial ran out of retries (error)
    trials = pd.read_parquet(out / "trials")
    # every trial accounted for, once: the lost node's trials were retried or recorded
    assert sorted(trials.lr) == pytest.approx(lrs)
    assert trials.trial_id.is_unique
    assert set(trials.status) <= {"reached", "budget", "diverged", "error"}
    assert f"{len(lrs)} trials" in output
    assert _alive_nodes(address) == 1  # the second node is really gone
