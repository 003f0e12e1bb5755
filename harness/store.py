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

``History`` is the nightly benchmark's history: one Parquet file per night,
hive-partitioned by date, beside each night's own results directory. The
column declarations of every dataset are in ``harness.schemas``.
"""

from __future__ import annotations

import contextlib
import json
import posixpath
import re
import uuid
from dataclasses import asdict
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from harness.errors import StoreError, one_line
from harness.records import TrialOutcome
from harness.schemas import (
    GRID_METADATA_KEY,
    SCHEMA_METADATA_KEY,
    SCHEMA_VERSION,
    check_schema,
    curves_schema,
    finder_schema,
    history_schema,
    trials_schema,
)

if TYPE_CHECKING:
    import pandas as pd
    import pyarrow as pa

MANIFEST = "manifest.json"
TRIALS = "trials"
CURVES = "curves"
FINDER = "finder"
HISTORY_NIGHTS = "nights"
HISTORY_RUNS = "runs"
RUN_INFO = "nightly.json"


def child(out: str, *parts: str) -> str:
    """A path or URI below ``out``; a URI's query (``?endpoint_override=...``) stays last."""
    base, sep, query = out.partition("?") if "://" in out else (out, "", "")
    return posixpath.join(base.rstrip("/"), *parts) + sep + query


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
        return self._read_json(MANIFEST) if self.has(MANIFEST) else None

    def _read_json(self, name: str) -> dict[str, Any]:
        try:
            with self.fs.open_input_stream(self._path(name)) as f:
                return json.loads(f.read().decode())
        except (OSError, ValueError) as exc:
            raise StoreError(
                f"{child(self.out, name)}: unreadable JSON ({one_line(exc)})"
            ) from None

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
        self,
        folder: str,
        schema: pa.Schema,
        columns: list[str] | None = None,
        partition: pa.Schema | None = None,
    ) -> pa.Table:
        """Read a dataset folder with the given schema, checking every file's own
        schema first; ``partition`` names hive partition columns (``date=...``)."""
        import pyarrow.dataset as ds

        path = self._path(folder)
        if not self._exists(path):
            return schema.empty_table().select(columns) if columns else schema.empty_table()
        partitioning = ds.partitioning(partition, flavor="hive") if partition else None
        in_files = _without(schema, partition.names if partition else [])
        dataset = ds.dataset(
            path, schema=schema, format="parquet", filesystem=self.fs, partitioning=partitioning
        )
        try:
            for fragment in dataset.get_fragments():
                check_schema(fragment.path, fragment.physical_schema, in_files)
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


class History:
    """A nightly benchmark history (see ``docs/nightly.md``)::

        <root>/nights/date=YYYY-MM-DD/<run_id>.parquet   one row per trial of a run
        <root>/runs/<run_id>/                            that run's results directory
        <root>/report/                                   the latest judgement

    A run's trials go to its own results directory while it runs (so an
    interrupted night resumes), then into the history dataset in one atomic
    file: its commit. A committed file is never rewritten; a second run on the
    same date is another file in the same partition.
    """

    def __init__(self, root: str) -> None:
        self.root = str(root)
        self.base = Store(self.root)

    def run_out(self, run_id: str) -> str:
        """The results directory of one run."""
        return child(self.root, HISTORY_RUNS, run_id)

    def read(self) -> pd.DataFrame:
        """Every committed row, with ``date`` from the partition folder. A file
        that is corrupt, misplaced or of another schema is an error naming it."""
        import pyarrow as pa

        self.files()  # a stray or misplaced file is named before anything is read
        table = self.base._dataset_table(
            HISTORY_NIGHTS, history_schema(), partition=pa.schema([("date", pa.string())])
        )
        df = _to_pandas(table)
        df["schedule"] = df["schedule"].fillna("constant")
        return df

    def files(self) -> list[str]:
        """Paths of the committed run files, each checked to sit in a
        ``date=YYYY-MM-DD`` folder."""
        from pyarrow import fs

        path = self.base._path(HISTORY_NIGHTS)
        if not self.base._exists(path):
            return []
        infos = self.base.fs.get_file_info(fs.FileSelector(path, recursive=True))
        found = []
        for info in infos:
            name = posixpath.basename(info.path)
            if info.type != fs.FileType.File or name.startswith((".", "_")):
                continue
            found.append(_check_partition_path(info.path))
        return sorted(found)

    def committed(self) -> set[str]:
        """Run ids already in the history dataset."""
        return {posixpath.basename(p).removesuffix(".parquet") for p in self.files()}

    def append(
        self,
        date: str,
        run_id: str,
        trials: pd.DataFrame,
        night: dict[str, Any],
        grid_json: dict[str, Any],
    ) -> str:
        """Commit one run: its trial rows (``Store.read_trials()``) with the
        night's columns (``history_schema`` less ``date``), as one new file."""
        import pyarrow as pa
        import pyarrow.parquet as pq

        name = posixpath.join(HISTORY_NIGHTS, f"date={date}", f"{run_id}.parquet")
        if self.base.has(name):
            raise StoreError(
                f"{child(self.root, name)}: already committed; nights are never rewritten"
            )
        schema = _without(history_schema(), ["date"])
        frame = trials.assign(run_id=run_id, **night)
        table = pa.Table.from_pandas(frame[schema.names], schema=schema, preserve_index=False)
        table = table.replace_schema_metadata(
            {
                GRID_METADATA_KEY: json.dumps(grid_json, default=str).encode(),
                SCHEMA_METADATA_KEY: str(SCHEMA_VERSION).encode(),
            }
        )
        path = self.base._path(name)
        self.base._atomic_write(path, lambda sink: pq.write_table(table, sink))
        return path

    def write_run_info(self, info: dict[str, Any]) -> None:
        """Record a run's identity (id, date, start, grid) in its results directory."""
        self.base._write_json(posixpath.join(HISTORY_RUNS, info["run_id"], RUN_INFO), info)

    def pending(self) -> list[dict[str, Any]]:
        """The identities of runs started but not committed, oldest first."""
        from pyarrow import fs

        path = self.base._path(HISTORY_RUNS)
        if not self.base._exists(path):
            return []
        done = self.committed()
        found = []
        for info in self.base.fs.get_file_info(fs.FileSelector(path)):
            run_id = posixpath.basename(info.path)
            if info.type != fs.FileType.Directory or run_id in done:
                continue
            meta = posixpath.join(HISTORY_RUNS, run_id, RUN_INFO)
            if self.base.has(meta):
                found.append(self.base._read_json(meta))
        return sorted(found, key=lambda i: str(i.get("started_at")))

    def prune_runs(self, keep: int) -> list[str]:
        """Delete the results directories (curves, manifests) of all committed
        runs but the newest ``keep``; their rows stay in the history. Returns the
        ids of the runs pruned. Uncommitted runs are never touched."""
        from pyarrow import fs

        path = self.base._path(HISTORY_RUNS)
        if not self.base._exists(path):
            return []
        done = self.committed()
        runs = sorted(
            posixpath.basename(info.path)
            for info in self.base.fs.get_file_info(fs.FileSelector(path))
            if info.type == fs.FileType.Directory and posixpath.basename(info.path) in done
        )  # run ids start with their UTC start: sorted is oldest first
        old = runs[: max(0, len(runs) - keep)]
        for run_id in old:
            self.base.fs.delete_dir(self.base._path(HISTORY_RUNS, run_id))
        return old

    def write_bytes(self, name: str, payload: bytes) -> None:
        """Write a report file at ``name`` under the history root, atomically."""
        self.base.write_bytes(name, payload)


_PARTITION_FILE = re.compile(r"/date=\d{4}-\d{2}-\d{2}/[^/]+\.parquet$")


def _check_partition_path(path: str) -> str:
    if not _PARTITION_FILE.search(path):
        raise StoreError(
            f"{path}: not where a history file belongs "
            f"({HISTORY_NIGHTS}/date=YYYY-MM-DD/<run_id>.parquet)"
        )
    return path


def _without(schema: pa.Schema, names: list[str]) -> pa.Schema:
    import pyarrow as pa

    return pa.schema([f for f in schema if f.name not in names])


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
