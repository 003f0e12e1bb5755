from __future__ import annotations

import json

import pandas as pd
import pytest

from harness.errors import StoreError
from harness.grid.parse import parse_grid
from harness.grid.resolved import ResolvedGrid
from harness.store.records import TrialStatus
from harness.store.results import Store, read_grid_metadata
from harness.store.schemas import SCHEMA_METADATA_KEY, curves_schema, trials_schema
from tests import helpers


def test_round_trip_keeps_documented_types(tmp_path):
    store = Store(str(tmp_path / "r"), grid_json={"name": "g"})
    store.write_trial(helpers.outcome())
    store.write_trial(helpers.outcome(TrialStatus.BUDGET, lr=1e-6))
    trials, curves = store.read_trials(), store.read_curves()
    assert list(trials.columns) == trials_schema().names
    assert list(curves.columns) == curves_schema().names
    assert len(trials) == 2 and len(curves) == 6
    assert trials["steps_to_target"].dtype == pd.Int64Dtype()
    assert trials["time_to_target_s"].dtype == "float64"
    assert str(trials["started_at"].dtype) == "datetime64[us, UTC]"
    budget = trials[trials.status == "budget"].iloc[0]
    assert pd.isna(budget["time_to_target_s"]) and pd.isna(budget["steps_to_target"])
    assert json.loads(trials["versions"].iloc[0]) == {"keras": "3"}
    assert curves["val_acc"].notna().sum() == 2
    # each file explains itself: the grid is in the schema metadata
    path = tmp_path / "r" / "trials" / f"{helpers.spec().trial_id}.parquet"
    assert read_grid_metadata(str(path)) == {"name": "g"}
    # no temporary files are left behind
    assert not [p for p in (tmp_path / "r").rglob(".*")]


def test_error_trials_are_not_finished_and_a_retry_replaces_them(tmp_path):
    store = Store(str(tmp_path))
    store.write_trial(helpers.outcome(TrialStatus.ERROR, lr=0.5))
    store.write_trial(helpers.outcome(TrialStatus.DIVERGED, lr=50.0))
    assert store.finished() == {helpers.spec(lr=50.0).trial_id: "diverged"}
    store.write_trial(helpers.outcome(TrialStatus.REACHED, lr=0.5))
    trials = store.read_trials()
    assert len(trials) == 2 and set(trials.status) == {"reached", "diverged"}


def test_empty_store_reads_as_empty_tables(tmp_path):
    store = Store(str(tmp_path / "none"))
    assert store.read_trials().empty and store.read_curves().empty
    assert store.finished() == {} and store.read_manifest() is None


def _damaged(tmp_path):
    """A store of three trials: one intact, one whose row lost its footer,
    one whose curve is empty; and a stray text file among the rows."""
    store = Store(str(tmp_path))
    kept, lost_row, lost_curve = (helpers.outcome(lr=lr) for lr in (0.01, 0.02, 0.03))
    for outcome in (kept, lost_row, lost_curve):
        store.write_trial(outcome)
    row = tmp_path / "trials" / f"{lost_row.record.trial_id}.parquet"
    row.write_bytes(row.read_bytes()[:-40])  # truncated: the footer is gone
    (tmp_path / "curves" / f"{lost_curve.record.trial_id}.parquet").write_bytes(b"")
    (tmp_path / "trials" / "notes.txt").write_text("a stray file")
    return store, kept, lost_row, lost_curve


def _files(tmp_path):
    return sorted(str(p.relative_to(tmp_path)) for p in tmp_path.rglob("*") if p.is_file())


def test_a_reader_without_the_lock_skips_corrupt_files_and_moves_nothing(tmp_path, capsys):
    store, kept, lost_row, lost_curve = _damaged(tmp_path)
    before = _files(tmp_path)
    assert set(store.finished()) == {kept.record.trial_id, lost_curve.record.trial_id}
    assert set(store.read_curves()["trial_id"]) == {kept.record.trial_id}
    store.read_curves()  # each corrupt file is reported once
    assert _files(tmp_path) == before  # a report or an export moves nothing
    warnings = capsys.readouterr().err.strip().splitlines()
    assert len(warnings) == 3, warnings  # the row, the stray file, the curve
    assert all("skipped, and left in place" in w for w in warnings)


def test_under_the_lock_corrupt_files_move_aside_with_their_pair_and_run_again(tmp_path, capsys):
    store, kept, lost_row, lost_curve = _damaged(tmp_path)
    row = tmp_path / "trials" / f"{lost_row.record.trial_id}.parquet"
    with store.locked("a test"):
        assert set(store.finished()) == {kept.record.trial_id, lost_curve.record.trial_id}
        assert set(store.read_curves()["trial_id"]) == {kept.record.trial_id}
        assert set(store.finished()) == {kept.record.trial_id}  # both lost trials run again
    warnings = capsys.readouterr().err.strip().splitlines()
    # the row and its curve, the stray file, the curve and its row
    assert len(warnings) == 5, warnings
    assert all(w.startswith("warning: ") and "moved to" in w for w in warnings)
    assert any(f"{row}: corrupt or unreadable Parquet" in w for w in warnings)
    assert any("notes.txt: not a Parquet file" in w for w in warnings)
    moved = sorted(p.name.split(".")[0] for p in (tmp_path / "quarantine").rglob("*.*"))
    lost = [lost_row.record.trial_id, lost_curve.record.trial_id] * 2
    assert moved == sorted([*lost, "notes"])  # nothing deleted
    assert not (tmp_path / "curves" / row.name).exists()  # no old curve left for the rerun
    store.write_trial(lost_row)  # the rerun
    assert set(store.finished()) == {kept.record.trial_id, lost_row.record.trial_id}
    assert len(store.read_curves(trial_ids={lost_row.record.trial_id})) == len(lost_row.curve)


def test_a_file_of_another_schema_is_refused_not_moved(tmp_path):
    import pyarrow as pa
    import pyarrow.parquet as pq

    store = Store(str(tmp_path))
    store.write_trial(helpers.outcome())
    other = tmp_path / "trials" / "0123456789abcdef.parquet"
    pq.write_table(pa.table({"trial_id": ["x"]}), other)
    with pytest.raises(StoreError, match="0123456789abcdef.parquet"):
        store.read_trials()
    assert other.exists()


def test_manifest_refuses_another_grids_directory(tmp_path):
    base = {"models": ["tiny_cnn"], "optimizers": ["adam"], "lr": [0.1]}
    a = ResolvedGrid.fixed(parse_grid({**base, "name": "a"}, "a.toml"))
    b = ResolvedGrid.fixed(parse_grid({**base, "name": "b", "lr": [0.2]}, "b.toml"))
    store = Store(str(tmp_path))
    store.open_sweep(a, {"host": "h"})
    store.open_sweep(a, {"host": "h"})  # a resume
    assert len(store.read_manifest().runs) == 2
    with pytest.raises(StoreError, match="holds results of grid 'a' .* not of b.toml"):
        store.open_sweep(b, {})


def test_schema_1_files_read_with_later_columns_as_null(tmp_path):
    import pyarrow.parquet as pq

    store = Store(str(tmp_path))
    store.write_trial(helpers.outcome())
    path = next((tmp_path / "trials").glob("*.parquet"))
    table = pq.read_table(path).drop_columns(["lr_source", "step_time_s"])
    meta = {**table.schema.metadata, SCHEMA_METADATA_KEY: b"1"}
    pq.write_table(table.replace_schema_metadata(meta), path)
    trials = store.read_trials()
    assert len(trials) == 1 and trials["lr_source"].isna().all()
    assert trials["step_time_s"].isna().all()
    # the same columns missing from a file that claims schema 2 are an error
    pq.write_table(table.replace_schema_metadata({**meta, SCHEMA_METADATA_KEY: b"2"}), path)
    with pytest.raises(StoreError, match="missing columns: lr_source, step_time_s"):
        store.read_trials()


def test_schema_2_files_read_as_constant_schedule(tmp_path):
    import pyarrow.parquet as pq

    store = Store(str(tmp_path))
    store.write_trial(helpers.outcome())
    path = next((tmp_path / "trials").glob("*.parquet"))
    table = pq.read_table(path).drop_columns(["schedule"])
    pq.write_table(
        table.replace_schema_metadata({**table.schema.metadata, SCHEMA_METADATA_KEY: b"2"}), path
    )
    assert store.read_trials()["schedule"].tolist() == ["constant"]


def test_a_curve_without_its_row_is_ignored_and_replaced(tmp_path):
    """A kill between a trial's curve and its row (the commit point) leaves an
    orphan curve: readers ignore it, and the rerun's trial replaces it."""
    store = Store(str(tmp_path))
    kept, orphan = (helpers.outcome(lr=lr) for lr in (0.01, 0.02))
    store.write_trial(kept)
    store.write_trial(orphan)
    (tmp_path / "trials" / f"{orphan.record.trial_id}.parquet").unlink()  # the kill

    assert set(store.read_curves()["trial_id"]) == {kept.record.trial_id}
    assert set(store.finished()) == {kept.record.trial_id}  # the orphan runs again
    store.write_trial(orphan)
    curves = store.read_curves()
    assert curves.groupby("trial_id").size().to_dict() == {
        kept.record.trial_id: len(kept.curve),
        orphan.record.trial_id: len(orphan.curve),
    }


def test_local_writes_leave_no_temporary_file_and_are_synced(tmp_path, monkeypatch):
    import os

    synced = []
    real_fsync = os.fsync
    monkeypatch.setattr(os, "fsync", lambda fd: synced.append(fd) or real_fsync(fd))
    Store(str(tmp_path)).write_trial(helpers.outcome())
    assert len(synced) == 4  # each of the two files, then its directory's rename
    assert not [p for p in tmp_path.rglob(".*")]


@pytest.mark.parametrize("seed", range(6))
def test_a_footer_that_does_not_decode_is_corrupt_whatever_pyarrow_raises(tmp_path, seed):
    """pyarrow raises ArrowInvalid for some broken footers and OSError (thrift)
    for others, as it does for a dropped connection: each is found corrupt by
    decoding the file's bytes in memory, and set aside under the lock."""
    import random

    store = Store(str(tmp_path))
    kept, broken = helpers.outcome(lr=0.01), helpers.outcome(lr=0.02)
    store.write_trial(kept)
    store.write_trial(broken)
    row = tmp_path / "trials" / f"{broken.record.trial_id}.parquet"
    data = bytearray(row.read_bytes())
    footer = int.from_bytes(data[-8:-4], "little")
    rng = random.Random(seed)
    start = len(data) - 8 - footer + rng.randrange(footer // 2)
    data[start : start + 24] = bytes(rng.randrange(256) for _ in range(24))
    row.write_bytes(bytes(data))
    with store.locked("a test"):
        assert set(store.finished()) == {kept.record.trial_id}
    assert not row.exists()
