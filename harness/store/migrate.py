"""One results schema per directory: rewrite the Parquet files an older lrbench
wrote to the current schema, so that every tool reads the folder as one dataset.

The schema grows (``harness.store.schemas.ADDED_IN``) and lrbench's own readers fill in
what an older file lacks, but other readers do not: DuckDB and pandas drop the
newer columns or fail on a folder whose files differ, and polars refuses it. So
``migrate`` rewrites each older file of a results directory (``trials/``,
``curves/``, ``finder/``: per-trial files and compacted parts alike) and of a
nightly history (``nights/date=.../<run_id>.parquet``, and the results
directory of each run under ``runs/``) with the current columns, in order and
type: the same rows and values, the added columns filled as the readers show
them (``harness.store.schemas.FILLS``) or null where unknown, the file's grid metadata
kept and its ``lrbench.schema`` set to the current version.

Each file is replaced atomically (``Location.write_parquet``), so a kill at any
point leaves every file either old or migrated, and a second run rewrites only
what the first left. A file already current is read no further than its
footer. One that cannot be decoded is left as it is (the readers deal with
it); one written by a newer lrbench, or not by lrbench, is refused before
anything is written. The caller holds the directory's lock.
"""

from __future__ import annotations

import posixpath
from dataclasses import dataclass
from typing import TYPE_CHECKING

import pyarrow.parquet as pq
from pyarrow import fs

from harness.errors import one_line
from harness.store.location import Location, without
from harness.store.schemas import (
    SCHEMA_METADATA_KEY,
    SCHEMA_VERSION,
    check_schema,
    conform,
    curves_schema,
    finder_schema,
    history_schema,
    trials_schema,
)

if TYPE_CHECKING:
    from collections.abc import Iterator

    import pyarrow as pa

# The dataset folders, as ``harness.store.results`` and ``harness.store.history`` name them
# (named here too: both of them call ``migrate``, so it cannot import them).
TRIALS, CURVES, FINDER = "trials", "curves", "finder"
NIGHTS, RUNS = "nights", "runs"


@dataclass(frozen=True)
class Migration:
    """What ``migrate`` did; paths are relative to the location."""

    rewritten: tuple[str, ...]  # files rewritten to the current schema
    current: int  # files already at the current schema, left untouched
    skipped: tuple[tuple[str, str], ...]  # (path, why) of files left as they are

    def summary(self) -> str:
        """One line: what was rewritten, what was current, what was left."""
        text = (
            f"{len(self.rewritten)} file(s) rewritten to results schema {SCHEMA_VERSION}, "
            f"{self.current} already current"
        )
        return text + (f", {len(self.skipped)} left as they are" if self.skipped else "")


def migrate(location: Location | str) -> Migration:
    """Rewrite every Parquet file of an older results schema under ``location``
    (a results directory or a nightly history, local or a URI) to the current
    schema, one atomic replace per file. Returns what was rewritten, how many
    files were already current, and which were left (undecodable, or holding a
    column this lrbench does not know). Raises ``StoreError``, before writing
    anything, for a file that a newer lrbench or another program wrote."""
    loc = location if isinstance(location, Location) else Location(location)
    todo: list[tuple[str, pa.Schema]] = []
    skipped: list[tuple[str, str]] = []
    current = 0
    for name, schema in _files(loc):
        found = _footer(loc, name)
        if isinstance(found, str):
            skipped.append((name, found))
        elif _is_current(found, schema):
            current += 1
        else:
            check_schema(loc.shown(name), found, schema)  # a newer or foreign file stops it
            extra = [n for n in found.names if n not in schema.names]
            if extra:  # dropping them would lose data: leave the file as it is
                skipped.append(
                    (name, f"holds columns this lrbench does not know: {', '.join(extra)}")
                )
            else:
                todo.append((name, schema))
    rewritten = []
    for name, schema in todo:
        table = _table(loc, name)
        if isinstance(table, str):
            skipped.append((name, table))
            continue
        meta = {**(table.schema.metadata or {}), SCHEMA_METADATA_KEY: str(SCHEMA_VERSION).encode()}
        meta.pop(b"pandas", None)  # describes the old columns
        loc.write_parquet(name, conform(table, schema).replace_schema_metadata(meta))
        rewritten.append(name)
    return Migration(tuple(rewritten), current, tuple(skipped))


def _datasets(loc: Location) -> list[tuple[str, pa.Schema]]:
    """The dataset folders below ``loc`` (relative paths) and their files'
    schema: a results directory's, a history's ``nights/``, and those of each
    run's results directory under ``runs/``."""
    results = {TRIALS: trials_schema(), CURVES: curves_schema(), FINDER: finder_schema()}
    runs = sorted(
        posixpath.join(RUNS, info.base_name)
        for info in loc.entries(RUNS)
        if info.type == fs.FileType.Directory
    )
    found = [*results.items(), (NIGHTS, without(history_schema(), ["date"]))]
    found += [(posixpath.join(run, f), schema) for run in runs for f, schema in results.items()]
    return found


def _files(loc: Location) -> Iterator[tuple[str, pa.Schema]]:
    """Each Parquet file of each dataset folder (relative path) and its schema;
    temporary files of writes in progress and stray files are not ours to touch."""
    prefix = loc.root.rstrip("/") + "/"
    for folder, schema in _datasets(loc):
        for info in sorted(loc.entries(folder, recursive=True), key=lambda i: i.path):
            name = info.base_name
            if info.type != fs.FileType.File or name.startswith((".", "_")):
                continue
            if name.endswith(".parquet") and info.path.startswith(prefix):
                yield info.path[len(prefix) :], schema


def _is_current(found: pa.Schema, schema: pa.Schema) -> bool:
    """True when a file's footer schema is ``schema`` exactly, at the current version."""
    raw = (found.metadata or {}).get(SCHEMA_METADATA_KEY, b"1")
    version = int(raw) if raw.isdigit() else 1
    same = len(found) == len(schema) and all(
        a.name == b.name and a.type.equals(b.type) for a, b in zip(found, schema, strict=True)
    )
    return same and version == SCHEMA_VERSION


def _footer(loc: Location, name: str) -> pa.Schema | str:
    """A file's schema from its footer, or why it cannot be read."""
    try:
        with loc.fs.open_input_file(loc.path(name)) as f:
            return pq.read_schema(f)
    except Exception as exc:  # corrupt, truncated, gone: the readers deal with it
        return f"cannot be read ({one_line(exc)})"


def _table(loc: Location, name: str) -> pa.Table | str:
    """A file's rows, or why they cannot be read."""
    try:
        with loc.fs.open_input_file(loc.path(name)) as f:
            return pq.read_table(f)
    except Exception as exc:  # a footer that reads, with data that does not
        return f"cannot be read ({one_line(exc)})"
