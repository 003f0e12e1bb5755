"""Compaction: per-trial files merged into parts, read the same, killed anywhere."""

from __future__ import annotations

import pytest
from typer.testing import CliRunner

from harness.store.records import TrialStatus
from harness.store.results import Store
from lrbench.cli import app
from tests import helpers

runner = CliRunner()


def _store(path, n: int = 12) -> Store:
    """``n`` trials written through the store's writer; every fourth an error."""
    store = Store(str(path), grid_json={"name": "test"})
    for i in range(n):
        status = TrialStatus.ERROR if i % 4 == 3 else TrialStatus.BUDGET
        store.write_trial(helpers.outcome(status, optimizer="adam", lr=10.0 ** (i / 4 - 3)))
    return store


def _snapshot(store: Store):
    trials = store.read_trials().sort_values("trial_id", ignore_index=True)
    return trials, store.read_curves(), store.finished()


def _files(path, folder: str) -> list[str]:
    return sorted(p.name for p in (path / folder).glob("*.parquet"))


def test_compaction_merges_finished_trials_and_reads_the_same(tmp_path):
    store = _store(tmp_path)
    trials, curves, finished = _snapshot(store)
    done = store.compact(per_part=5)
    assert (done.trials, done.parts, done.removed) == (9, 2, 18)
    # error rows keep their own files, so a rerun replaces them
    errors = set(trials.loc[trials.status == "error", "trial_id"])
    for folder in ("trials", "curves"):
        names = _files(tmp_path, folder)
        assert sum(n.startswith("part-") for n in names) == 2
        assert {n.removesuffix(".parquet") for n in names if not n.startswith("part-")} == errors
    after = _snapshot(store)
    assert after[0].equals(trials) and after[1].equals(curves) and after[2] == finished
    assert store.compact().trials == 0  # nothing left to merge


class Killed(BaseException):
    pass


@pytest.mark.parametrize("killed_at", ["curves part", "trials part", "first delete"])
def test_a_compaction_killed_anywhere_loses_and_repeats_nothing(tmp_path, monkeypatch, killed_at):
    store = _store(tmp_path)
    before = _snapshot(store)
    write, remove = Store.write_parquet, Store.remove

    def write_then_maybe_die(self, name, table):
        if killed_at == "trials part" and name.startswith("trials/part-"):
            raise Killed
        write(self, name, table)
        if killed_at == "curves part" and name.startswith("curves/part-"):
            raise Killed

    def remove_or_die(self, path):
        if killed_at == "first delete":
            raise Killed
        remove(self, path)

    monkeypatch.setattr(Store, "write_parquet", write_then_maybe_die)
    monkeypatch.setattr(Store, "remove", remove_or_die)
    with pytest.raises(Killed):
        store.compact()
    monkeypatch.undo()

    fresh = Store(str(tmp_path))
    after = _snapshot(fresh)  # no row twice, none lost
    assert after[0].equals(before[0]) and after[1].equals(before[1]) and after[2] == before[2]
    fresh.compact()  # finishes what the killed one left
    assert _files(tmp_path, "trials") == _files(tmp_path, "curves")
    assert sum(n.startswith("part-") for n in _files(tmp_path, "trials")) == 1
    final = _snapshot(fresh)
    assert final[0].equals(before[0]) and final[1].equals(before[1]) and final[2] == before[2]


def test_a_corrupt_part_goes_to_quarantine_with_its_pair(tmp_path):
    store = _store(tmp_path)
    store.compact()
    part = next((tmp_path / "curves").glob("part-*.parquet"))
    part.write_bytes(b"PAR1 not really parquet PAR1")
    assert len(store.read_curves()) == 3 * 3  # a reader skips it, and moves nothing
    assert (tmp_path / "trials" / part.name).exists() and part.exists()
    with store.locked("a test"):
        assert len(store.read_curves()) == 3 * 3  # the error trials' curves are all that is left
    assert not (tmp_path / "trials" / part.name).exists()  # its rows went too: they run again
    assert len(list((tmp_path / "quarantine").rglob("part-*"))) == 2
    assert set(store.finished()) == set()


def test_lrbench_compact_command(tmp_path):
    _store(tmp_path)
    Store(str(tmp_path)).write_json("manifest.json", {"name": "test", "runs": []})
    result = runner.invoke(app, ["compact", str(tmp_path)])
    assert result.exit_code == 0, result.output
    assert (
        result.output.strip()
        == f"{tmp_path}: 9 trials merged into 1 part (18 per-trial files removed)"
    )
    assert not (tmp_path / ".lock").exists()
    result = runner.invoke(app, ["compact", str(tmp_path / "nope")])
    assert result.exit_code == 2 and result.output.startswith("error: ")
    assert "not an lrbench results directory" in result.output
