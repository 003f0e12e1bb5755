"""Column names and types of every Parquet dataset lrbench writes, and the
check that a file found on disk was written with a schema this lrbench reads.

Declarations only; ``harness.store`` does the reading and writing.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from harness.errors import StoreError

if TYPE_CHECKING:
    import pyarrow as pa

GRID_METADATA_KEY = b"lrbench.grid"
SCHEMA_METADATA_KEY = b"lrbench.schema"
# The results schema this lrbench writes. Bump it with every change of columns.
# A column added later is read as null from an older file (ADDED_IN); a removed,
# renamed or retyped column makes the older file unreadable, and the reader says so.
SCHEMA_VERSION = 4
ADDED_IN = {"lr_source": 2, "step_time_s": 2, "schedule": 3, "node_id": 4, "node_ip": 4}


def trials_schema() -> pa.Schema:
    """Column names and types of the ``trials`` dataset."""
    import pyarrow as pa

    f64, i64, s = pa.float64(), pa.int64(), pa.string()
    return pa.schema(
        [
            ("trial_id", s),
            ("sweep", s),
            ("dataset", s),
            ("train_size", i64),
            ("model", s),
            ("width", f64),
            ("n_params", i64),
            ("optimizer", s),
            ("optimizer_kwargs", s),
            ("model_kwargs", s),
            ("lr", f64),
            ("lr_source", s),
            ("schedule", s),
            ("batch_size", i64),
            ("loss", s),
            ("seed", i64),
            ("target_metric", s),
            ("target_acc", f64),
            ("budget_s", f64),
            ("max_epochs", i64),
            ("status", s),
            ("time_to_target_s", f64),
            ("steps_to_target", i64),
            ("epochs_to_target", f64),
            ("examples_to_target", i64),
            ("steps", i64),
            ("epochs", f64),
            ("train_s", f64),
            ("startup_s", f64),
            ("val_s", f64),
            ("wall_s", f64),
            ("step_time_s", f64),
            ("final_train_acc", f64),
            ("best_train_acc", f64),
            ("final_val_acc", f64),
            ("final_train_loss", f64),
            ("error", s),
            ("traceback", s),
            ("started_at", pa.timestamp("us", tz="UTC")),
            ("host", s),
            ("worker_pid", i64),
            ("node_id", s),
            ("node_ip", s),
            ("device", s),
            ("cpus", f64),
            ("gpus", f64),
            ("versions", s),
        ]
    )


def curves_schema() -> pa.Schema:
    """Column names and types of the ``curves`` dataset."""
    import pyarrow as pa

    f64, i64 = pa.float64(), pa.int64()
    return pa.schema(
        [
            ("trial_id", pa.string()),
            ("step", i64),
            ("epoch", f64),
            ("examples", i64),
            ("elapsed_s", f64),
            ("lr", f64),
            ("train_loss", f64),
            ("train_acc", f64),
            ("running_acc", f64),
            ("recent_acc", f64),
            ("val_acc", f64),
        ]
    )


def finder_schema() -> pa.Schema:
    """Column names and types of the ``finder`` dataset (LR range tests)."""
    import pyarrow as pa

    f64, i64, s = pa.float64(), pa.int64(), pa.string()
    return pa.schema(
        [
            ("finder_id", s),
            ("sweep", s),
            ("dataset", s),
            ("train_size", i64),
            ("model", s),
            ("width", f64),
            ("n_params", i64),
            ("model_kwargs", s),
            ("optimizer", s),
            ("optimizer_kwargs", s),
            ("loss", s),
            ("batch_size", i64),
            ("seed", i64),
            ("start_lr", f64),
            ("end_lr", f64),
            ("num_steps", i64),
            ("beta", f64),
            ("stop_factor", f64),
            ("stop_reason", s),
            ("started_at", pa.timestamp("us", tz="UTC")),
            ("wall_s", f64),
            ("host", s),
            ("device", s),
            ("versions", s),
            ("step", i64),
            ("lr", f64),
            ("batch_loss", f64),
            ("smoothed_loss", f64),
        ]
    )


def history_schema() -> pa.Schema:
    """Column names and types of the nightly ``history`` dataset: the night's
    columns, then every ``trials`` column. The ``date`` column comes from the
    hive partition folder (``date=YYYY-MM-DD``), not from the files."""
    import pyarrow as pa

    night = [
        ("date", pa.string()),
        ("run_id", pa.string()),
        ("run_started_at", pa.timestamp("us", tz="UTC")),
        ("grid_digest", pa.string()),
        ("revision", pa.string()),
        ("complete", pa.bool_()),
        ("env", pa.string()),
    ]
    return pa.schema([*night, *trials_schema()])


def check_schema(path: str, found: pa.Schema, expected: pa.Schema) -> None:
    """Refuse a file written with another results schema, naming what differs."""
    import pyarrow as pa

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
