"""Kill a running ``lrbench sweep`` after some trials finish, then run it again."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest

pytestmark = pytest.mark.slow

GRID = """
name = "resume-test"
models = ["tiny_cnn"]
optimizers = ["gd"]
lr = [1e-6, 2e-6, 3e-6, 4e-6, 5e-6, 6e-6]
[stop]
budget_s = 3600
max_epochs = 10
"""
# Hopeless LRs: each trial ends as "budget" after its 10 epochs (400 steps, a few
# seconds), long enough to interrupt the sweep between trials.


def _sweep(grid, out, **kwargs):
    cmd = [sys.executable, "-m", "harness.cli", "sweep", str(grid), "--out", str(out)]
    return subprocess.Popen(
        cmd,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,  # its Ray processes share the session: see _session
        **kwargs,
    )


def _session(sid):
    """The live processes of session ``sid``: the sweep and the Ray processes it
    started (raylet, workers), which a kill of the driver alone leaves running
    until they notice; one of them may still store a trial."""
    pids = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[3]) == sid and fields[0] != "Z":
            pids.append(int(stat.parent.name))
    return pids


def _wait_gone(sid, timeout=120):
    deadline = time.monotonic() + timeout
    while _session(sid) and time.monotonic() < deadline:
        time.sleep(0.2)
    for pid in _session(sid):  # what would not stop is killed, so the rerun starts clean
        os.kill(pid, signal.SIGKILL)


def _stored(out):
    """File name -> modification time, for the stored trial rows."""
    folder = out / "trials"
    if not folder.exists():
        return {}
    return {p.name: p.stat().st_mtime_ns for p in folder.glob("*.parquet")}


def _finished(out, names):
    """The stored rows a rerun must keep: every status but error (which it retries)."""
    rows = pd.concat([pd.read_parquet(out / "trials" / name) for name in names])
    return {f"{i}.parquet" for i in rows.loc[rows.status != "error", "trial_id"]}, list(rows.status)


@pytest.mark.parametrize("sig", [signal.SIGKILL, signal.SIGINT], ids=["crash", "ctrl-c"])
def test_interrupted_sweep_resumes_without_repeating_a_trial(tmp_path, write_grid, sig):
    grid, out = write_grid(GRID), tmp_path / "out"
    proc = _sweep(grid, out)
    deadline = time.monotonic() + 240
    while len(_stored(out)) < 2:
        assert proc.poll() is None, proc.stdout.read()
        assert time.monotonic() < deadline, "no trial finished in time"
        time.sleep(0.2)
    if sig == signal.SIGKILL:  # a crash takes the driver and its Ray processes at once
        for pid in _session(proc.pid):
            os.kill(pid, signal.SIGKILL)
    else:
        proc.send_signal(sig)
    output, _ = proc.communicate(timeout=120)
    if sig == signal.SIGINT:
        assert proc.returncode == 130, output
        assert "run the same command to resume" in output
    _wait_gone(proc.pid)
    before = _stored(out)
    finished, statuses = _finished(out, before)
    assert 2 <= len(finished) < 6, statuses

    again = _sweep(grid, out)
    output, _ = again.communicate(timeout=300)
    assert again.returncode == 0, output
    assert f"{len(finished)} already stored, {6 - len(finished)} run now" in output, statuses

    after = _stored(out)
    for name in finished:  # finished trials were not run again
        assert after[name] == before[name]
    trials = pd.read_parquet(out / "trials")
    assert len(trials) == 6 and trials.trial_id.is_unique
    assert set(trials.status) == {"budget"}
    runs = json.loads((out / "manifest.json").read_text())["runs"]
    assert [r["pending"] for r in runs] == [6, 6 - len(finished)]
    if sig == signal.SIGINT:  # (a crash mid-write may leave a hidden temporary file)
        assert not [p for p in out.rglob(".*")], "temporary files left behind"


def test_a_corrupt_trial_file_is_moved_aside_and_the_trial_runs_again(tmp_path, write_grid):
    grid = write_grid(
        GRID.replace("lr = [1e-6, 2e-6, 3e-6, 4e-6, 5e-6, 6e-6]", "lr = [1e-6, 2e-6]")
    )
    out = tmp_path / "out"
    first = _sweep(grid, out)
    output, _ = first.communicate(timeout=300)
    assert first.returncode == 0, output
    rows = sorted((out / "trials").glob("*.parquet"))
    rows[0].write_bytes(b"")  # a disk that filled up, or a copy cut short
    (out / "trials" / "README").write_text("a stray file")

    report = subprocess.run(
        [sys.executable, "-m", "harness.cli", "report", str(out), "--out", str(tmp_path / "r")],
        capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert report.returncode == 0, report.stderr
    warnings = [line for line in report.stderr.splitlines() if line.startswith("warning: ")]
    assert len(warnings) == 2 and all("moved to" in w for w in warnings), report.stderr
    assert len(list((out / "quarantine" / "trials").iterdir())) == 2  # nothing deleted

    again = _sweep(grid, out)
    output, _ = again.communicate(timeout=300)
    assert again.returncode == 0, output
    assert "1 already stored, 1 run now" in output
    assert len(pd.read_parquet(out / "trials")) == 2


def test_a_second_sweep_on_the_same_directory_stops_at_once(tmp_path, write_grid):
    """Two sweeps on one --out would train the same trials and race on the
    manifest: the second stops with one line while the first holds the lock,
    a lock left by a process that is gone is taken over, and each run closes
    its own manifest entry."""
    grid, out = write_grid(GRID), tmp_path / "out"
    first = _sweep(grid, out)
    deadline = time.monotonic() + 240
    while not (out / ".lock").exists():
        assert first.poll() is None, first.stdout.read()
        assert time.monotonic() < deadline
        time.sleep(0.1)
    other = write_grid(GRID.replace('"resume-test"', '"other"'), "other.toml")
    for g in (grid, other):  # the same grid, or another aimed at the same new directory
        second = _sweep(g, out)
        output, _ = second.communicate(timeout=120)
        assert second.returncode == 2, output
        errors = [line for line in output.splitlines() if line.startswith("error: ")]
        assert len(errors) == 1 and f"{out}: in use by lrbench sweep {grid}" in errors[0]
    output, _ = first.communicate(timeout=300)
    assert first.returncode == 0, output
    assert not (out / ".lock").exists()

    gone = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                          capture_output=True, text=True, check=True)  # fmt: skip
    stale = {"pid": int(gone.stdout), "host": __import__("socket").gethostname(), "start": "1"}
    (out / ".lock").write_text(json.dumps(stale))
    again = _sweep(grid, out)
    output, _ = again.communicate(timeout=300)
    assert again.returncode == 0 and "6 already stored, 0 run now" in output, output
    runs = json.loads((out / "manifest.json").read_text())["runs"]
    assert len(runs) == 1 and runs[0]["wall_s"] > 0 and runs[0]["run_id"]
