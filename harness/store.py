"""A sweep's results directory: the only module that reads or writes its Parquet.

Layout (see ``docs/results.md``)::

    <out>/manifest.json            the grid, its digest, and one entry per run
    <out>/trials/<trial_id>.parquet    one row: the trial's summary
    <out>/curves/<trial_id>.parquet    one row per check
    <out>/finder/<finder_id>.parquet   one row per update of an LR range test
    <out>/trials/part-<id>.parquet     after compaction: the rows of many trials
    <out>/curves/part-<id>.parquet     and their curves

Each trial writes its own two files from the worker that ran it, curves first,
so a stored trial row always has its curve. Compaction (``Store.compact``, at
the end of a finished sweep and ``lrbench compact``) merges finished trials'
files into a few parts, so reading tens of thousands of trials from an object
store takes a few requests. A file that cannot be read is
moved to ``<out>/quarantine/`` (with its curve, a trial's row goes too), so
the next run trains that trial again. Files are written atomically
(``harness.location``): a crash loses at most the trials that were running.
``<out>`` may be a local path or a URI that pyarrow's filesystem layer
understands (``s3://``, ``gs://``). The column declarations of every dataset
are in ``harness.schemas``.
"""

from __future__ import annotations

import contextlib
import json
import posixpath
import uuid
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from harness.errors import StoreError
from harness.location import Location, to_pandas, to_table
from harness.records import FinderOutcome, TrialOutcome, TrialStatus
from harness.schemas import (
    GRID_METADATA_KEY,
    SCHEMA_METADATA_KEY,
    SCHEMA_VERSION,
    curves_schema,
    finder_schema,
    trials_schema,
)

if TYPE_CHECKING:
    import pandas as pd
    import pyarrow as pa

    from harness.growth import GridChange
    from harness.specs import GridSpec

MANIFEST = "manifest.json"
TRIALS = "trials"
CURVES = "curves"
FINDER = "finder"
# compacted files of many trials: trials/part-<id>.parquet and curves/part-<id>.parquet
PART = "part-"
PART_TRIALS = 10_000  # trials per compacted part


def now_iso() -> str:
    """The current UTC time, to the second, as ISO text."""
    return datetime.now(UTC).isoformat(timespec="seconds")


def metadata(grid_json: dict[str, Any] | None = None) -> dict[bytes, bytes]:
    """Parquet schema metadata: the results schema version and, given, the grid."""
    meta = {SCHEMA_METADATA_KEY: str(SCHEMA_VERSION).encode()}
    if grid_json is not None:
        meta[GRID_METADATA_KEY] = json.dumps(grid_json, default=str).encode()
    return meta


class Store(Location):
    """A sweep's results directory."""

    def __init__(self, out: str, grid_json: dict[str, Any] | None = None) -> None:
        super().__init__(out)
        self.grid_json = grid_json
        self.run_id: str | None = None  # this process's entry in the manifest's runs

    def __reduce__(self) -> tuple[Any, ...]:  # pickled into Ray workers: reopen there
        return (Store, (self.out, self.grid_json))

    # -- manifest
    def read_manifest(self) -> dict[str, Any] | None:
        """The manifest, or None for a new directory."""
        return self.read_json(MANIFEST) if self.has(MANIFEST) else None

    def check_grid(self, grid: GridSpec) -> dict[str, Any] | None:
        """The manifest, after checking this directory holds no other grid's
        results: the same grid, an earlier version of it that ``grid`` grows
        (``harness.growth``), or one of the versions it grew through."""
        return self._checked(grid)[0]

    def grid_change(self, grid: GridSpec) -> GridChange | None:
        """How ``grid`` relates to the grid stored here (None: a new directory)."""
        return self._checked(grid)[1]

    def _checked(self, grid: GridSpec) -> tuple[dict[str, Any] | None, GridChange | None]:
        from harness.growth import GridChange, compare

        manifest = self.read_manifest()
        if manifest is None:
            if self.has(TRIALS):
                raise StoreError(
                    f"{self.shown()}: has a trials/ folder but no {MANIFEST}; "
                    "use an empty or new --out"
                )
            return None, None
        if grid.digest in grid_versions(manifest):
            return manifest, GridChange(True, {})
        stored = manifest.get("name")
        if stored != grid.name:
            raise StoreError(
                f"{self.shown()}: holds results of grid {stored!r} "
                f"(digest {manifest.get('grid_digest')}), not of {grid.source} "
                f"({grid.name!r}, digest {grid.digest}); use another --out"
            )
        change = compare(manifest.get("grid") or {}, grid)
        if change.problem:
            raise StoreError(
                f"{self.shown()}: holds grid {stored!r} (digest {manifest.get('grid_digest')}); "
                f"{grid.source} changes it: {change.problem}; use another --out"
            )
        return manifest, change

    def open_sweep(self, grid: GridSpec, run_info: dict[str, Any]) -> dict[str, Any]:
        """Start or resume a sweep of ``grid`` here: record this run in the
        manifest, and the grid as a new version when it grows the stored one."""
        manifest = self.check_grid(grid)
        grid_json = grid.to_json()
        if manifest is None:
            manifest = {
                "name": grid.name,
                "grid_digest": grid.digest,
                "schema_version": SCHEMA_VERSION,
                "grid": grid_json,
                "created_at": now_iso(),
                "runs": [],
            }
        versions = manifest.setdefault(
            "grid_versions",
            [
                {
                    "digest": manifest["grid_digest"],
                    "added_at": manifest["created_at"],
                    "grid": manifest["grid"],
                }
            ],
        )
        if grid.digest not in grid_versions(manifest):  # it grows the stored grid
            versions.append({"digest": grid.digest, "added_at": now_iso(), "grid": grid_json})
            manifest.update(grid_digest=grid.digest, grid=grid_json)
        self.run_id = uuid.uuid4().hex[:12]
        manifest["runs"].append(
            {
                "run_id": self.run_id,
                "started_at": now_iso(),
                "source": grid.source,
                "grid_digest": grid.digest,
                **run_info,
            }
        )
        self.write_json(MANIFEST, manifest)
        self.grid_json = grid_json
        return manifest

    def close_run(self, wall_s: float, counts: dict[str, int]) -> None:
        """Record the end of this store's run (``open_sweep``) in the manifest:
        its wall time and the store's counts by status."""
        manifest = self.read_manifest()
        if not manifest or self.run_id is None:
            return
        for run in manifest.get("runs", []):
            if run.get("run_id") == self.run_id:
                run.update({"finished_at": now_iso(), "wall_s": round(wall_s, 3), "counts": counts})
        self.write_json(MANIFEST, manifest)

    def quarantine(self, path: str, problem: str) -> str:
        """Move an unreadable file aside (``Location.quarantine``); a trial whose
        curve goes loses its row too, so that the next run trains it again, and
        a compacted part of rows takes its part of curves along."""
        target = super().quarantine(path, problem)
        folder, name = posixpath.split(path)
        row = self.path(TRIALS, name)
        if posixpath.basename(folder) == CURVES and self.exists(row):
            super().quarantine(row, "its curve could not be read, so the trial runs again")
        curves = self.path(CURVES, name)
        if posixpath.basename(folder) == TRIALS and is_part(name) and self.exists(curves):
            # a part's curves would hide the curves its trials write when they run again
            super().quarantine(curves, "the rows of these curves could not be read")
        return target

    # -- trials
    def write_trial(self, outcome: TrialOutcome) -> None:
        """Store one finished trial: its curve, then its row (the commit point)."""
        rid = outcome.record.trial_id
        meta = metadata(self.grid_json or {})
        curve = to_table([asdict(p) for p in outcome.curve], curves_schema(), meta)
        trial = to_table([outcome.record.to_row()], trials_schema(), meta)
        self.write_parquet(f"{CURVES}/{rid}.parquet", curve)
        self.write_parquet(f"{TRIALS}/{rid}.parquet", trial)

    def read_trials(self) -> pd.DataFrame:
        """All stored trial rows, with the documented column types. Rows from
        before the schedule axis (schema < 3) ran at a constant LR."""
        df = to_pandas(self._read(TRIALS, trials_schema()))
        df["schedule"] = df["schedule"].fillna("constant")
        df["builder"] = df["builder"].fillna("")  # built-in models, before schema 6
        return df

    def read_curves(self, trial_ids: set[str] | None = None) -> pd.DataFrame:
        """All stored curve points of stored trials, ordered by trial and step.

        A curve is written before its trial's row, so a kill between the two
        leaves a curve with no row: it is ignored here, and replaced when the
        trial runs again. ``trial_ids``: the stored trials' ids, when the caller
        has read them already (else they are read here)."""
        df = to_pandas(self._read(CURVES, curves_schema()))
        if trial_ids is None:
            ids = self._read(TRIALS, trials_schema(), ["trial_id"]).column("trial_id")
            trial_ids = set(ids.to_pylist())
        df = df[df["trial_id"].isin(trial_ids)]
        return df.sort_values(["trial_id", "step"], ignore_index=True)

    def finished(self) -> dict[str, str]:
        """Id -> status of the stored trials a rerun must not repeat (all but ``error``)."""
        table = self._read(TRIALS, trials_schema(), ["trial_id", "status"])
        ids = table.column("trial_id").to_pylist()
        statuses = table.column("status").to_pylist()
        error = TrialStatus.ERROR.value
        return {i: s for i, s in zip(ids, statuses, strict=True) if s != error}

    def verdicts(self) -> pd.DataFrame:
        """The frontier guard's view of the stored trials: id, status, and
        whether and where the pruning rule stopped each (``harness.frontier``)."""
        columns = ["trial_id", "status", "pruned", "pruned_at_s", "pruned_at_step"]
        df = to_pandas(self._read(TRIALS, trials_schema(), columns))
        df["pruned"] = df["pruned"].fillna(False).astype(bool)  # before schema 5
        return df

    def release(self, ids: list[str] | set[str]) -> int:
        """Take the trials ``ids`` out of the compacted parts that hold them,
        back into per-trial files, so that a rerun of the trial (the frontier
        guard's recheck) replaces its row. Returns how many were released.

        Safe to kill at any point: each trial's files are written first (while
        the part holds them too, readers take the part's equal rows), then each
        part is rewritten without them, curves first, in one atomic replace."""
        wanted = set(ids)
        released = 0
        grid = self.grid_json or (self.read_manifest() or {}).get("grid") or {}
        meta = metadata(grid)
        for name in self._parts(TRIALS):
            held = (self._ids_in(TRIALS, name) or set()) & wanted
            if not held:
                continue
            parts = {
                folder: self.read_dataset(folder, schema, keep=name.__eq__).replace_schema_metadata(
                    meta
                )
                for folder, schema in ((CURVES, curves_schema()), (TRIALS, trials_schema()))
            }
            for rid in sorted(held):
                for folder in (CURVES, TRIALS):
                    table = parts[folder]
                    rows = table.filter(_ids_mask(table, {rid}))
                    self.write_parquet(f"{folder}/{rid}.parquet", rows)
            for folder in (CURVES, TRIALS):
                table = parts[folder]
                rest = table.filter(_ids_mask(table, held, keep=False))
                self.write_parquet(f"{folder}/{name}", rest)
            released += len(held)
        return released

    # -- compacted files
    def _read(self, folder: str, schema: pa.Schema, columns: list[str] | None = None) -> pa.Table:
        """``folder``'s rows, each once: its compacted parts, and the per-trial
        files of trials that no part holds (a compaction killed before it
        removed them leaves some behind)."""
        held = self._part_ids(folder)
        return self.read_dataset(
            folder, schema, columns, keep=lambda name: is_part(name) or _stem(name) not in held
        )

    def _parts(self, folder: str) -> list[str]:
        """The names of ``folder``'s compacted parts."""
        return sorted(i.base_name for i in self.entries(folder) if is_part(i.base_name))

    def _part_ids(self, folder: str) -> set[str]:
        """The trial ids that ``folder``'s compacted parts hold (a part that
        cannot be read holds none here; ``read_dataset`` quarantines it)."""
        ids: set[str] = set()
        for name in self._parts(folder):
            ids |= self._ids_in(folder, name) or set()
        return ids

    def _ids_in(self, folder: str, name: str) -> set[str] | None:
        """The trial ids in one Parquet file of ``folder`` (None: it cannot be read)."""
        import pyarrow.parquet as pq

        try:
            with self.fs.open_input_file(self.path(folder, name)) as f:
                column = pq.read_table(f, columns=["trial_id"]).column("trial_id")
        except Exception:
            return None
        return set(column.unique().to_pylist())

    def _singles(self, folder: str) -> set[str]:
        """The trial ids of ``folder``'s per-trial files."""
        return {
            _stem(i.base_name)
            for i in self.entries(folder)
            if i.base_name.endswith(".parquet")
            and not is_part(i.base_name)
            and not i.base_name.startswith((".", "_"))
        }

    def compact(self, per_part: int = PART_TRIALS) -> Compaction:
        """Merge the per-trial files of finished trials into parts of up to
        ``per_part`` trials: ``curves/part-<id>.parquet``, then
        ``trials/part-<id>.parquet`` with the same trials, then the per-trial
        files are removed. Readers take a part over a per-trial file of the same
        trial, so a kill at any point loses nothing and repeats nothing; the
        next compaction finishes what a killed one left. Trials with status
        ``error`` keep their own files (a rerun replaces them)."""
        removed = 0
        trial_parts, curve_parts = set(self._parts(TRIALS)), set(self._parts(CURVES))
        single_curves = self._singles(CURVES)
        for name in sorted(curve_parts - trial_parts):  # killed between a part's two writes
            ids = self._ids_in(CURVES, name)
            if ids is not None and ids <= single_curves:  # every row is still in its own file
                self.remove(self.path(CURVES, name))
        for folder in (TRIALS, CURVES):  # per-trial files a part already holds
            for rid in self._singles(folder) & self._part_ids(folder):
                self.remove(self.path(folder, f"{rid}.parquet"))
                removed += 1
        ids = sorted(self.finished().keys() & self._singles(TRIALS) & self._singles(CURVES))
        grid = self.grid_json or (self.read_manifest() or {}).get("grid") or {}
        parts = 0
        for start in range(0, len(ids), per_part):
            chunk = set(ids[start : start + per_part])
            files = {f"{rid}.parquet" for rid in chunk}
            curves = self.read_dataset(CURVES, curves_schema(), keep=files.__contains__)
            trials = self.read_dataset(TRIALS, trials_schema(), keep=files.__contains__)
            curves = curves.sort_by([("trial_id", "ascending"), ("step", "ascending")])
            trials = trials.sort_by("trial_id")
            name = f"{PART}{uuid.uuid4().hex[:12]}.parquet"
            self.write_parquet(f"{CURVES}/{name}", curves.replace_schema_metadata(metadata(grid)))
            self.write_parquet(f"{TRIALS}/{name}", trials.replace_schema_metadata(metadata(grid)))
            for folder in (CURVES, TRIALS):
                for file in sorted(files):
                    with contextlib.suppress(FileNotFoundError):  # quarantined while read
                        self.remove(self.path(folder, file))
                        removed += 1
            parts += 1
        return Compaction(trials=len(ids), parts=parts, removed=removed)

    # -- LR range tests
    def write_finder(self, outcome: FinderOutcome) -> None:
        """Store one range test's curve, atomically."""
        table = to_table(outcome.rows(), finder_schema(), metadata())
        self.write_parquet(f"{FINDER}/{outcome.spec.finder_id}.parquet", table)

    def read_finder(self) -> pd.DataFrame:
        """All stored range-test points, ordered by run and step."""
        df = to_pandas(self.read_dataset(FINDER, finder_schema()))
        df["builder"] = df["builder"].fillna("")  # built-in models, before schema 6
        return df.sort_values(["finder_id", "step"], ignore_index=True)

    def finder_ids(self) -> set[str]:
        """Ids of the stored range tests."""
        table = self.read_dataset(FINDER, finder_schema(), ["finder_id"])
        return set(table.column("finder_id").to_pylist())


@dataclass(frozen=True)
class Compaction:
    """What ``Store.compact`` did."""

    trials: int  # trials merged into parts now
    parts: int  # parts written (each a curves file and a trials file)
    removed: int  # per-trial files removed


def _ids_mask(table: pa.Table, ids: set[str], keep: bool = True) -> pa.Array:
    """A row mask of ``table``: its rows of the trials ``ids`` (or, ``keep``
    False, every other row)."""
    import pyarrow as pa
    import pyarrow.compute as pc

    mask = pc.is_in(table.column("trial_id"), value_set=pa.array(sorted(ids), pa.string()))
    return mask if keep else pc.invert(mask)


def is_part(name: str) -> bool:
    """True for the file name of a compacted part (``part-<id>.parquet``)."""
    return name.startswith(PART) and name.endswith(".parquet")


def _stem(name: str) -> str:
    return name.removesuffix(".parquet")


def grid_versions(manifest: dict[str, Any]) -> list[str]:
    """The digests of every version of the grid a manifest has held, oldest first."""
    versions = [v["digest"] for v in manifest.get("grid_versions", [])]
    return versions or [manifest.get("grid_digest", "")]


def read_grid_metadata(path: str) -> dict[str, Any]:
    """The grid JSON stored in a results Parquet file's schema metadata."""
    import pyarrow.parquet as pq

    meta = pq.read_schema(path).metadata or {}
    return json.loads(meta.get(GRID_METADATA_KEY, b"{}"))
