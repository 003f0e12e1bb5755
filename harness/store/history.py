"""A nightly benchmark's history (see ``docs/nightly.md``)::

    <root>/nights/date=YYYY-MM-DD/<run_id>.parquet   one row per trial of a run
    <root>/runs/<run_id>/                            that run's results directory
    <root>/accepted/<run_id>.json                    a night accepted as a new baseline
    <root>/report/                                   the latest judgement

A run's trials go to its own results directory while it runs (so an
interrupted night resumes), then into the history dataset in one atomic file:
its commit. A committed file is never rewritten, except once by a migration
to the current results schema (``harness.store.migrate``), with the same rows; a
second run on the same date is another file in the same partition.
"""

from __future__ import annotations

import posixpath
import re
from typing import TYPE_CHECKING, Any

import pyarrow as pa
from pyarrow import fs

from harness.errors import ParamError, StoreError
from harness.store.location import Location, to_pandas, without
from harness.store.records import NightInfo
from harness.store.results import metadata, now_iso
from harness.store.schemas import fill_added, history_schema

if TYPE_CHECKING:
    import pandas as pd

NIGHTS = "nights"
RUNS = "runs"
RUN_INFO = "nightly.json"
ACCEPTED = "accepted"
_LAYOUT = "date=YYYY-MM-DD/<run_id>.parquet"
_PARTITION_FILE = re.compile(r"/date=\d{4}-\d{2}-\d{2}/[^/]+\.parquet$")


class History(Location):
    """A nightly history at a directory or URI."""

    def run_out(self, run_id: str) -> str:
        """The results directory of one run."""
        return self.uri(RUNS, run_id)

    def read(self) -> pd.DataFrame:
        """Every committed row, with ``date`` from the partition folder. A file
        that is corrupt or misplaced is set aside (``Location.set_aside``:
        moved to ``quarantine/`` under the lock, else skipped); one of another
        schema is an error naming it."""
        self.files()  # a stray or misplaced file is moved aside before anything is read
        table = self.read_dataset(
            NIGHTS, history_schema(), partition=pa.schema([("date", pa.string())])
        )
        return to_pandas(fill_added(table))

    def files(self) -> list[str]:
        """Paths of the committed run files; any other file below ``nights/`` is
        set aside (``Location.set_aside``)."""
        found = []
        for info in self.entries(NIGHTS, recursive=True):
            name = posixpath.basename(info.path)
            if info.type != fs.FileType.File or name.startswith((".", "_")):
                continue
            if _PARTITION_FILE.search(info.path):
                found.append(info.path)
            else:
                self.set_aside(info.path, f"not where a history file belongs ({NIGHTS}/{_LAYOUT})")
        return sorted(found)

    def accept(self, run_id: str) -> None:
        """Record that night ``run_id`` is accepted as it is: it starts a new
        baseline (``analysis.nightly.judge.baseline_of``). One small file per decision
        under ``accepted/``, written once."""
        if run_id not in self.committed():
            known = ", ".join(sorted(self.committed())[-5:]) or "none"
            raise ParamError("accept", f"{run_id} is not in the history (latest: {known})")
        self.write_json(f"{ACCEPTED}/{run_id}.json", {"run_id": run_id, "accepted_at": now_iso()})

    def accepted(self) -> set[str]:
        """Run ids accepted with ``accept``."""
        return {
            posixpath.basename(info.path).removesuffix(".json")
            for info in self.entries(ACCEPTED)
            if info.path.endswith(".json")
        }

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
        name = posixpath.join(NIGHTS, f"date={date}", f"{run_id}.parquet")
        if self.has(name):
            raise StoreError(f"{self.shown(name)}: already committed; nights are never rewritten")
        schema = without(history_schema(), ["date"])
        frame = trials.assign(run_id=run_id, **night)
        table = pa.Table.from_pandas(frame[schema.names], schema=schema, preserve_index=False)
        self.write_parquet(name, table.replace_schema_metadata(metadata(grid_json)))
        return self.path(name)

    def write_run_info(self, info: NightInfo) -> None:
        """Record a run's identity (id, date, start, grid) in its results directory."""
        self.write_json(posixpath.join(RUNS, info.run_id, RUN_INFO), info.to_json())

    def _run_dirs(self) -> list[str]:
        return sorted(
            posixpath.basename(info.path)
            for info in self.entries(RUNS)
            if info.type == fs.FileType.Directory
        )  # run ids start with their UTC start: sorted is oldest first

    def pending(self) -> list[NightInfo]:
        """The identities of runs started but not committed, oldest first."""
        done = self.committed()
        found = []
        for run_id in self._run_dirs():
            meta = posixpath.join(RUNS, run_id, RUN_INFO)
            if run_id not in done and self.has(meta):
                found.append(NightInfo.from_json(self.read_json(meta)))
        return sorted(found, key=lambda i: i.started_at)

    def prune_runs(self, keep: int) -> list[str]:
        """Delete the results directories (curves, manifests) of all committed
        runs but the newest ``keep``; their rows stay in the history. Returns the
        ids of the runs pruned. Uncommitted runs are never touched."""
        done = self.committed()
        runs = [r for r in self._run_dirs() if r in done]
        old = runs[: max(0, len(runs) - keep)]
        for run_id in old:
            self.delete_dir(posixpath.join(RUNS, run_id))
        return old
