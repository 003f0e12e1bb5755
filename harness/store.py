"""A sweep's results directory: the only module that reads or writes its Parquet.

Layout (see ``docs/results.md``)::

    <out>/manifest.json            the grid, its digest, and one entry per run
    <out>/trials/<trial_id>.parquet    one row: the trial's summary
    <out>/curves/<trial_id>.parquet    one row per check
    <out>/finder/<finder_id>.parquet   one row per update of an LR range test

Each trial writes its own two files from the worker that ran it, curves first,
so a stored trial row always has its curve. A file that cannot be read is
moved to ``<out>/quarantine/`` (with its curve, a trial's row goes too), so
the next run trains that trial again. Files are written atomically
(``harness.location``): a crash loses at most the trials that were running.
``<out>`` may be a local path or a URI that pyarrow's filesystem layer
understands (``s3://``, ``gs://``). The column declarations of every dataset
are in ``harness.schemas``.
"""

from __future__ import annotations

import json
import posixpath
import uuid
from dataclasses import asdict
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

    from harness.growth import GridChange
    from harness.specs import GridSpec

MANIFEST = "manifest.json"
TRIALS = "trials"
CURVES = "curves"
FINDER = "finder"


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
        manifest = self.read_manifest()
        if manifest is None:
            if self.has(TRIALS):
                raise StoreError(
                    f"{self.shown()}: has a trials/ folder but no {MANIFEST}; "
                    "use an empty or new --out"
                )
        elif grid.digest not in grid_versions(manifest):
            self._check_growth(manifest, grid)
        return manifest

    def grid_change(self, grid: GridSpec) -> GridChange | None:
        """How ``grid`` relates to the grid stored here (None: a new directory)."""
        from harness.growth import GridChange, compare

        manifest = self.check_grid(grid)
        if manifest is None:
            return None
        if grid.digest in grid_versions(manifest):
            return GridChange(True, {})
        return compare(manifest.get("grid") or {}, grid)

    def _check_growth(self, manifest: dict[str, Any], grid: GridSpec) -> None:
        from harness.growth import compare

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
        curve goes loses its row too, so that the next run trains it again."""
        target = super().quarantine(path, problem)
        folder, name = posixpath.split(path)
        row = self.path(TRIALS, name)
        if posixpath.basename(folder) == CURVES and self.exists(row):
            super().quarantine(row, "its curve could not be read, so the trial runs again")
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
        df = to_pandas(self.read_dataset(TRIALS, trials_schema()))
        df["schedule"] = df["schedule"].fillna("constant")
        return df

    def read_curves(self, trial_ids: set[str] | None = None) -> pd.DataFrame:
        """All stored curve points of stored trials, ordered by trial and step.

        A curve is written before its trial's row, so a kill between the two
        leaves a curve with no row: it is ignored here, and replaced when the
        trial runs again. ``trial_ids``: the stored trials' ids, when the caller
        has read them already (else they are read here)."""
        df = to_pandas(self.read_dataset(CURVES, curves_schema()))
        if trial_ids is None:
            ids = self.read_dataset(TRIALS, trials_schema(), ["trial_id"]).column("trial_id")
            trial_ids = set(ids.to_pylist())
        df = df[df["trial_id"].isin(trial_ids)]
        return df.sort_values(["trial_id", "step"], ignore_index=True)

    def finished(self) -> dict[str, str]:
        """Id -> status of the stored trials a rerun must not repeat (all but ``error``)."""
        table = self.read_dataset(TRIALS, trials_schema(), ["trial_id", "status"])
        ids = table.column("trial_id").to_pylist()
        statuses = table.column("status").to_pylist()
        error = TrialStatus.ERROR.value
        return {i: s for i, s in zip(ids, statuses, strict=True) if s != error}

    # -- LR range tests
    def write_finder(self, outcome: FinderOutcome) -> None:
        """Store one range test's curve, atomically."""
        table = to_table(outcome.rows(), finder_schema(), metadata())
        self.write_parquet(f"{FINDER}/{outcome.spec.finder_id}.parquet", table)

    def read_finder(self) -> pd.DataFrame:
        """All stored range-test points, ordered by run and step."""
        df = to_pandas(self.read_dataset(FINDER, finder_schema()))
        return df.sort_values(["finder_id", "step"], ignore_index=True)

    def finder_ids(self) -> set[str]:
        """Ids of the stored range tests."""
        table = self.read_dataset(FINDER, finder_schema(), ["finder_id"])
        return set(table.column("finder_id").to_pylist())


def grid_versions(manifest: dict[str, Any]) -> list[str]:
    """The digests of every version of the grid a manifest has held, oldest first."""
    versions = [v["digest"] for v in manifest.get("grid_versions", [])]
    return versions or [manifest.get("grid_digest", "")]


def read_grid_metadata(path: str) -> dict[str, Any]:
    """The grid JSON stored in a results Parquet file's schema metadata."""
    import pyarrow.parquet as pq

    meta = pq.read_schema(path).metadata or {}
    return json.loads(meta.get(GRID_METADATA_KEY, b"{}"))
