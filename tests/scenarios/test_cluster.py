"""A real two-node Ray cluster on this machine (``ray start``, token
authentication on, as Ray's default): ``lrbench sweep --address`` spreads a
grid over both nodes, ships a user's builder package to them, and survives
losing the second node mid-sweep: Ray Tune runs the lost trial again on the
head."""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import pandas as pd
import pytest

from tests import probe_builder

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
    # the head's Ray Client proxy gives a client's server this long to come up
    # (Ray's default, 30 s, is too short on a loaded 2-core machine)
    "RAY_CLIENT_SERVER_CHECK_CHANNEL_TIMEOUT_S": "300",
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
prune = false
"""
# Hopeless LRs, unpruned: each trial ends as "budget" after its epochs (10 steps each).


HEAD_LOGS: dict[int, Path] = {}  # Ray Client port -> the head node's log folder


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _alive_node_ids(address: str) -> set[str]:
    """The ids of the cluster's live nodes (none when it cannot be reached)."""
    code = (
        f"import ray; ray.init(address={address!r}, logging_level='ERROR', log_to_driver=False); "
        "print('nodes:', *(n['NodeID'] for n in ray.nodes() if n['Alive']))"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], env=ENV, capture_output=True, text=True, timeout=120
    )
    lines = [line for line in done.stdout.splitlines() if line.startswith("nodes:")]
    return set(lines[-1].split()[1:]) if done.returncode == 0 and lines else set()


def _alive_nodes(address: str) -> int:
    return len(_alive_node_ids(address))


def _node(*args: str) -> subprocess.Popen:
    """``ray start ... --block`` in its own process group, which holds the node's
    raylet and workers (and a head's GCS): killing the group stops that node and
    nothing else on the machine."""
    return subprocess.Popen(
        [str(BIN / "ray"), "start", *args, "--block"],
        env=ENV,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )


class _Cluster:
    """A head node and a second node (1 CPU each) on this machine."""

    def __init__(self) -> None:
        self.address, client_port = f"127.0.0.1:{_free_port()}", _free_port()
        self.client = f"ray://127.0.0.1:{client_port}"
        self.temp = tempfile.mkdtemp(prefix="lrb-ray-", dir="/tmp")  # short: Ray's socket paths
        self.head = _node(
            "--head", "--port", self.address.split(":")[1], "--num-cpus", "1",
            "--ray-client-server-port", str(client_port), "--temp-dir", self.temp,
            "--include-dashboard", "false", "--disable-usage-stats",
        )  # fmt: skip
        HEAD_LOGS[client_port] = Path(self.temp) / "session_latest" / "logs"
        self.second: subprocess.Popen | None = None
        try:
            self._wait_for(1, self.head, "the head node")
        except BaseException:
            self.stop()
            raise

    def with_second_node(self) -> None:
        """Start the second node, unless it runs already."""
        if self.second is None or self.second.poll() is not None:
            self.second = _node("--address", self.address, "--num-cpus", "1")
            self._wait_for(2, self.second, "the second node")

    def _wait_for(self, nodes: int, proc: subprocess.Popen, what: str) -> None:
        deadline = time.monotonic() + 120
        while _alive_nodes(self.address) < nodes:
            assert proc.poll() is None, f"{what} exited"
            assert time.monotonic() < deadline, f"{what} never joined"
            time.sleep(1)

    def stop(self) -> None:
        for node in (self.second, self.head):
            if node is not None and node.poll() is None:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(node.pid, signal.SIGKILL)
        shutil.rmtree(self.temp, ignore_errors=True)


@pytest.fixture(scope="module")
def shared_cluster():
    """One cluster for this file's tests: starting one takes a while. Only its
    own processes are stopped afterwards."""
    made = _Cluster()
    try:
        yield made
    finally:
        made.stop()


@pytest.fixture
def cluster(shared_cluster):
    """The address, the second node's process (killing its group loses the node)
    and the Ray Client address, with both nodes up: a second node that an
    earlier test lost is started again."""
    shared_cluster.with_second_node()
    return shared_cluster.address, shared_cluster.second, shared_cluster.client


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


def _client_server_failures(client: str) -> int:
    """How often the head's Ray Client proxy has lost the server it started for
    a client: Ray's own intermittent failure (the server process dies as it is
    forked, ray-project/ray#63202), which a client cannot tell from a hang."""
    log = HEAD_LOGS[int(client.rsplit(":", 1)[1])] / "ray_client_server.err"
    return log.read_text().count("SpecificServer startup failed") if log.exists() else 0


def _client_sweep(grid: Path, out: Path, client: str, timeout: float = 240) -> tuple[int, str]:
    """``lrbench sweep`` through Ray Client: its exit code and output. A sweep
    whose client server the head lost (``_client_server_failures``) hangs: it
    is stopped as soon as the head's log says so, and run once more."""
    for attempt in (0, 1):
        failures = _client_server_failures(client)
        proc = _sweep(grid, out, client)
        deadline = time.monotonic() + timeout
        lost = False
        while not lost:
            try:
                output, _ = proc.communicate(timeout=2)  # keeps what it has read
                break
            except subprocess.TimeoutExpired:
                lost = _client_server_failures(client) > failures
                if lost or time.monotonic() > deadline:
                    proc.kill()
                    output, _ = proc.communicate()
                    assert attempt == 0 and lost, output  # only Ray's failure earns a retry
        # the same failure, seen by the client as a refused connection: the
        # head's proxy found the server it forked already a zombie
        zombie = proc.returncode != 0 and "ZombieProcess" in output
        if attempt == 0 and (lost or zombie):
            continue
        return proc.returncode, output
    raise AssertionError("the second attempt returns")


def test_a_sweep_runs_on_both_nodes_of_an_existing_cluster(cluster, write_grid, tmp_path):
    _, _, client = cluster  # through Ray Client, as from a machine outside the cluster
    grid = write_grid(GRID.format(lrs="[1e-6, 2e-6, 3e-6, 4e-6]", epochs=10))
    returncode, output = _client_sweep(grid, tmp_path / "out", client)
    assert returncode == 0, output
    trials = pd.read_parquet(tmp_path / "out" / "trials")
    assert len(trials) == 4 and set(trials.status) == {"budget"}
    assert trials.node_id.nunique() == 2  # both nodes ran trials
    assert trials.host.nunique() == 1  # ... on one machine: the node, not the host, tells


PROBE_GRID = """
name = "cluster-node-loss"
datasets = [{{ name = "mnist5k", train_size = 1000 }}]
models = [{{ name = "probe", builder = "probe.py:build", kwargs = {{ probe = "{probe}" }} }}]
optimizers = ["gd"]
lr = {lrs}
[stop]
budget_s = 3600
max_epochs = 2
prune = false
"""
# tests/probe_builder.py records each trial attempt (Tune's trial id, the node,
# the pid) and holds it at its build until the test releases it


def test_losing_a_node_mid_sweep_loses_no_trial(
    cluster: tuple[str, subprocess.Popen, str], write_grid: Callable[[str], Path], tmp_path: Path
) -> None:
    address, second, _ = cluster
    probe = probe_builder.configure(tmp_path / "probe", hold_after=0)  # every attempt waits
    shutil.copy(probe_builder.__file__, tmp_path / "probe.py")
    lrs = [1e-6 * (i + 1) for i in range(6)]
    grid = write_grid(PROBE_GRID.format(probe=probe, lrs=lrs))
    out = tmp_path / "out"
    proc = _sweep(grid, out, address)
    deadline = time.monotonic() + 240
    # a trial has started on each node, held at its build: lose the second node
    while len({a["node"] for a in probe_builder.attempts(probe)}) < 2:
        assert proc.poll() is None, proc.stdout.read()
        assert time.monotonic() < deadline, "no trial started on both nodes in time"
        time.sleep(0.2)
    os.killpg(second.pid, signal.SIGKILL)
    while len(alive := _alive_node_ids(address)) != 1:  # Ray has seen the node go
        assert time.monotonic() < deadline + 120, f"{len(alive)} nodes still alive"
        time.sleep(1)
    (head,) = alive
    probe_builder.release(probe)
    output, _ = proc.communicate(timeout=400)
    assert proc.returncode == 0, output

    # Ray Tune ran the trial that was on the lost node again, on the head
    tries = probe_builder.attempts(probe)
    lost = [a for a in tries if a["node"] != head]
    assert len(lost) == 1, tries  # the one trial that had started there
    retry = [a for a in tries if a["trial"] == lost[0]["trial"] and a["seq"] > lost[0]["seq"]]
    assert [a["node"] for a in retry] == [head], tries
    assert len(tries) == len(lrs) + 1  # each trial built once, and the retry
    # no error row, every trial once, each with the verdict its LR gives
    # (budget), and every row stored on the head: none from the lost node
    trials = pd.read_parquet(out / "trials")
    assert sorted(trials.lr) == pytest.approx(lrs)
    assert trials.trial_id.is_unique
    assert set(trials.status) == {"budget"}, trials[["lr", "status", "error"]]
    assert set(trials.node_id) == {head}
    assert retry[0]["pid"] in set(trials.worker_pid)  # the retry stored its trial
    assert f"{len(lrs)} trials" in output
    assert _alive_nodes(address) == 1  # the second node is really gone


def test_ray_address_joins_the_cluster_and_no_address_stays_embedded(cluster, write_grid, tmp_path):
    """RAY_ADDRESS is used exactly like --address; with neither, the sweep starts
    its own local Ray even while a cluster runs on this machine (a bare
    ``ray.init()`` would join that cluster)."""
    address, _, _ = cluster
    grid = write_grid(GRID.format(lrs="[1e-6]", epochs=1))
    runs = {}
    for name, extra in (("embedded", {}), ("env", {"RAY_ADDRESS": address})):
        env = {k: v for k, v in ENV.items() if k != "RAY_ADDRESS"} | extra
        done = subprocess.run(
            [str(BIN / "lrbench"), "sweep", str(grid), "--out", str(tmp_path / name)],
            env=env, capture_output=True, text=True, timeout=300,
        )  # fmt: skip
        assert done.returncode == 0, done.stdout + done.stderr
        runs[name] = json.loads((tmp_path / name / "manifest.json").read_text())["runs"][-1]
    assert runs["embedded"]["address"] is None and len(runs["embedded"]["nodes"]) == 1
    assert runs["env"]["address"] == address and len(runs["env"]["nodes"]) == 2


USER_MODELS = """
import os

import keras
from keras import layers

# the package's folder in the test: a Ray worker must not import it from there
# (the driver's model check, outside Ray, does)
HOME = {home!r}


def build(width, input_shape, num_classes):
    import sys

    ray = sys.modules.get("ray")
    if ray is not None and ray.is_initialized() and os.path.realpath(__file__).startswith(HOME):
        raise RuntimeError(f"imported from {{__file__}}, not from Ray's py_modules")
    x = inputs = keras.Input(input_shape)
    x = layers.Dense(int(16 * width), activation="relu")(x)
    return keras.Model(inputs, layers.Dense(num_classes)(x))
"""

USER_DATA = """
import numpy as np


def load():
    # three Gaussian blobs: learnable, integer labels 0..2
    rng = np.random.default_rng(0)
    centers = rng.normal(0, 3, (3, 8)).astype("float32")
    y = rng.integers(0, 3, 800)
    x = centers[y] + rng.normal(0, 1, (800, 8)).astype("float32")
    return (x[:600], y[:600]), (x[600:], y[600:])
"""

USER_GRID = """
name = "cluster-usernets"
datasets = [{ name = "blobs", loader = "usernets.data:load" }]
models = [{ name = "usernet", builder = "usernets.models:build", widths = [1] }]
optimizers = ["gd"]
lr = [1e-6, 2e-6, 3e-6, 4e-6]
[stop]
budget_s = 3600
max_epochs = 3
"""


def test_a_users_package_reaches_the_workers_of_both_nodes(cluster, tmp_path):
    """The builder's package lives only in the test's project folder, where the
    driver runs; the nodes run elsewhere. Joining by address, Ray puts the
    driver's cwd first on its workers' sys.path, as if every node had a
    checkout there: the builder refuses to run from that copy inside Ray, so
    a pass means the workers imported what Ray's py_modules shipped. The
    loader runs on the driver alone."""
    address, _, _ = cluster
    proj = tmp_path / "proj"
    (proj / "usernets").mkdir(parents=True)
    (proj / "usernets" / "__init__.py").write_text("")
    (proj / "usernets" / "models.py").write_text(USER_MODELS.format(home=os.path.realpath(proj)))
    (proj / "usernets" / "data.py").write_text(USER_DATA)
    (proj / "grid.toml").write_text(USER_GRID)
    done = subprocess.run(
        [str(BIN / "lrbench"), "sweep", "grid.toml", "--out", "../out", "--address", address],
        env=ENV, cwd=proj, capture_output=True, text=True, timeout=240,
    )  # fmt: skip
    assert done.returncode == 0, done.stdout + done.stderr
    trials = pd.read_parquet(tmp_path / "out" / "trials")
    assert len(trials) == 4 and "error" not in set(trials.status), trials[["status", "error"]]
    assert trials.node_id.nunique() == 2  # both nodes ran trials
    assert set(trials.builder) == {"usernets.models:build"}
    assert trials.builder_fingerprint.str.len().min() > 0
    assert set(trials.num_classes) == {3}
