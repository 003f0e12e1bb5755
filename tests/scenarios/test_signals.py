"""SIGTERM, as systemd, Kubernetes and CI runners stop a job, is handled as
Ctrl-C is: one line saying how many trials are kept and how to resume, the
directory's lock released, the run's entry in the manifest ended, exit 143;
and the same command resumes without repeating a trial.

Progress is gated on files, not on the clock: the grid's model is a user's
builder (``tests/probe_builder.py``, copied next to the grid) that lets the
first trial train and holds every later one at its build until the test
releases it, so exactly one trial is stored when the signal comes."""

from __future__ import annotations

import json
import re
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from harness.store.results import Store
from tests import helpers, probe_builder
from tests.helpers import outcome

pytestmark = pytest.mark.slow

GRID = """
name = "sigterm-test"
datasets = [{{ name = "mnist5k", train_size = 1000 }}]
models = [{{ name = "probe", builder = "probe.py:build", kwargs = {{ probe = "{probe}" }} }}]
optimizers = ["gd"]
lr = [1e-6, 2e-6, 3e-6]
[stop]
budget_s = 3600
max_epochs = 1
prune = false
"""
# Hopeless LRs, unpruned, one epoch: each trial ends as "budget".
FREE = 1  # trials that train before the test releases the rest
PROGRESS = re.compile(r"^\[\d+/\d+\] ")  # the sweep's progress lines (stderr)
# TensorFlow's log lines as it is imported (e.g. no CUDA device), whatever the signal
TF_LOG = re.compile(r"^[IWEF]\d{4} \d\d:\d\d:\d\d")
# What Ray printed on a SIGTERM before: its C++ signal handler's stack dump,
# its own processes' errors, a Python traceback
NOISE = ("SIGTERM received", "PC: @", "Traceback", "(raylet)", "logging.cc", "core_worker")


def _lrbench(*args: str) -> subprocess.Popen[str]:
    """The ``lrbench`` command in its own session (its Ray processes join it)."""
    return subprocess.Popen(
        [sys.executable, "-m", "lrbench.cli", *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )


def _wait(proc: subprocess.Popen[str], ready: Callable[[], bool], what: str) -> None:
    deadline = time.monotonic() + 600
    while not ready():
        if proc.poll() is not None:
            pytest.fail(f"exited {proc.returncode} before {what}: {proc.communicate()}")
        assert time.monotonic() < deadline, f"not {what} in time"
        time.sleep(0.05)


def _stored(out: Path) -> dict[str, object]:
    """Trial id -> when it started, for the trials stored in ``out``."""
    rows = Store(str(out)).read_trials()
    return dict(zip(rows.trial_id, rows.started_at, strict=True))


def _one_line(stderr: str, expected: str) -> None:
    """stderr holds the progress lines and one more: ``expected``; no noise."""
    lines = [
        line
        for line in stderr.splitlines()
        if line.strip() and not PROGRESS.match(line) and not TF_LOG.match(line)
    ]
    assert lines == [expected], stderr
    assert not [n for n in NOISE if n in stderr], stderr


def _probe_grid(tmp_path: Path, write_grid: Callable[[str], Path]) -> tuple[Path, Path]:
    probe = probe_builder.configure(tmp_path / "probe", hold_after=FREE)
    shutil.copy(probe_builder.__file__, tmp_path / "probe.py")
    return write_grid(GRID.format(probe=probe)), probe


def _running_held(out: Path, probe: Path) -> Callable[[], bool]:
    """True once the free trial is stored in ``out`` and a held one has started."""

    def ready() -> bool:
        return len(probe_builder.attempts(probe)) > FREE and len(_trial_files(out)) >= FREE

    return ready


def _trial_files(out: Path) -> list[Path]:
    return list((out / "trials").glob("*.parquet")) if (out / "trials").is_dir() else []


def _terminate(proc: subprocess.Popen[str], out: Path) -> None:
    """SIGTERM to the command alone (as Kubernetes and docker stop send it):
    exit 143, the one line saying what is kept, Ray's processes gone, the
    results directory's lock released."""
    proc.send_signal(signal.SIGTERM)
    _, stderr = proc.communicate(timeout=300)
    assert proc.returncode == 143, stderr
    _one_line(
        stderr,
        f"interrupted (SIGTERM): 1 finished trial is stored in {out}; "
        "run the same command to resume",
    )
    helpers.wait_session_gone(proc.pid)
    assert not (out / ".lock").exists()


def test_sigterm_stops_a_sweep_as_ctrl_c_does(
    tmp_path: Path, write_grid: Callable[[str], Path]
) -> None:
    grid, probe = _probe_grid(tmp_path, write_grid)
    out = tmp_path / "out"
    proc = _lrbench("sweep", str(grid), "--out", str(out))
    _wait(proc, _running_held(out, probe), "a trial stored and a held one running")
    _terminate(proc, out)
    before = _stored(out)
    assert len(before) == FREE
    (run,) = json.loads((out / "manifest.json").read_text())["runs"]
    assert run["finished_at"] and run["counts"] == {"budget": FREE}  # the run's entry ended

    held = len(probe_builder.attempts(probe))
    probe_builder.release(probe)
    again = subprocess.run(
        [sys.executable, "-m", "lrbench.cli", "sweep", str(grid), "--out", str(out)],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert again.returncode == 0, again.stderr
    assert "3 trials (1 already stored, 2 run now)" in again.stdout
    assert len(probe_builder.attempts(probe)) - held == 2  # the stored trial did not run again
    after = _stored(out)
    assert len(after) == 3
    assert all(after[name] == started for name, started in before.items())


def test_sigterm_stops_a_night_which_then_resumes(
    tmp_path: Path, write_grid: Callable[[str], Path]
) -> None:
    grid, probe = _probe_grid(tmp_path, write_grid)
    history = tmp_path / "history"
    proc = _lrbench("nightly", "run", str(grid), "--history", str(history), "--revision", "r1")

    def runs() -> list[Path]:
        return sorted((history / "runs").glob("*/")) if (history / "runs").is_dir() else []

    _wait(proc, lambda: len(runs()) == 1, "tonight's run recorded")
    (out,) = runs()
    _wait(proc, _running_held(out, probe), "a trial stored and a held one running")
    _terminate(proc, out)
    assert not (history / "nights").exists()  # nothing committed
    (run,) = json.loads((out / "manifest.json").read_text())["runs"]
    assert run["finished_at"]  # the night's run entry ended
    before = _stored(out)

    held = len(probe_builder.attempts(probe))
    probe_builder.release(probe)
    again = subprocess.run(
        [
            sys.executable,
            "-m",
            "lrbench.cli",
            "nightly",
            "run",
            str(grid),
            "--history",
            str(history),
        ]
        + ["--revision", "r1"],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert again.returncode == 0, again.stderr  # a first night: no baseline, no regression
    assert f"night {out.name} (resumed): 3 trials (2 run now)" in again.stderr
    assert len(probe_builder.attempts(probe)) - held == 2
    assert all(_stored(out)[name] == started for name, started in before.items())
    (night,) = (history / "nights").rglob("*.parquet")
    assert night.stem == out.name


COMPACTED = 500  # per-trial files: enough that a compaction is still reading when stopped


def test_sigterm_stops_a_compaction_losing_nothing(tmp_path: Path) -> None:
    out = tmp_path / "out"
    store = Store(str(out))
    for i in range(COMPACTED):
        store.write_trial(outcome(lr=1e-4 * (i + 1)))
    ids = set(store.read_trials().trial_id)
    assert len(ids) == COMPACTED

    proc = _lrbench("compact", str(out))

    def locked() -> bool:  # the lock is taken and says who holds it: compaction has begun
        try:
            return bool((out / ".lock").read_text())
        except OSError:
            return False

    _wait(proc, locked, "the lock taken")
    proc.send_signal(signal.SIGTERM)
    stdout, stderr = proc.communicate(timeout=300)
    assert proc.returncode == 143, stdout + stderr
    _one_line(
        stderr,
        f"interrupted (SIGTERM): {out}: compaction stopped, nothing lost; run it again to finish",
    )
    assert not (out / ".lock").exists()
    assert not [p for p in out.rglob(".*")], "temporary files left behind"
    assert set(Store(str(out)).read_trials().trial_id) == ids

    again = subprocess.run(
        [sys.executable, "-m", "lrbench.cli", "compact", str(out)],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert again.returncode == 0, again.stderr
    rows = Store(str(out)).read_trials()
    assert set(rows.trial_id) == ids and rows.trial_id.is_unique
    assert all(p.name.startswith("part-") for p in (out / "trials").iterdir())
