"""Kill a running ``lrbench sweep`` after some trials finish, then run it again.

Progress is gated on files, not on the clock: the grid's model is a user's
builder (``tests/probe_builder.py``, copied next to the grid) that lets the
first ``FREE`` trials train and holds every later one at its build until the
test releases it, so on any machine exactly ``FREE`` trials are stored when
the sweep is interrupted, and a held one is running."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
from typer.testing import CliRunner

from lrbench.cli import app
from tests import helpers, probe_builder

pytestmark = pytest.mark.slow

GRID = """
name = "resume-test"
models = [{{ name = "probe", builder = "probe.py:build", kwargs = {{ probe = "{probe}" }} }}]
optimizers = ["gd"]
lr = [1e-6, 2e-6, 3e-6, 4e-6, 5e-6, 6e-6]
[stop]
budget_s = 3600
max_epochs = 30
prune = false
"""
# Hopeless LRs, unpruned: each trial ends as "budget" after its 30 epochs (1,200 steps).
FREE = 2  # trials that train before the test releases the rest


def _sweep(grid: Path, out: Path, **kwargs: Any) -> subprocess.Popen[str]:
    cmd = [sys.executable, "-m", "lrbench.cli", "sweep", str(grid), "--out", str(out)]
    return subprocess.Popen(
        cmd,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,  # its Ray processes share the session: see _session
        **kwargs,
    )


def _stored(out: Path) -> dict[str, Any]:
    """Trial id -> when it started, for the stored trial rows (per-trial files,
    or compacted parts once a sweep has finished)."""
    if not (out / "trials").exists():
        return {}
    rows = pd.read_parquet(out / "trials")
    if rows.empty:  # the folder exists before its first file is written
        return {}
    return dict(zip(rows.trial_id, rows.started_at, strict=True))


def _finished(out: Path, names: Iterable[str]) -> tuple[set[str], list[str]]:
    """The stored rows a rerun must keep: every status but error (which it retries)."""
    rows = pd.read_parquet(out / "trials")
    rows = rows[rows.trial_id.isin(names)]
    return set(rows.loc[rows.status != "error", "trial_id"]), list(rows.status)


def _refused_while_held(grid: Path, out: Path) -> None:
    """A second sweep on a directory whose sweep is running stops at once, one line."""
    second = _sweep(grid, out)
    output, _ = second.communicate(timeout=120)
    assert second.returncode == 2, output
    errors = [line for line in output.splitlines() if line.startswith("error: ")]
    assert len(errors) == 1 and f"{out}: in use by lrbench sweep {grid}" in errors[0]


@pytest.mark.parametrize("sig", [signal.SIGKILL, signal.SIGINT], ids=["crash", "ctrl-c"])
def test_interrupted_sweep_resumes_without_repeating_a_trial(
    tmp_path: Path, write_grid: Callable[[str], Path], sig: signal.Signals
) -> None:
    """Also: while the sweep runs, its lock turns a second sweep on the same
    directory away; after a crash the stale lock is taken over."""
    probe = probe_builder.configure(tmp_path / "probe", hold_after=FREE)
    shutil.copy(probe_builder.__file__, tmp_path / "probe.py")
    grid, out = write_grid(GRID.format(probe=probe)), tmp_path / "out"
    proc = _sweep(grid, out)
    deadline = time.monotonic() + 240
    if sig == signal.SIGINT:  # the lock is taken before Ray starts
        while not (out / ".lock").exists():
            assert proc.poll() is None, proc.stdout.read()
            assert time.monotonic() < deadline, "no lock taken in time"
            time.sleep(0.1)
        _refused_while_held(grid, out)
    # the free trials are stored and a held one has started: interrupt it mid-trial
    while len(_stored(out)) < FREE or len(probe_builder.attempts(probe)) <= FREE:
        assert proc.poll() is None, proc.stdout.read()
        assert time.monotonic() < deadline, "no trial finished in time"
        time.sleep(0.2)
    if sig == signal.SIGKILL:  # a crash takes the driver and its Ray processes at once
        for pid in helpers.session_pids(proc.pid):
            os.kill(pid, signal.SIGKILL)
    else:
        proc.send_signal(sig)
    output, _ = proc.communicate(timeout=120)
    if sig == signal.SIGINT:
        assert proc.returncode == 130, output
        assert "run the same command to resume" in output
    helpers.wait_session_gone(proc.pid)
    assert (out / ".lock").exists() == (sig == signal.SIGKILL)  # a crash leaves it behind
    before = _stored(out)
    finished, statuses = _finished(out, before)
    assert len(finished) == FREE, statuses  # no held trial stored a row
    held = len(probe_builder.attempts(probe))
    if sig == signal.SIGKILL:  # and then a file breaks: its trial runs again too
        broken = _corrupt_then_report(out, sorted(finished)[0], tmp_path / "report")
        finished -= {broken}

    probe_builder.release(probe)
    again = _sweep(grid, out)
    output, _ = again.communicate(timeout=300)
    assert again.returncode == 0, output
    assert f"{len(finished)} already stored, {6 - len(finished)} run now" in output, statuses
    # the rerun built (so trained) only the trials not finished: once each
    assert len(probe_builder.attempts(probe)) - held == 6 - len(finished)

    after = _stored(out)
    for name in finished:  # finished trials were not run again
        assert after[name] == before[name]
    trials = pd.read_parquet(out / "trials")
    assert len(trials) == 6 and trials.trial_id.is_unique
    assert set(trials.status) == {"budget"}
    runs = json.loads((out / "manifest.json").read_text())["runs"]
    assert [r["pending"] for r in runs] == [6, 6 - len(finished)]
    assert "wall_s" in runs[-1] and runs[-1]["run_id"]  # each run closes its own entry
    assert not (out / ".lock").exists()
    if sig == signal.SIGKILL:  # the rerun, holding the lock, moved both aside: nothing deleted
        moved = [line for line in output.splitlines() if " moved to " in line]
        for name in (f"trials/{broken}.parquet", "trials/README"):
            assert [line for line in moved if f"{name}:" in line], output
        assert len(list((out / "quarantine" / "trials").iterdir())) == 2
    if sig == signal.SIGINT:  # (a crash mid-write may leave a hidden temporary file)
        assert not [p for p in out.rglob(".*")], "temporary files left behind"
    assert [p.name.startswith("part-") for p in (out / "trials").iterdir()] == [True]


def _corrupt_then_report(out: Path, trial_id: str, report: Path) -> str:
    """A truncated row and a stray file: the report, which holds no lock, says
    so in one line each, leaves both where they are and draws the rest (the
    next sweep moves them aside). Returns the trial whose row went."""
    row = out / "trials" / f"{trial_id}.parquet"
    row.write_bytes(row.read_bytes()[:-40])
    (out / "trials" / "README").write_text("a stray file")
    result = CliRunner().invoke(app, ["report", str(out), "--out", str(report)])
    assert result.exit_code == 0, result.output
    warnings = [line for line in result.output.splitlines() if line.startswith("warning: ")]
    assert len(warnings) == 2 and all("left in place" in w for w in warnings), result.output
    assert row.exists() and not (out / "quarantine").exists()  # a reader moves nothing
    return trial_id
