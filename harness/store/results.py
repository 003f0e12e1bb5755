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
store takes a few requests.

A trial's row and its curve always come from files of the same name
(``trials/X.parquet`` and ``curves/X.parquet``). When a trial is stored more
than once (a compaction killed before it removed the per-trial files, a rerun
of a released trial, two compactions of one URI) readers take its newest row
(``started_at``; a part on a tie) and that file's curve, and compaction drops
the other copies. A corrupt file is moved to ``<out>/quarantine/`` with its
pair, so the next run trains its trials again (``Location.set_aside``: only a
run holding the lock moves files). Files are written atomically
(``harness.store.location``): a crash loses at most the trials that were running.
``<out>`` may be a local path or a URI that pyarrow's filesystem layer
understands (``s3://``, ``gs://``). The column declarations of every dataset
are in ``harness.store.schemas``.
"""

from __future__ import annotations

import contextlib
import json
import posixpath
import uuid
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from harness.errors import StoreError
from harness.grid.growth import GridChange, compare
from harness.store.location import FILENAME, Location, redact_json, to_pandas, to_table
from harness.store.migrate import migrate
from harness.store.records import FinderOutcome, Manifest, RunEntry, TrialOutcome, TrialStatus
from harness.store.schemas import (
    GRID_METADATA_KEY,
    SCHEMA_METADATA_KEY,
    SCHEMA_VERSION,
    curves_schema,
    fill_added,
    finder_schema,
    trials_schema,
)

if TYPE_CHECKING:
    import pandas as pd

    from harness.grid.resolved import ResolvedGrid

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
        self.sweep_run_id: str | None = None  # this process's entry in the manifest's runs

    def __reduce__(self) -> tuple[Any, ...]:  # pickled into Ray workers: reopen there
        return (Store, (self.out, self.grid_json))

    # -- manifest
    def read_manifest(self) -> Manifest | None:
        """The manifest, or None for a new directory."""
        return Manifest.from_json(self.read_json(MANIFEST)) if self.has(MANIFEST) else None

    def check_grid(self, grid: ResolvedGrid) -> Manifest | None:
        """The manifest, after checking this directory holds no other grid's
        results: the same grid, an earlier version of it that ``grid`` grows
        (``harness.grid.growth``), or one of the versions it grew through."""
        return self._checked(grid)[0]

    def grid_change(self, grid: ResolvedGrid) -> GridChange | None:
        """How ``grid`` relates to the grid stored here (None: a new directory)."""
        return self._checked(grid)[1]

    def _checked(self, grid: ResolvedGrid) -> tuple[Manifest | None, GridChange | None]:
        manifest = self.read_manifest()
        if manifest is None:
            if self.has(TRIALS):
                raise StoreError(
                    f"{self.shown()}: has a trials/ folder but no {MANIFEST}; "
                    "use an empty or new --out"
                )
            return None, None
        if grid.digest in manifest.versions():
            return manifest, GridChange(True, {})
        stored, spec = manifest.name, grid.spec
        if stored != spec.name:
            raise StoreError(
                f"{self.shown()}: holds results of grid {stored!r} "
                f"(digest {manifest.grid_digest}), not of {spec.source} "
                f"({spec.name!r}, digest {grid.digest}); use another --out"
            )
        change = compare(manifest.grid, grid)
        if change.problem:
            raise StoreError(
                f"{self.shown()}: holds grid {stored!r} (digest {manifest.grid_digest}); "
                f"{spec.source} changes it: {change.problem}; use another --out"
            )
        return manifest, change

    def open_sweep(self, grid: ResolvedGrid, run_info: dict[str, Any]) -> Manifest:
        """Start or resume a sweep of ``grid`` here: record this run in the
        manifest (``run_info``: where it runs), and the grid as a new version
        when it grows the stored one."""
        stored = self.check_grid(grid)
        grid_json, now = grid.to_json(), now_iso()
        if stored is None:
            stored = Manifest(grid.spec.name, grid.digest, grid_json, now, SCHEMA_VERSION)
        self.sweep_run_id = uuid.uuid4().hex[:12]
        entry = {
            "run_id": self.sweep_run_id,
            "started_at": now,
            "source": grid.spec.source,
            "grid_digest": grid.digest,
            **run_info,
        }
        # a cluster's address may carry a token
        manifest = stored.opened(
            grid_json, grid.digest, RunEntry.from_json(redact_json(entry)), now
        )
        self.write_json(MANIFEST, manifest.to_json())
        self.grid_json = grid_json
        return manifest

    def close_run(self, wall_s: float, counts: dict[str, int]) -> None:
        """Record the end of this store's run (``open_sweep``) in the manifest:
        its wall time and the store's counts by status."""
        manifest = self.read_manifest()
        if manifest is None or self.sweep_run_id is None:
            return
        closed = manifest.closed(self.sweep_run_id, now_iso(), wall_s, counts)
        self.write_json(MANIFEST, closed.to_json())

    def quarantine(self, path: str, problem: str) -> str:
        """Move a corrupt file aside (``Location.quarantine``) with its pair: a
        trial's row and curve (or a part's rows and curves) go together, so
        that its trials run again and no old curve is left to pair with the
        rerun's row."""
        target = super().quarantine(path, problem)
        folder, name = posixpath.split(path)
        kind = posixpath.basename(folder)
        if kind in (TRIALS, CURVES):
            other = CURVES if kind == TRIALS else TRIALS
            pair = self.path(other, name)
            if self.exists(pair):
                why = "its curve" if kind == CURVES else "its row"
                super().quarantine(pair, f"{why} could not be read, so its trials run again")
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
        return to_pandas(fill_added(self._newest(trials_schema().names).drop_columns(FILENAME)))

    def read_curves(self, trial_ids: set[str] | None = None) -> pd.DataFrame:
        """All stored curve points of stored trials, ordered by trial and step.

        Each trial's curve comes from the file that holds its stored row
        (``_newest``): a curve with no row (a kill between the two writes) or
        an older copy's is left out. ``trial_ids``: only these trials."""
        rows = self._newest(["trial_id"])
        if trial_ids is not None:
            rows = rows.filter(_ids_mask(rows, set(trial_ids)))
        curves = self.read_dataset(CURVES, curves_schema(), with_files=True)
        # each curve row's trial, looked up among the stored rows: the name of
        # the file its row came from, against the name of the row's own file
        at = pc.index_in(curves.column("trial_id"), value_set=rows.column("trial_id"))
        wanted = pc.take(_base_names(rows.column(FILENAME)), at)
        mask = pc.fill_null(pc.equal(wanted, _base_names(curves.column(FILENAME))), False)
        df = to_pandas(curves.filter(mask).drop_columns(FILENAME))
        return df.sort_values(["trial_id", "step"], ignore_index=True)

    def finished(self) -> dict[str, str]:
        """Id -> status of the stored trials a rerun must not repeat (all but ``error``)."""
        table = self._newest(["trial_id", "status"])
        ids = table.column("trial_id").to_pylist()
        statuses = table.column("status").to_pylist()
        error = TrialStatus.ERROR.value
        return {i: s for i, s in zip(ids, statuses, strict=True) if s != error}

    def verdicts(self) -> pd.DataFrame:
        """The frontier guard's view of the stored trials: id, status, and
        whether and where the pruning rule stopped each (``harness.rules.frontier``)."""
        columns = ["trial_id", "status", "pruned", "pruned_at_s", "pruned_at_step"]
        return to_pandas(fill_added(self._newest(columns).drop_columns(FILENAME)))

    def release(self, ids: list[str] | set[str]) -> int:
        """Take the trials ``ids`` out of the compacted parts that hold them,
        back into per-trial files, so that a rerun of the trial (the frontier
        guard's recheck) replaces its row. Returns how many were released.

        Safe to kill at any point: each trial's files are written first (while
        the part holds them too, readers take the part's equal rows), then each
        part is rewritten without them (``_rewrite_part``)."""
        wanted = set(ids)
        held = self._held_by_parts(wanted)
        for name, rids in sorted(held.items()):
            parts = {folder: self._part(folder, name) for folder in (CURVES, TRIALS)}
            for rid in sorted(rids):
                for folder in (CURVES, TRIALS):
                    rows = parts[folder].filter(_ids_mask(parts[folder], {rid}))
                    self.write_parquet(f"{folder}/{rid}.parquet", rows)
            self._rewrite_part(name, rids, parts)
        return sum(len(rids) for rids in held.values())

    # -- compacted files
    def _newest(self, columns: list[str]) -> pa.Table:
        """The stored trial rows, one per trial, with ``columns`` and the file
        each came from (``FILENAME``): the newest copy of a trial stored twice."""
        wanted = list(dict.fromkeys([*columns, "trial_id", "started_at"]))
        table = self.read_dataset(TRIALS, trials_schema(), wanted, with_files=True)
        return newest(table).select([*columns, FILENAME])

    def _grid(self) -> dict[str, Any]:
        if self.grid_json:
            return self.grid_json
        manifest = self.read_manifest()
        return manifest.grid if manifest is not None else {}

    def _part(self, folder: str, name: str) -> pa.Table:
        """One compacted part's table (with the grid's metadata)."""
        table = self.read_dataset(folder, _SCHEMAS[folder](), keep=name.__eq__)
        return table.replace_schema_metadata(metadata(self._grid()))

    def _held_by_parts(self, ids: set[str]) -> dict[str, set[str]]:
        """Which of ``ids`` each compacted part of ``trials/`` holds, by part name."""
        table = self.read_dataset(TRIALS, trials_schema(), ["trial_id"], with_files=True)
        held: dict[str, set[str]] = {}
        for rid, path in zip(
            table.column("trial_id").to_pylist(), table.column(FILENAME).to_pylist(), strict=True
        ):
            name = posixpath.basename(path)
            if rid in ids and is_part(name):
                held.setdefault(name, set()).add(rid)
        return held

    def _rewrite_part(
        self, name: str, drop: set[str], parts: dict[str, pa.Table] | None = None
    ) -> None:
        """Rewrite part ``name`` without the trials ``drop``: its rows first, so
        that a kill in between leaves curves no row pairs with (ignored), never a
        row without its curve. ``parts``: the part's tables, when read already."""
        for folder in (TRIALS, CURVES):
            table = parts[folder] if parts else self._part(folder, name)
            self.write_parquet(f"{folder}/{name}", table.filter(_ids_mask(table, drop, keep=False)))

    def _parts(self, folder: str) -> list[str]:
        """The names of ``folder``'s compacted parts."""
        return sorted(i.base_name for i in self.entries(folder) if is_part(i.base_name))

    def _singles(self, folder: str) -> set[str]:
        """The trial ids of ``folder``'s per-trial files."""
        return {
            _stem(i.base_name)
            for i in self.entries(folder)
            if i.base_name.endswith(".parquet")
            and not is_part(i.base_name)
            and not i.base_name.startswith((".", "_"))
        }

    def drop_copies(self) -> int:
        """Remove every copy of a trial but its newest (``newest``): an older
        per-trial file (its row, then its curve), or its rows and curves in a
        part (``_rewrite_part``). Returns how many copies went."""
        table = self.read_dataset(
            TRIALS, trials_schema(), ["trial_id", "started_at"], with_files=True
        )
        if table.num_rows == len(table.column("trial_id").unique()):
            return 0
        kept = pc.is_in(_file_keys(table), value_set=_file_keys(newest(table)))
        older = table.filter(pc.invert(kept))
        by_file: dict[str, set[str]] = {}
        for rid, path in zip(
            older.column("trial_id").to_pylist(), older.column(FILENAME).to_pylist(), strict=True
        ):
            by_file.setdefault(posixpath.basename(path), set()).add(rid)
        for name, rids in sorted(by_file.items()):
            if is_part(name):
                self._rewrite_part(name, rids)
                continue
            for folder in (TRIALS, CURVES):
                with contextlib.suppress(FileNotFoundError):
                    self.remove(self.path(folder, name))
        return len(older)

    def compact(self, per_part: int = PART_TRIALS) -> Compaction:
        """Merge the per-trial files of finished trials into parts of up to
        ``per_part`` trials: ``curves/part-<id>.parquet``, then
        ``trials/part-<id>.parquet`` with the same trials, then the per-trial
        files are removed. Files of an older schema are rewritten to the
        current one first (``harness.store.migrate``), and corrupt curves move aside
        with their rows (``Location.set_aside``). Copies of a trial stored twice are dropped first
        (``drop_copies``), and a part of curves whose rows were never written
        (a kill between a part's two writes) goes. Readers take a part over
        a per-trial file of the same trial, so a kill at any point loses
        nothing and repeats nothing; the next compaction finishes what a killed
        one left. Trials with status ``error`` keep their own files (a rerun
        replaces them)."""
        migrated = migrate(self)  # one schema per directory, for every reader
        # a corrupt curve is found only when read: read each file's trial ids
        # (under the lock, ``set_aside`` moves it with its row, which runs again)
        self.read_dataset(CURVES, curves_schema(), ["trial_id"])
        for name in sorted(set(self._parts(CURVES)) - set(self._parts(TRIALS))):
            self.remove(self.path(CURVES, name))  # no row pairs with them (``read_curves``)
        removed = self.drop_copies()
        ids = sorted(self.finished().keys() & self._singles(TRIALS) & self._singles(CURVES))
        meta = metadata(self._grid())
        parts = 0
        for start in range(0, len(ids), per_part):
            chunk = set(ids[start : start + per_part])
            files = {f"{rid}.parquet" for rid in chunk}
            curves = self.read_dataset(CURVES, curves_schema(), keep=files.__contains__)
            trials = self.read_dataset(TRIALS, trials_schema(), keep=files.__contains__)
            curves = curves.sort_by([("trial_id", "ascending"), ("step", "ascending")])
            trials = trials.sort_by("trial_id")
            name = f"{PART}{uuid.uuid4().hex[:12]}.parquet"
            self.write_parquet(f"{CURVES}/{name}", curves.replace_schema_metadata(meta))
            self.write_parquet(f"{TRIALS}/{name}", trials.replace_schema_metadata(meta))
            for folder in (CURVES, TRIALS):
                for file in sorted(files):
                    with contextlib.suppress(FileNotFoundError):  # quarantined while read
                        self.remove(self.path(folder, file))
                        removed += 1
            parts += 1
        return Compaction(
            trials=len(ids), parts=parts, removed=removed, migrated=len(migrated.rewritten)
        )

    # -- LR range tests
    def write_finder(self, outcome: FinderOutcome) -> None:
        """Store one range test's curve, atomically."""
        table = to_table(outcome.rows(), finder_schema(), metadata())
        self.write_parquet(f"{FINDER}/{outcome.spec.finder_id}.parquet", table)

    def read_finder(self) -> pd.DataFrame:
        """All stored range-test points, ordered by run and step."""
        df = to_pandas(fill_added(self.read_dataset(FINDER, finder_schema())))
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
    migrated: int = 0  # files of an older schema rewritten to the current one first


_SCHEMAS = {TRIALS: trials_schema, CURVES: curves_schema}


def newest(table: pa.Table) -> pa.Table:
    """``table``'s rows (with ``trial_id``, ``started_at`` and ``FILENAME``),
    one per trial: the latest ``started_at`` (no time counts as oldest); on a
    tie, a compacted part over a per-trial file, then the first file by name."""
    ids = table.column("trial_id")
    if table.num_rows == len(ids.unique()):
        return table
    names = _base_names(table.column(FILENAME))
    ranked = table.append_column("_part", pc.starts_with(names, PART)).append_column("_name", names)
    ranked = ranked.sort_by(
        [
            ("trial_id", "ascending"),
            ("started_at", "descending"),
            ("_part", "descending"),
            ("_name", "ascending"),
        ]
    )
    ids = ranked.column("trial_id")
    first = pa.concat_arrays(
        [pa.array([True]), pc.not_equal(ids.slice(1), ids.slice(0, len(ids) - 1)).combine_chunks()]
    )
    return ranked.filter(first).drop_columns(["_part", "_name"])


def _base_names(paths: pa.ChunkedArray) -> pa.Array:
    """Each path's file name, without its folder: a trial's curve pairs with
    its row when both come from files of one name. A column of a few distinct
    paths repeated (one per file) is worked on once per distinct path."""
    encoded = pc.dictionary_encode(paths).combine_chunks()
    names = pc.replace_substring_regex(encoded.dictionary, pattern=".*/", replacement="")
    return pc.take(names, encoded.indices)


def _file_keys(table: pa.Table) -> pa.Array:
    """Each row's file name and trial id, as one key (``_base_names``)."""
    names = _base_names(table.column(FILENAME))
    return pc.binary_join_element_wise(names, table.column("trial_id"), "\x00")


def _ids_mask(table: pa.Table, ids: set[str], keep: bool = True) -> pa.Array:
    """A row mask of ``table``: its rows of the trials ``ids`` (or, ``keep``
    False, every other row)."""
    mask = pc.is_in(table.column("trial_id"), value_set=pa.array(sorted(ids), pa.string()))
    return mask if keep else pc.invert(mask)


def is_part(name: str) -> bool:
    """True for the file name of a compacted part (``part-<id>.parquet``)."""
    return name.startswith(PART) and name.endswith(".parquet")


def _stem(name: str) -> str:
    return name.removesuffix(".parquet")


def read_grid_metadata(path: str) -> dict[str, Any]:
    """The grid JSON stored in a results Parquet file's schema metadata."""
    meta = pq.read_schema(path).metadata or {}
    return json.loads(meta.get(GRID_METADATA_KEY, b"{}"))
