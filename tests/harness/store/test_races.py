"""Two writers, or a writer and a reader, on one store: every trial reads once
(its newest copy, with its own curve), compaction leaves one copy, and the
lock lets one writer in at a time, on a local disk and on S3."""

from __future__ import annotations

import json
import multiprocessing
import os
import time
from dataclasses import replace
from pathlib import Path

import pytest
from typer.testing import CliRunner

from harness.errors import StoreError
from harness.store import location, locking
from harness.store.results import Store
from lrbench.cli import app
from tests import helpers

runner = CliRunner()


def _rerun(outcome, started_at: str, loss: float):
    """The same trial run again later, with another curve."""
    record = replace(outcome.record, started_at=started_at)
    curve = [replace(p, train_loss=loss) for p in outcome.curve]
    return replace(outcome, record=record, curve=curve)


def _copies(root: Path, trial_id: str) -> int:
    """How many trials files hold ``trial_id``."""
    import pyarrow.parquet as pq

    return sum(
        trial_id in pq.read_table(p, columns=["trial_id"]).column(0).to_pylist()
        for p in (root / "trials").glob("*.parquet")
    )


def test_a_rerun_of_a_compacted_trial_wins_with_its_own_curve(tmp_path):
    store = Store(str(tmp_path))
    first = helpers.outcome(lr=0.01)
    other = helpers.outcome(lr=0.02)
    store.write_trial(first)
    store.write_trial(other)
    store.compact()
    rid = first.record.trial_id
    again = _rerun(first, "2030-01-01T00:00:00+00:00", loss=9.5)
    store.write_trial(again)  # its own files, next to the part that holds the old copy

    trials = store.read_trials()
    assert sorted(trials["trial_id"]) == sorted([rid, other.record.trial_id])  # once each
    assert str(trials.set_index("trial_id").loc[rid, "started_at"]).startswith("2030")
    curve = store.read_curves(trial_ids={rid})
    assert list(curve["train_loss"]) == [9.5] * len(first.curve)  # the rerun's curve, alone
    assert _copies(tmp_path, rid) == 2

    done = store.compact()
    assert _copies(tmp_path, rid) == 1  # the old copy left its part
    assert done.trials == 1
    assert list(store.read_curves(trial_ids={rid})["train_loss"]) == [9.5] * len(first.curve)
    assert len(store.read_curves()) == len(first.curve) + len(other.curve)


def test_a_trial_in_two_parts_reads_once_and_compaction_keeps_one(tmp_path):
    """What two compactions of one URI at once would leave: two parts with
    the same trials (and, as a reader may list, per-trial files beside them)."""
    import shutil

    store = Store(str(tmp_path))
    outcomes = [helpers.outcome(lr=lr) for lr in (0.01, 0.02, 0.03)]
    for outcome in outcomes:
        store.write_trial(outcome)
    saved = tmp_path.parent / "singles"
    shutil.copytree(tmp_path, saved)
    store.compact()
    for folder in ("trials", "curves"):  # the second compaction's part of the same trials
        (part,) = (tmp_path / folder).glob("part-*.parquet")
        shutil.copy(part, tmp_path / folder / "part-second.parquet")
        for single in (saved / folder).glob("*.parquet"):  # and a killed one's leftovers
            shutil.copy(single, tmp_path / folder)

    ids = sorted(o.record.trial_id for o in outcomes)
    assert sorted(store.read_trials()["trial_id"]) == ids
    assert len(store.read_curves()) == sum(len(o.curve) for o in outcomes)
    assert set(store.finished()) == set(ids)

    store.compact()
    assert all(_copies(tmp_path, rid) == 1 for rid in ids)
    assert sorted(store.read_trials()["trial_id"]) == ids
    assert len(store.read_curves()) == sum(len(o.curve) for o in outcomes)


def test_a_curve_without_its_row_in_the_same_file_is_not_read(tmp_path):
    """A curves part whose rows part was never written (a kill between the
    two writes) pairs with nothing: the per-trial curve is read, and the next
    compaction removes the orphan."""
    import pyarrow.parquet as pq

    store = Store(str(tmp_path))
    outcome = helpers.outcome()
    store.write_trial(outcome)
    curve = pq.read_table(tmp_path / "curves" / f"{outcome.record.trial_id}.parquet")
    doubled = curve.set_column(
        curve.column_names.index("train_loss"),
        "train_loss",
        curve.column("train_loss").cast("double"),
    )
    pq.write_table(doubled.slice(0, 1), tmp_path / "curves" / "part-orphan.parquet")
    assert len(store.read_curves()) == len(outcome.curve)
    store.compact()
    assert not (tmp_path / "curves" / "part-orphan.parquet").exists()
    assert len(store.read_curves()) == len(outcome.curve)


def _hold(root: str, marker: str, results: multiprocessing.Queue) -> None:
    """Take the lock, and record whether another holder was inside at once."""
    try:
        with location.Location(root).locked("a racer"):
            try:
                fd = os.open(marker, os.O_CREAT | os.O_EXCL | os.O_WRONLY)
            except FileExistsError:
                results.put("overlap")
                return
            time.sleep(0.3)
            os.close(fd)
            os.unlink(marker)
            results.put("held")
    except StoreError:
        results.put("refused")


def test_racers_on_a_stale_local_lock_get_in_one_at_a_time(tmp_path):
    """A lock file left by a process that is gone, and eight processes that
    all find it at once: one takes it over, none runs beside another."""
    root = tmp_path / "out"
    root.mkdir()
    (root / ".lock").write_text(json.dumps({"pid": 2**22 + 7, "host": "gone", "what": "x"}))
    results: multiprocessing.Queue = multiprocessing.get_context("fork").Queue()
    ctx = multiprocessing.get_context("fork")
    racers = [
        ctx.Process(target=_hold, args=(str(root), str(tmp_path / "inside"), results))
        for _ in range(8)
    ]
    for p in racers:
        p.start()
    for p in racers:
        p.join(timeout=120)
    seen = sorted(results.get(timeout=10) for _ in racers)
    assert "overlap" not in seen
    assert seen.count("held") >= 1 and seen.count("held") + seen.count("refused") == 8
    with location.Location(str(root)).locked("after them"):  # nothing left held
        pass
    assert not (root / ".lock").exists()


def test_a_held_local_lock_names_its_holder(tmp_path):
    store = Store(str(tmp_path))
    with store.locked("lrbench sweep grid.toml"):
        with pytest.raises(StoreError, match=r"in use by lrbench sweep grid.toml \(pid \d+"):
            Store(str(tmp_path)).locked("another").__enter__()
        assert store.writing
    assert not store.writing


def test_a_second_compaction_of_a_uri_is_refused_while_the_first_holds_it(s3, monkeypatch):
    monkeypatch.setattr(locking, "LEASE_SETTLE_S", 0.05)
    uri = s3("races")
    store = Store(uri)
    store.write_json("manifest.json", {"name": "test", "runs": []})
    for lr in (0.01, 0.02):
        store.write_trial(helpers.outcome(lr=lr))
    with store.locked("lrbench compact"):
        second = runner.invoke(app, ["compact", uri])
        assert second.exit_code == 2, second.output
        assert "in use by lrbench compact" in second.output
        assert len(store.entries("trials")) == 2  # the second one merged nothing
    first = runner.invoke(app, ["compact", uri])
    assert first.exit_code == 0, first.output
    assert "2 trials merged into 1 part" in first.output
    assert not store.has(".lock")


def test_two_uri_leases_taken_at_once_let_one_in(s3, monkeypatch):
    """Two writers that start together both find no lease and write theirs;
    after the settling wait each reads it back, and only the later one's is
    there: one goes on, the other stops."""
    import threading

    monkeypatch.setattr(locking, "LEASE_SETTLE_S", 0.5)
    uri = s3("lease")
    start = threading.Barrier(2)
    outcomes: list[str] = []

    def take(name: str) -> None:
        start.wait()
        try:
            with location.Location(uri).locked(name):
                outcomes.append("in")
                time.sleep(1.0)
        except StoreError as exc:
            outcomes.append(str(exc))

    threads = [threading.Thread(target=take, args=(n,)) for n in ("a", "b")]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    assert len(outcomes) == 2 and outcomes.count("in") == 1, outcomes
    assert not location.Location(uri).has(".lock")
