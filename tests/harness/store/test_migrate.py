"""``harness.store.migrate``: a directory that holds files of older results schemas is
rewritten to the current one, file by file, with nothing lost and nothing read
differently by lrbench's own readers."""

from __future__ import annotations

import json
from dataclasses import asdict
from pathlib import Path

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from harness.errors import StoreError
from harness.grid.specs import FinderParams, FinderSpec
from harness.store import history as history_module
from harness.store import results as store_module
from harness.store.history import History
from harness.store.location import Location, without
from harness.store.migrate import CURVES, FINDER, NIGHTS, RUNS, TRIALS, migrate
from harness.store.records import FinderOutcome, FinderPoint, TrialStatus
from harness.store.results import Store
from harness.store.schemas import (
    ADDED_IN,
    FILLS,
    GRID_METADATA_KEY,
    SCHEMA_METADATA_KEY,
    SCHEMA_VERSION,
    curves_schema,
    fill_added,
    finder_schema,
    history_schema,
    trials_schema,
)
from tests import helpers

GRID = {"name": "test", "lr": [0.001, 0.01, 0.1]}


def downgrade(loc: Location, name: str, version: int) -> None:
    """Rewrite the file ``name`` as an lrbench of results schema ``version``
    wrote it: without the columns added after it, marked with that version."""
    with loc.fs.open_input_file(loc.path(name)) as f:
        table = pq.read_table(f)
    table = table.drop_columns([c for c in table.column_names if ADDED_IN.get(c, 0) > version])
    meta = {**table.schema.metadata, SCHEMA_METADATA_KEY: str(version).encode()}
    loc.write_parquet(name, table.replace_schema_metadata(meta))


def shown(df: pd.DataFrame) -> pd.DataFrame:
    """``df`` as lrbench shows an older file's rows: the added columns that have a
    known value (``FILLS``) filled. A no-op on a frame of current files, and
    once the readers apply ``fill_added`` themselves."""
    df = df.copy()
    for name, value in FILLS.items():
        if name in df and df[name].isna().any():
            df[name] = df[name].astype(object).fillna(value)
            df[name] = df[name].astype(bool) if isinstance(value, bool) else df[name]
    return df


def read(loc: Location, name: str) -> pa.Table:
    with loc.fs.open_input_file(loc.path(name)) as f:
        return pq.read_table(f)


def finder_outcome(optimizer: str) -> FinderOutcome:
    """A short range test of the tests' setup, made by hand."""
    spec = FinderSpec(
        **{**asdict(helpers.BASE.setup()), "optimizer": optimizer},
        params=FinderParams(num_steps=4),
    )
    points = [FinderPoint(i, 10.0 ** (i - 7), 2.3 - i / 10, 2.3 - i / 20) for i in range(1, 5)]
    return FinderOutcome(spec, points, "end", 3300, "2026-11-22T10:00:00+00:00", 1.0)


def mixed_store(path: Path) -> tuple[Store, dict[str, int]]:
    """A results directory as years of lrbench leave it: a part compacted under
    schema 4, a grown grid's trials written later (one by schema 2, one now) and
    two range tests (schema 5 and now). Returns it and each old file's version."""
    store = Store(str(path), grid_json=GRID)
    for i in range(4):
        status = (TrialStatus.REACHED, TrialStatus.BUDGET, TrialStatus.DIVERGED)[i % 3]
        store.write_trial(helpers.outcome(status, optimizer="adam", lr=10.0 ** (i - 4)))
    assert store.compact().parts == 1
    old, new = (helpers.outcome(optimizer="gd", lr=lr) for lr in (0.3, 0.5))
    store.write_trial(old)
    store.write_trial(new)
    store.write_finder(finder_outcome("adam"))
    store.write_finder(finder_outcome("gd"))
    part = next(p.name for p in (path / TRIALS).iterdir() if p.name.startswith("part-"))
    versions = {
        f"{TRIALS}/{part}": 4,
        f"{CURVES}/{part}": 4,
        f"{TRIALS}/{old.record.trial_id}.parquet": 2,
        f"{CURVES}/{old.record.trial_id}.parquet": 2,
        f"{FINDER}/{finder_outcome('adam').spec.finder_id}.parquet": 5,
    }
    for name, version in versions.items():
        downgrade(store, name, version)
    return store, versions


def snapshot(store: Store) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame]:
    trials = store.read_trials().sort_values("trial_id", ignore_index=True)
    return trials, store.read_curves(), store.read_finder()


def contents(path: Path) -> dict[str, bytes]:
    return {str(p.relative_to(path)): p.read_bytes() for p in path.rglob("*") if p.is_file()}


def test_migration_rewrites_exactly_the_older_files_and_loses_nothing(tmp_path):
    store, versions = mixed_store(tmp_path / "r")
    before = snapshot(store)
    assert not before[0]["pruned"].isna().any()  # the reader fills what older files lack (FILLS)
    old = {name: read(store, name) for name in versions}
    files = contents(tmp_path / "r")

    done = migrate(store)

    assert sorted(done.rewritten) == sorted(versions)
    assert done.current == 3 and done.skipped == ()  # a trial's row and curve, a range test
    assert (
        done.summary()
        == f"5 file(s) rewritten to results schema {SCHEMA_VERSION}, 3 already current"
    )
    schemas = {TRIALS: trials_schema(), CURVES: curves_schema(), FINDER: finder_schema()}
    for name, table in old.items():
        new = read(store, name)
        schema = schemas[name.split("/")[0]]
        assert new.schema.names == schema.names and new.schema.equals(schema)  # order and types
        assert new.schema.metadata[SCHEMA_METADATA_KEY] == str(SCHEMA_VERSION).encode()
        grid = new.schema.metadata.get(GRID_METADATA_KEY)  # kept (a range test has none)
        assert grid == table.schema.metadata.get(GRID_METADATA_KEY)
        assert name.startswith(FINDER) or json.loads(grid) == GRID
        kept = new.select(table.column_names).replace_schema_metadata(None)
        assert kept.equals(table.replace_schema_metadata(None))  # same rows, same values
        for column in set(schema.names) - set(table.column_names):
            values = set(new.column(column).to_pylist())
            assert values == ({FILLS[column]} if column in FILLS else {None}), column
    for name, payload in contents(tmp_path / "r").items():
        if name not in versions:
            assert payload == files[name], f"{name} was touched"  # current files are not
    assert not list((tmp_path / "r").rglob(".*"))  # no temporary file left

    after = snapshot(store)  # lrbench reads the same frames
    for a, b in zip(after, before, strict=True):
        pd.testing.assert_frame_equal(a, shown(b))
    again = migrate(str(tmp_path / "r"))  # idempotent
    assert again.rewritten == () and again.current == 8


def test_a_history_and_its_runs_are_migrated(tmp_path):
    history = History(str(tmp_path / "h"))
    helpers.commit_night(history, "run01", helpers.CELLS, day=1)
    helpers.commit_night(history, "run02", helpers.CELLS, day=2)
    run = Store(history.run_out("run01"), grid_json=GRID)
    run.write_trial(helpers.outcome())
    names = {
        f"{NIGHTS}/date=2026-11-01/run01.parquet": 4,
        f"{RUNS}/run01/{TRIALS}/{helpers.spec().trial_id}.parquet": 5,
        f"{RUNS}/run01/{CURVES}/{helpers.spec().trial_id}.parquet": 5,
    }
    for name, version in names.items():
        downgrade(history, name, version)
    before = history.read().sort_values(["run_id", "trial_id"], ignore_index=True)
    assert before["data_fingerprint"].isna().sum() == len(helpers.CELLS)
    run_before = run.read_trials()

    done = migrate(history)

    assert sorted(done.rewritten) == sorted(names) and done.current == 1
    night = read(history, f"{NIGHTS}/date=2026-11-01/run01.parquet")
    assert night.schema.equals(without(history_schema(), ["date"]))  # no partition column
    assert json.loads(night.schema.metadata[GRID_METADATA_KEY]) == {"name": "test"}
    after = history.read().sort_values(["run_id", "trial_id"], ignore_index=True)
    pd.testing.assert_frame_equal(after, shown(before))
    pd.testing.assert_frame_equal(run.read_trials(), shown(run_before))
    assert migrate(history).rewritten == ()


def test_an_unreadable_file_is_left_as_it_is_and_counted(tmp_path):
    store = Store(str(tmp_path), grid_json=GRID)
    kept, broken = helpers.outcome(lr=0.01), helpers.outcome(lr=0.02)
    store.write_trial(kept)
    store.write_trial(broken)
    downgrade(store, f"{TRIALS}/{kept.record.trial_id}.parquet", 4)
    downgrade(store, f"{TRIALS}/{broken.record.trial_id}.parquet", 4)
    row = tmp_path / TRIALS / f"{broken.record.trial_id}.parquet"
    row.write_bytes(row.read_bytes()[:-40])  # truncated: the footer is gone
    (tmp_path / TRIALS / "notes.txt").write_text("a stray file")
    damaged = row.read_bytes()

    done = migrate(store)

    assert done.rewritten == (f"{TRIALS}/{kept.record.trial_id}.parquet",)
    assert [name for name, _ in done.skipped] == [f"{TRIALS}/{broken.record.trial_id}.parquet"]
    assert "cannot be read" in done.skipped[0][1] and "left as they are" in done.summary()
    assert row.read_bytes() == damaged and (tmp_path / TRIALS / "notes.txt").exists()
    assert not (tmp_path / "quarantine").exists()  # the readers deal with it, not migrate


@pytest.mark.parametrize(
    ("table", "error"),
    [
        ("newer", "newer than this lrbench reads"),
        ("foreign", "missing columns"),
    ],
)
def test_a_newer_or_foreign_file_stops_it_before_anything_is_written(tmp_path, table, error):
    store = Store(str(tmp_path), grid_json=GRID)
    store.write_trial(helpers.outcome())
    name = f"{TRIALS}/{helpers.spec().trial_id}.parquet"
    downgrade(store, name, 4)
    if table == "newer":
        other = read(store, name).replace_schema_metadata({SCHEMA_METADATA_KEY: b"99"})
    else:
        other = pa.table({"trial_id": ["x"]})
    store.write_parquet(f"{TRIALS}/ffffffffffffffff.parquet", other)
    with pytest.raises(StoreError, match=f"ffffffffffffffff.parquet.*{error}"):
        migrate(store)
    assert read(store, name).schema.metadata[SCHEMA_METADATA_KEY] == b"4"  # nothing written


def test_a_file_with_a_column_this_lrbench_does_not_know_is_left(tmp_path):
    store = Store(str(tmp_path), grid_json=GRID)
    store.write_trial(helpers.outcome())
    name = f"{TRIALS}/{helpers.spec().trial_id}.parquet"
    downgrade(store, name, 4)
    table = read(store, name)
    store.write_parquet(name, table.append_column("legacy", pa.array([1])))
    done = migrate(store)
    assert done.rewritten == () and done.skipped == (
        (name, "holds columns this lrbench does not know: legacy"),
    )
    assert read(store, name).column_names == [*table.column_names, "legacy"]


def test_a_migration_killed_midway_is_finished_by_the_next(tmp_path, monkeypatch):
    store, versions = mixed_store(tmp_path)
    before = snapshot(store)
    write = Location.write_parquet
    calls = []

    def die_on_the_third(self, name, table):
        calls.append(name)
        if len(calls) == 3:
            raise KeyboardInterrupt
        write(self, name, table)

    monkeypatch.setattr(Location, "write_parquet", die_on_the_third)
    with pytest.raises(KeyboardInterrupt):
        migrate(store)
    monkeypatch.undo()
    assert not list(tmp_path.rglob(".*"))  # each file is old or new, never half
    done = migrate(store)
    assert len(done.rewritten) == len(versions) - 2 and done.current == 5
    for a, b in zip(snapshot(store), before, strict=True):
        pd.testing.assert_frame_equal(a, shown(b))


def test_a_store_on_s3_is_migrated(s3):
    uri = s3("migrate")
    store = Store(uri, grid_json=GRID)
    for lr in (0.01, 0.1):
        store.write_trial(helpers.outcome(lr=lr))
    name = f"{TRIALS}/{helpers.spec(lr=0.01).trial_id}.parquet"
    downgrade(store, name, 4)
    before = snapshot(store)
    done = migrate(uri)
    assert done.rewritten == (name,) and done.current == 3
    assert read(store, name).schema.equals(trials_schema())
    for a, b in zip(snapshot(Store(uri)), before, strict=True):
        pd.testing.assert_frame_equal(a, shown(b))
    assert migrate(uri).rewritten == ()


def test_fill_values_are_declared_once_for_added_columns():
    assert set(FILLS) <= set(ADDED_IN)
    schema = trials_schema()
    table = pa.Table.from_pylist(
        [{"schedule": None, "pruned": None, "reused": True, "pruned_at_s": None}],
        schema=pa.schema(
            [schema.field(n) for n in ("schedule", "pruned", "reused", "pruned_at_s")]
        ),
    )
    assert fill_added(table).to_pylist() == [
        {"schedule": "constant", "pruned": False, "reused": True, "pruned_at_s": None}
    ]
    # migrate cannot import the store or the history (they call it): same folder names
    assert (TRIALS, CURVES, FINDER) == (
        store_module.TRIALS,
        store_module.CURVES,
        store_module.FINDER,
    )
    assert (NIGHTS, RUNS) == (history_module.NIGHTS, history_module.RUNS)


def test_lrbench_migrate_and_compact_commands(tmp_path):
    from typer.testing import CliRunner

    from lrbench.cli import app

    runner = CliRunner()
    store, versions = mixed_store(tmp_path / "r")
    before = snapshot(store)
    first = runner.invoke(app, ["migrate", str(tmp_path / "r")])
    assert first.exit_code == 0, first.output
    assert first.output.strip() == (
        f"{tmp_path / 'r'}: {len(versions)} file(s) rewritten to results schema "
        f"{SCHEMA_VERSION}, 3 already current"
    )
    again = runner.invoke(app, ["migrate", str(tmp_path / "r")])
    assert f": 0 file(s) rewritten to results schema {SCHEMA_VERSION}, 8 already" in again.output
    for frame, was in zip(snapshot(store), before, strict=True):
        pd.testing.assert_frame_equal(frame, was)
    assert not (tmp_path / "r" / ".lock").exists()
    nothing = runner.invoke(app, ["migrate", str(tmp_path)])
    assert nothing.exit_code == 2 and "not an lrbench results directory" in nothing.output

    older, _ = mixed_store(tmp_path / "c")  # compaction migrates first, and says so
    compacted = runner.invoke(app, ["compact", str(tmp_path / "c")])
    assert compacted.exit_code == 0, compacted.output
    assert f"; {len(versions)} older files rewritten to the current schema" in compacted.output
