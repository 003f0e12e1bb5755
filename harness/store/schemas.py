"""Column names and types of every Parquet dataset lrbench writes, derived
from the record dataclasses (``harness.store.records``), and the check that a file
found on disk was written with a schema this lrbench reads.

Declarations only; ``harness.store.results`` does the reading and writing.
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from typing import TYPE_CHECKING, Any

from harness.errors import StoreError
from harness.grid.specs import FinderParams, Setup
from harness.lazy import lazy
from harness.store.records import OUTCOME_PARTS, CurvePoint, FinderOutcome, FinderPoint, TrialRecord

if TYPE_CHECKING:
    import pyarrow as pa
    import pyarrow.compute as pc
else:
    # the CLI imports this module at start-up: pyarrow loads on first use
    pa = lazy("pyarrow")
    pc = lazy("pyarrow.compute")

GRID_METADATA_KEY = b"lrbench.grid"
SCHEMA_METADATA_KEY = b"lrbench.schema"
# The results schema this lrbench writes. Bump it with every change of columns.
# A column added later is read as null from an older file (ADDED_IN); a removed,
# renamed or retyped column makes the older file unreadable, and the reader says so.
SCHEMA_VERSION = 7
ADDED_IN = {
    "lr_source": 2,
    "step_time_s": 2,
    "schedule": 3,
    "node_id": 4,
    "node_ip": 4,
    "pruned": 5,
    "pruned_at_s": 5,
    "pruned_at_step": 5,
    "reused": 5,
    "data_fingerprint": 5,
    "builder": 6,
    "input_shape": 6,
    "num_classes": 6,
    "builder_fingerprint": 6,
    "rechecked": 7,
}
# What a column added later holds for the rows of a file written before it, where
# that is known: what those trials ran (a constant LR, a built-in model) and what
# they could not have done (be pruned, reuse a model, be rechecked). Every other
# added column stays null: unknown (``data_fingerprint``, ``pruned_at_s``, ...).
# Files never hold a null in these columns, so a null always means "older file".
# ``harness.store.migrate`` writes these values into old files, and the readers show them.
FILLS: dict[str, Any] = {
    "schedule": "constant",
    "builder": "",
    "pruned": False,
    "reused": False,
    "rechecked": False,
}


def fill_added(table: pa.Table) -> pa.Table:
    """``table`` with the nulls of its ``FILLS`` columns (an older file's rows,
    read with the current schema) replaced by their fill value."""
    for name, value in FILLS.items():
        if name in table.column_names:
            i = table.column_names.index(name)
            column = table.column(i)
            if column.null_count and not pa.types.is_null(column.type):
                filled = pc.fill_null(column, pa.scalar(value, column.type))
                table = table.set_column(i, table.field(i), filled)
    return table


def conform(table: pa.Table, schema: pa.Schema) -> pa.Table:
    """``table`` (an older file's rows) as a file of ``schema``: its columns in
    order and type, a column it lacks filled (``FILLS``) or null, its metadata kept."""
    arrays = [
        table.column(f.name).cast(f.type)
        if f.name in table.column_names
        else pa.nulls(table.num_rows, f.type)
        for f in schema
    ]
    out = pa.Table.from_arrays(arrays, schema=schema)
    return fill_added(out).replace_schema_metadata(table.schema.metadata)


# Arrow type of a field, by its annotation's base type; dicts are stored as
# canonical JSON text (``records.to_columns``), the status enum by its value.
_ARROW_TYPES = {"str": "string", "int": "int64", "float": "float64", "bool": "bool_"}
_ARROW_OVERRIDES = {"started_at": "timestamp", "run_started_at": "timestamp"}


def arrow_type(name: str, annotation: str) -> pa.DataType:
    """The Arrow type of a record field, from its name and annotation text."""
    kind = _ARROW_OVERRIDES.get(name)
    if kind == "timestamp":
        return pa.timestamp("us", tz="UTC")
    base = annotation.replace(" | None", "").split("[")[0].strip()
    return getattr(pa, _ARROW_TYPES.get(base, "string"))()


def columns(*parts: Any, first: tuple[str, ...] = (), skip: tuple[str, ...] = ()) -> pa.Schema:
    """A schema from dataclasses' fields, in order (``first`` leading, ``skip``
    left out, a name only once)."""
    found: dict[str, pa.DataType] = {}
    for part in parts:
        for f in fields(part):
            if f.name not in skip and f.name not in found:
                found[f.name] = arrow_type(f.name, str(f.type))
    names = [*first, *(n for n in found if n not in first)]
    return pa.schema([(n, found[n]) for n in names])


def trials_schema() -> pa.Schema:
    """Column names and types of the ``trials`` dataset: ``TrialRecord``'s fields."""
    return columns(TrialRecord, first=("trial_id",))


def curves_schema() -> pa.Schema:
    """Column names and types of the ``curves`` dataset: ``CurvePoint``'s fields."""
    return columns(CurvePoint)


def finder_schema() -> pa.Schema:
    """Column names and types of the ``finder`` dataset (LR range tests): the
    setup, the ramp, the outcome and one update per row."""
    schema = columns(Setup, FinderParams, FinderOutcome, FinderPoint, skip=OUTCOME_PARTS)
    return pa.schema([pa.field("finder_id", pa.string()), *schema])


@dataclass(frozen=True)
class NightColumns:
    """The columns a nightly history adds to every ``trials`` row."""

    date: str  # from the hive partition folder (date=YYYY-MM-DD), not in the files
    run_id: str
    run_started_at: str
    grid_digest: str
    revision: str
    complete: bool
    env: str  # JSON: the night's environment


def history_schema() -> pa.Schema:
    """Column names and types of the nightly ``history`` dataset: the night's
    columns, then every ``trials`` column."""
    return pa.schema([*columns(NightColumns), *trials_schema()])


def check_schema(path: str, found: pa.Schema, expected: pa.Schema) -> None:
    """Refuse a file written with another results schema, naming what differs."""
    meta = found.metadata or {}
    raw = meta.get(SCHEMA_METADATA_KEY, b"1")
    version = int(raw) if raw.isdigit() else 1
    if version > SCHEMA_VERSION:
        raise StoreError(
            f"{path}: written with results schema {version}, newer than this lrbench "
            f"reads ({SCHEMA_VERSION}); upgrade lrbench"
        )
    missing = [
        f.name for f in expected if f.name not in found.names and ADDED_IN.get(f.name, 0) <= version
    ]
    changed = [
        f"{f.name} ({found.field(f.name).type}, expected {f.type})"
        for f in expected
        if f.name in found.names
        and not found.field(f.name).type.equals(f.type)
        and not pa.types.is_null(found.field(f.name).type)
    ]
    if missing or changed:
        what = "; ".join(
            part
            for part in (
                f"missing columns: {', '.join(missing)}" if missing else "",
                f"changed types: {', '.join(changed)}" if changed else "",
            )
            if part
        )
        raise StoreError(
            f"{path}: not results schema {version} (written by an older lrbench?): "
            f"{what}; re-run the sweep with this lrbench into a new --out"
        )
