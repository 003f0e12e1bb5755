"""The Parquet schemas are derived from the record dataclasses: they must agree."""

from __future__ import annotations

from dataclasses import fields

import pyarrow as pa

from harness.grid.specs import FinderSpec, Setup, TrialSpec
from harness.store.records import CurvePoint, FinderOutcome, TrialRecord
from harness.store.schemas import curves_schema, finder_schema, history_schema, trials_schema
from tests import helpers


def test_trials_columns_are_the_record_fields():
    assert sorted(trials_schema().names) == sorted(f.name for f in fields(TrialRecord))
    assert trials_schema().names[0] == "trial_id"


def test_a_record_row_fits_the_trials_schema_exactly():
    row = helpers.outcome().record.to_row()
    assert list(row) == [f.name for f in fields(TrialRecord)]
    table = pa.Table.from_pylist([row], schema=trials_schema())
    assert table.num_rows == 1 and table.column("optimizer_kwargs")[0].as_py() == "{}"
    assert table.column("status")[0].as_py() == "reached"


def test_types_follow_the_annotations():
    schema = trials_schema()
    assert schema.field("width").type == pa.float64()
    assert schema.field("steps_to_target").type == pa.int64()
    assert schema.field("model_kwargs").type == pa.string()  # dicts are JSON text
    assert schema.field("status").type == pa.string()  # the enum by value
    assert schema.field("started_at").type == pa.timestamp("us", tz="UTC")
    assert curves_schema().names == [f.name for f in fields(CurvePoint)]


def test_the_setup_is_declared_once_and_shared():
    setup = [f.name for f in fields(Setup)]
    for cls in (TrialSpec, FinderSpec, TrialRecord):
        assert [f.name for f in fields(cls)][: len(setup)] == setup
    finder = set(finder_schema().names)
    assert set(setup) <= finder and set(setup) <= set(trials_schema().names)
    assert {"finder_id", "step", "lr", "batch_loss", "smoothed_loss"} <= finder
    assert not {"spec", "points"} & finder
    assert {f.name for f in fields(FinderOutcome)} - {"spec", "points"} <= finder


def test_history_is_the_night_columns_then_every_trials_column():
    names = history_schema().names
    assert names[:7] == [
        "date",
        "run_id",
        "run_started_at",
        "grid_digest",
        "revision",
        "complete",
        "env",
    ]
    assert names[7:] == trials_schema().names
