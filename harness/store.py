"""The results directory: the only module that reads or writes Parquet.

Layout (see ``docs/results.md``)::

    <out>/manifest.json            the grid, its digest, and one entry per run
    <out>/trials/<trial_id>.parquet    one row: the trial's summary
    <out>/curves/<trial_id>.parquet    one row per check
    <out>/finder/<finder_id>.parquet   one row per update of an LR range test

Each trial writes its own two files from the worker that ran it, curves first,
so a stored trial row always has its curve. Files are written under a hidden
temporary name and renamed into place: a reader never sees half a file, and a
crash loses at most the trials that were running. ``<out>`` may be a local path
or a URI that pyarrow's filesystem layer understands (``s3://``, ``gs://``).
"""

from __future__ import annotations

import contextlib
import json
import posixpath
import uuid
from dataclasses import asdict
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from harness.errors import StoreError, one_line
from harness.records import TrialOutcome

if TYPE_CHECKING:
    import pandas as pd
    import pyarrow as pa

MANIFEST = "manifest.json"
TRIALS = "trials"
CURVES = "curves"
FINDER = "finder"
GRID_METADATA_KEY = b"lrbench.grid"
SCHEMA_METADATA_KEY = b"lrbench.schema"
# The results schema this lrbench writes. Bump it with every change of columns.
# A column added later is read as null from an older file (ADDED_IN); a removed,
# renamed or retyped column makes the older file unreadable, and the reader says so.
SCHEMA_VERSION = 3
ADDED_IN = {"lr_source": 2, "step_time_s": 2, "schedule": 3}


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


def _filesystem(out: str) -> tuple[Any, str]:
    """A pyarrow filesystem and the root path in it, for a local path or a URI."""
    import os

    from pyarrow import fs

    if "://" in out:
        try:
            return fs.FileSystem.from_uri(out)
        except Exception as exc:  # an unknown scheme, missing credentials ...
            raise StoreError(f"{out}: cannot open results location ({exc})") from None
    return fs.LocalFileSystem(), os.path.abspath(out)


class Store:
    """A sweep's results directory."""

    def __init__(self, out: str, grid_json: dict[str, Any] | None = None) -> None:
        self.out = str(out)
        self.fs, self.root = _filesystem(self.out)
        self.grid_json = grid_json

    def __reduce__(self) -> tuple[Any, ...]:  # pickled into Ray workers: reopen there
        return (Store, (self.out, self.grid_json))

    def _path(self, *parts: str) -> str:
        return posixpath.join(self.root, *parts)

    def _exists(self, path: str) -> bool:
        from pyarrow import fs

        return self.fs.get_file_info(path).type != fs.FileType.NotFound

    def has(self, name: str) -> bool:
        """True when ``name`` (``manifest.json``, ``trials``, ...) exists in the store."""
        return self._exists(self._path(name))

    def _atomic_write(self, path: str, write: Any) -> None:
        directory, name = posixpath.split(path)
        self.fs.create_dir(directory, recursive=True)
        tmp = posixpath.join(directory, f".{name}.{uuid.uuid4().hex}.tmp")
        try:
            with self.fs.open_output_stream(tmp) as sink:
                write(sink)
            self.fs.move(tmp, path)
        except BaseException:
            with contextlib.suppress(OSError):
                self.fs.delete_file(tmp)
            raise

    # -- manifest
    def read_manifest(self) -> dict[str, Any] | None:
        """The manifest, or None for a new directory."""
        path = self._path(MANIFEST)
        if not self._exists(path):
            return None
        try:
            with self.fs.open_input_stream(path) as f:
                return json.loads(f.read().decode())
        except (OSError, ValueError) as exc:
            raise StoreError(f"{self.out}/{MANIFEST}: unreadable manifest ({exc})") from None

    def check_grid(self, grid_name: str, digest: str, source: str) -> dict[str, Any] | None:
        """The manifest, after checking this directory holds no other grid's results."""
        manifest = self.read_manifest()
        if manifest is None:
            if self._exists(self._path(TRIALS)):
                raise StoreError(
                    f"{self.out}: has a trials/ folder but no {MANIFEST}; use an empty or new --out"
                )
        elif manifest.get("grid_digest") != digest:
            raise StoreError(
                f"{self.out}: holds results of grid {manifest.get('name')!r} "
                f"(digest {manifest.get('grid_digest')}), not of {source} "
                f"({grid_name!r}, digest {digest}); use another --out"
            )
        return manifest

    def open_sweep(
        self,
        grid_name: str,
        grid_json: dict[str, Any],
        digest: str,
        source: str,
        run_info: dict[str, Any],
    ) -> dict[str, Any]:
        """Start or resume a sweep here: record this run in the manifest."""
        manifest = self.check_grid(grid_name, digest, source)
        if manifest is None:
            manifest = {
                "name": grid_name,
                "grid_digest": digest,
                "schema_version": SCHEMA_VERSION,
                "grid": grid_json,
                "created_at": _now(),
                "runs": [],
            }
        manifest["runs"].append({"started_at": _now(), "source": source, **run_info})
        self._write_json(MANIFEST, manifest)
        self.grid_json = grid_json
        return manifest

    def close_run(self, wall_s: float, counts: dict[str, int]) -> None:
        """Record the end of the latest run in the manifest: its wall time and
        the store's counts by status."""
        manifest = self.read_manifest()
        if not manifest or not manifest.get("runs"):
            return
        manifest["runs"][-1].update(
            {"finished_at": _now(), "wall_s": round(wall_s, 3), "counts": counts}
        )
        self._write_json(MANIFEST, manifest)

    def _write_json(self, name: str, data: dict[str, Any]) -> None:
        payload = json.dumps(data, indent=2, sort_keys=True, default=str).encode()
        self.write_bytes(name, payload)

    def write_bytes(self, name: str, payload: bytes) -> None:
        """Write a file (a figure, the manifest) at ``name`` in the store, atomically."""
        self._atomic_write(self._path(name), lambda sink: sink.write(payload))

    # -- trials
    def write_trial(self, outcome: TrialOutcome) -> None:
        """Store one finished trial: its curve, then its row (the commit point)."""
        import pyarrow.parquet as pq

        rid = outcome.record.trial_id
        metadata = {
            GRID_METADATA_KEY: json.dumps(self.grid_json or {}, default=str).encode(),
            SCHEMA_METADATA_KEY: str(SCHEMA_VERSION).encode(),
        }
        curve = _table([asdict(p) for p in outcome.curve], curves_schema(), metadata)
        row = outcome.record.to_row()
        row["started_at"] = datetime.fromisoformat(row["started_at"]) if row["started_at"] else None
        trial = _table([row], trials_schema(), metadata)
        for folder, table in ((CURVES, curve), (TRIALS, trial)):
            self._atomic_write(
                self._path(folder, f"{rid}.parquet"), lambda sink, t=table: pq.write_table(t, sink)
            )

    def _dataset_table(
        self, folder: str, schema: pa.Schema, columns: list[str] | None = None
    ) -> pa.Table:
        import pyarrow.dataset as ds

        path = self._path(folder)
        if not self._exists(path):
            return schema.empty_table().select(columns) if columns else schema.empty_table()
        dataset = ds.dataset(path, schema=schema, format="parquet", filesystem=self.fs)
        try:
            for fragment in dataset.get_fragments():
                _check_schema(fragment.path, fragment.physical_schema, schema)
            return dataset.to_table(columns=columns)
        except StoreError:
            raise
        except Exception as exc:
            raise StoreError(self._which_is_corrupt(dataset, exc)) from None

    def _which_is_corrupt(self, dataset: Any, exc: Exception) -> str:
        """Name the file a dataset read failed on."""
        for fragment in dataset.get_fragments():
            try:
                fragment.to_table()
            except Exception as inner:
                return f"{fragment.path}: corrupt or unreadable Parquet file ({one_line(inner)})"
        return f"{self.out}: cannot read results ({exc})"

    def read_trials(self) -> pd.DataFrame:
        """All stored trial rows, with the documented column types. Rows from
        before the schedule axis (schema < 3) ran at a constant LR."""
        df = _to_pandas(self._dataset_table(TRIALS, trials_schema()))
        df["schedule"] = df["schedule"].fillna("constant")
        return df

    def read_curves(self) -> pd.DataFrame:
        """All stored curve points, ordered by trial and step."""
        df = _to_pandas(self._dataset_table(CURVES, curves_schema()))
        return df.sort_values(["trial_id", "step"], ignore_index=True)

    # -- LR range tests
    def write_finder(self, rows: list[dict[str, Any]], finder_id: str) -> None:
        """Store one range test's curve (``FinderOutcome.rows()``), atomically."""
        import pyarrow.parquet as pq

        metadata = {SCHEMA_METADATA_KEY: str(SCHEMA_VERSION).encode()}
        table = _table(rows, finder_schema(), metadata)
        self._atomic_write(
            self._path(FINDER, f"{finder_id}.parquet"), lambda sink: pq.write_table(table, sink)
        )

    def read_finder(self) -> pd.DataFrame:
        """All stored range-test points, ordered by run and step."""
        df = _to_pandas(self._dataset_table(FINDER, finder_schema()))
        return df.sort_values(["finder_id", "step"], ignore_index=True)

    def finder_ids(self) -> set[str]:
        """Ids of the stored range tests."""
        table = self._dataset_table(FINDER, finder_schema(), ["finder_id"])
        return set(table.column("finder_id").to_pylist())

    def finished(self) -> dict[str, str]:
        """Id -> status of the stored trials a rerun must not repeat (all but ``error``)."""
        table = self._dataset_table(TRIALS, trials_schema(), ["trial_id", "status"])
        ids = table.column("trial_id").to_pylist()
        statuses = table.column("status").to_pylist()
        return {i: s for i, s in zip(ids, statuses, strict=True) if s != "error"}


def _check_schema(path: str, found: pa.Schema, expected: pa.Schema) -> None:
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


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


def _table(rows: list[dict[str, Any]], schema: pa.Schema, metadata: dict[bytes, bytes]) -> pa.Table:
    import pyarrow as pa

    table = pa.Table.from_pylist(rows, schema=schema) if rows else schema.empty_table()
    return table.replace_schema_metadata(metadata)


def _to_pandas(table: pa.Table) -> pd.DataFrame:
    import pandas as pd
    import pyarrow as pa

    # Nullable integers stay integers (steps_to_target is null unless reached).
    return table.to_pandas(types_mapper={pa.int64(): pd.Int64Dtype()}.get)


def read_grid_metadata(path: str) -> dict[str, Any]:
    """The grid JSON stored in a results Parquet file's schema metadata."""
    import pyarrow.parquet as pq

    meta = pq.read_schema(path).metadata or {}
    return json.loads(meta.get(GRID_METADATA_KEY, b"{}"))
