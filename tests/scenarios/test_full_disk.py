"""A results directory on a disk that fills up: the sweep stops with one line
and exit 1, every trial stored before stays readable, no half-written file is
left to be taken for a result, and a rerun with room resumes without repeating
them. So does a compaction on a full disk.

The disk is a real one: a small tmpfs, mounted in a user and mount namespace
of its own (``unshare``), so no root is needed where the kernel allows user
namespaces; the test is skipped where it does not."""

from __future__ import annotations

import errno
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pyarrow.parquet as pq
import pytest
from typer.testing import CliRunner

from harness.store.results import Store
from lrbench.cli import app
from tests import helpers

GRID = """
name = "full-disk"
datasets = [{ name = "mnist5k", train_size = 1000 }]
models = [{ name = "probe", builder = "probe.py:build", kwargs = { probe = "PROBE" } }]
optimizers = ["gd"]
lr = [1e-6, 2e-6, 3e-6, 4e-6, 5e-6, 6e-6, 7e-6, 8e-6]
[stop]
budget_s = 3600
max_epochs = 1
prune = false
"""
TRIALS = 8
# 28 pages: the manifest and the lock take a page each, a trial's row (17 KB,
# with the grid in its metadata) and curve (4 KB) 6: about four trials fit.
DISK = "112k"

# In the namespace: mount the disk, sweep onto it, fill what is left but one
# page (room for compaction's lock, not for its parts), compact, then copy the
# results out (the mount goes with the namespace).
INSIDE = """
set -u
mount -t tmpfs -o size={disk} lrbench-full "$MNT"
cd "$GRIDDIR"
"$PY" -m lrbench.cli sweep grid.toml --out "$MNT/out" >"$LOGS/sweep.out" 2>"$LOGS/sweep.err"
echo $? >"$LOGS/sweep.rc"
dd if=/dev/zero of="$MNT/filler" bs=4096 2>/dev/null
truncate -s -4096 "$MNT/filler"
"$PY" -m lrbench.cli compact "$MNT/out" >"$LOGS/compact.out" 2>"$LOGS/compact.err"
echo $? >"$LOGS/compact.rc"
cp -a "$MNT/out" "$LOGS/copy"
"""


def _namespaces() -> bool:
    """Whether this process may mount a tmpfs in a user namespace of its own."""
    if shutil.which("unshare") is None:
        return False
    probe = subprocess.run(
        ["unshare", "-rm", "sh", "-c", "mount -t tmpfs none /mnt"], capture_output=True
    )
    return probe.returncode == 0


def _error_lines(text: str) -> list[str]:
    return [line for line in text.splitlines() if line.startswith("error:")]


@pytest.mark.slow
@pytest.mark.skipif(not _namespaces(), reason="no user namespaces here to mount a tmpfs")
def test_a_full_disk_stops_the_sweep_and_keeps_every_stored_trial(tmp_path: Path) -> None:
    from tests import probe_builder

    probe = probe_builder.configure(tmp_path / "probe")  # no holds: every trial trains
    shutil.copy(probe_builder.__file__, tmp_path / "probe.py")
    (tmp_path / "grid.toml").write_text(GRID.replace("PROBE", str(probe)))
    mnt, logs = tmp_path / "mnt", tmp_path / "logs"
    mnt.mkdir()
    logs.mkdir()
    env = {
        "MNT": str(mnt),
        "LOGS": str(logs),
        "GRIDDIR": str(tmp_path),
        "PY": sys.executable,
        "PYTHONPATH": str(helpers.ROOT),
    }
    done = subprocess.run(
        ["unshare", "-rm", "bash", "-c", INSIDE.format(disk=DISK)],
        env={**os.environ, **env},
        capture_output=True,
        text=True,
        timeout=1200,
    )
    assert done.returncode == 0, done.stderr

    sweep_err = (logs / "sweep.err").read_text()
    assert (logs / "sweep.rc").read_text().strip() == "1", sweep_err
    (error,) = _error_lines(sweep_err)
    assert f"{mnt}/out: cannot store results" in error and "No space left on device" in error
    assert "Traceback" not in sweep_err

    compact_err = (logs / "compact.err").read_text()
    assert (logs / "compact.rc").read_text().strip() == "1", compact_err
    (error,) = _error_lines(compact_err)
    assert f"{mnt}/out" in error and "No space left on device" in error
    assert "Traceback" not in compact_err

    copy = logs / "copy"
    assert not [p for p in copy.rglob(".*")], "temporary files left behind"
    for path in copy.rglob("*.parquet"):  # every file there is a whole Parquet file
        pq.read_table(path)
    store = Store(str(copy))
    kept = store.read_trials()
    assert 1 <= len(kept) < TRIALS, "the disk size no longer splits the sweep"
    assert set(kept.status) == {"budget"}  # no error rows: the stop recorded nothing
    assert set(store.read_curves().trial_id) == set(kept.trial_id)
    before = dict(zip(kept.trial_id, kept.started_at, strict=True))

    again = subprocess.run(
        [sys.executable, "-m", "lrbench.cli", "sweep", "grid.toml", "--out", str(copy)],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert again.returncode == 0, again.stderr
    ran = TRIALS - len(kept)
    assert f"{TRIALS} trials ({len(kept)} already stored, {ran} run now)" in again.stdout
    after = Store(str(copy)).read_trials()
    assert len(after) == TRIALS and after.trial_id.is_unique
    assert all(
        after.set_index("trial_id").loc[name, "started_at"] == started
        for name, started in before.items()
    )


def test_a_full_disk_while_compacting_is_one_line(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The driver's own writes (here a compaction's) on a full disk: one line, exit 1."""
    from tests.helpers import outcome

    out = tmp_path / "out"
    Store(str(out)).write_trial(outcome())

    def full(self: Store, *args: object, **kwargs: object) -> None:
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(Store, "compact", full)
    result = CliRunner().invoke(app, ["compact", str(out)])
    assert result.exit_code == 1, result.output
    assert result.output.strip().splitlines() == [
        f"error: {out}: cannot store results (No space left on device); finished work is kept"
    ]
    assert not (out / ".lock").exists()
