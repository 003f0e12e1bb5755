"""``lrbench sweep --max-failures``: a trial whose Ray worker really dies
(SIGKILL from inside the trial, ``tests/probe_builder.py``) is retried that
many times; one that runs out of retries is stored as an ``error`` row
(``harness.sweep.driver._record_worker_failures``), the sweep says it did not finish,
and the same command runs it again."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pandas as pd
import pytest

from tests import probe_builder

pytestmark = pytest.mark.slow  # real Ray sweeps, TensorFlow in their workers

_SCRIPT = Path(sys.executable).with_name("lrbench")
LRBENCH = [str(_SCRIPT)] if _SCRIPT.exists() else [sys.executable, "-m", "lrbench.cli"]

GRID = """
name = "max-failures-test"
datasets = [{{ name = "mnist5k", train_size = 1000 }}]
models = [{{ name = "probe", builder = "probe.py:build", kwargs = {{ probe = "{probe}" }} }}]
optimizers = ["gd"]
lr = [1e-6, 2e-6]
[stop]
budget_s = 3600
max_epochs = 2
prune = false
"""
# Hopeless LRs, unpruned: a trial that runs ends as "budget" after 2 epochs (20 steps).


def _project(tmp_path: Path) -> Path:
    """The grid and the builder of a sweep whose first trial attempt kills its worker."""
    probe = probe_builder.configure(tmp_path / "probe", die_once=True)
    shutil.copy(probe_builder.__file__, tmp_path / "probe.py")
    (tmp_path / "grid.toml").write_text(GRID.format(probe=probe))
    return probe


def _sweep(tmp_path: Path, max_failures: int) -> subprocess.CompletedProcess[str]:
    cmd = [*LRBENCH, "sweep", "grid.toml", "--out", "out", "--max-failures", str(max_failures)]
    return subprocess.run(cmd, cwd=tmp_path, capture_output=True, text=True, timeout=500)


def _died(probe: Path) -> dict[str, Any]:
    """The one attempt that killed its worker: the first of the sweep."""
    assert (probe / "died").exists()
    return probe_builder.attempts(probe)[0]


def test_a_worker_that_dies_with_no_retry_left_is_an_error_row_and_the_rerun_retries_it(
    tmp_path: Path,
) -> None:
    probe = _project(tmp_path)
    done = _sweep(tmp_path, max_failures=0)
    output = done.stdout + done.stderr
    assert done.returncode == 1, output
    assert "2 trials (0 already stored, 2 run now)" in output
    assert "1 trials did not finish (status error); run the same command" in output

    dead = _died(probe)
    tries = [a["trial"] for a in probe_builder.attempts(probe)]
    assert tries.count(dead["trial"]) == 1  # no retry: max_failures = 0
    trials = pd.read_parquet(tmp_path / "out" / "trials")
    assert sorted(trials.status) == ["budget", "error"], trials[["status", "error"]]
    error = trials[trials.status == "error"].iloc[0]
    # the driver wrote it (_record_worker_failures): the worker had no chance to
    assert pd.isna(error.worker_pid) and error.steps == 0
    assert "died" in error.error and "\n" not in error.error, error.error
    assert f"pid: {dead['pid']}" in error.traceback  # Ray's word on the worker that died
    assert dead["pid"] not in set(trials.worker_pid)

    again = _sweep(tmp_path, max_failures=0)  # the same command: the dead trial runs again
    output = again.stdout + again.stderr
    assert again.returncode == 0, output
    assert "2 trials (1 already stored, 1 run now)" in output
    trials = pd.read_parquet(tmp_path / "out" / "trials")
    assert len(trials) == 2 and trials.trial_id.is_unique, trials[["trial_id", "status"]]
    assert set(trials.status) == {"budget"}
    assert error.trial_id in set(trials.trial_id)


def test_a_worker_that_dies_once_is_retried_and_its_trial_stored_normally(tmp_path: Path) -> None:
    probe = _project(tmp_path)
    done = _sweep(tmp_path, max_failures=1)
    output = done.stdout + done.stderr
    assert done.returncode == 0, output
    assert "2 trials (0 already stored, 2 run now)" in output

    dead = _died(probe)
    tries = probe_builder.attempts(probe)
    # Ray Tune ran the dead attempt's trial again, in another worker
    again = [a for a in tries if a["trial"] == dead["trial"]]
    assert [a["seq"] for a in again][0] == dead["seq"] and len(again) == 2, tries
    assert again[1]["pid"] != dead["pid"]
    assert len(tries) == 3  # two trials, one retry
    trials = pd.read_parquet(tmp_path / "out" / "trials")
    assert len(trials) == 2 and trials.trial_id.is_unique
    assert set(trials.status) == {"budget"}, trials[["status", "error"]]
    assert again[1]["pid"] in set(trials.worker_pid)  # the retry stored the row
    assert dead["pid"] not in set(trials.worker_pid)
