"""Other tools read lrbench's results whole: DuckDB, polars, pyarrow datasets and
pandas each run the one-liners of docs/results.md ("Reading results with other
tools") on a results directory and a nightly history that started with files of
an older schema and were migrated, and get every row and every column, with
the values lrbench's readers give. Before the migration some of them fail or
drop columns, so the test proves something."""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path
from typing import Any

import pandas as pd
import pytest

from harness.store.history import History
from harness.store.migrate import CURVES, FINDER, NIGHTS, TRIALS, migrate
from harness.store.records import TrialStatus
from harness.store.results import Store, is_part
from tests import helpers
from tests.harness.store.test_migrate import GRID, downgrade, finder_outcome, shown

ROOT = helpers.ROOT
OLD = 4  # the results schema of the older files
HEADING = "\n## Reading results with other tools\n"


def doc_code() -> tuple[str, list[str]]:
    """The imports and the one-liners of the doc's section, as it shows them."""
    text = (ROOT / "docs" / "results.md").read_text()
    section = text.split(HEADING, 1)[1].split("\n## ", 1)[0]
    code = "\n".join(re.findall(r"```python\n(.*?)```", section, re.S))
    lines = [line for line in code.splitlines() if line.strip()]
    imports = [line for line in lines if line.startswith(("import ", "from "))]
    return "\n".join(imports), [line for line in lines if line not in imports]


def dataset_of(line: str) -> str:
    return next(name for name in (TRIALS, CURVES, FINDER, NIGHTS) if f"/{name}" in line)


def lines_to_run(finder: bool) -> list[tuple[str, str]]:
    """(dataset, line) for each one-liner; ``finder/`` runs the ``trials/`` lines,
    as the doc says it reads like them."""
    _, lines = doc_code()
    found = [(dataset_of(line), line) for line in lines]
    if finder:
        found += [(FINDER, line.replace("/trials", "/finder")) for d, line in found if d == TRIALS]
    return found


def run(line: str, results: Path, history: Path) -> pd.DataFrame:
    """One one-liner, on these directories, as a DataFrame."""
    imports, _ = doc_code()
    namespace: dict[str, Any] = {}
    exec(imports, namespace)
    value = eval(line.replace("DIR/", f"{results}/").replace("HISTORY/", f"{history}/"), namespace)
    return value if isinstance(value, pd.DataFrame) else value.to_pandas()  # polars, Arrow


def problems(
    results: Path, history: Path, expected: dict[str, pd.DataFrame], values: bool
) -> dict[str, str]:
    """Line -> what it got wrong against lrbench's frames: an error, rows or
    columns missing, and (``values``) another count of values in a column."""
    found = {}
    for dataset, line in lines_to_run(FINDER in expected):
        want = expected[dataset]
        try:
            got = run(line, results, history)
        except Exception as exc:
            found[line] = f"{type(exc).__name__}: {str(exc).splitlines()[0][:120]}"
            continue
        missing = sorted(set(want.columns) - set(got.columns))
        key = "finder_id" if dataset == FINDER else "trial_id"  # every row, each once
        if missing or sorted(got[key]) != sorted(want[key]):
            found[line] = f"{len(got)} of {len(want)} rows; missing columns: {missing}"
        elif values:
            counts = {c: (got[c].notna().sum(), want[c].notna().sum()) for c in want.columns}
            off = {c: n for c, n in counts.items() if n[0] != n[1]}
            if off or set(got.columns) != set(want.columns):
                found[line] = f"non-null counts differ: {off}; columns {sorted(got.columns)}"
    return found


def hand_made(path: Path) -> Path:
    """A results directory of six hand-made trials, compacted, and two range tests."""
    store = Store(str(path), grid_json=GRID)
    for i in range(6):
        status = (TrialStatus.REACHED, TrialStatus.BUDGET, TrialStatus.DIVERGED)[i % 3]
        store.write_trial(helpers.outcome(status, optimizer="adam", lr=10.0 ** (i - 4)))
    store.compact()
    store.write_finder(finder_outcome("adam"))
    store.write_finder(finder_outcome("gd"))
    return path


def mixed(source: Path, tmp_path: Path, old_first: bool) -> tuple[Path, Path, list[str]]:
    """A copy of the compacted results directory ``source`` and a history of two
    nights of its trials, with files of results schema ``OLD`` among newer
    ones: a grown grid's per-trial files next to an older part (``old_first``
    False), or older per-trial files next to a newer part, and the older night
    first or last. DuckDB lists files by name, and trial ids sort before
    ``part-``, so both orders occur. Returns both and the older files' paths."""
    results, history = tmp_path / "results", tmp_path / "history"
    shutil.copytree(source, results)
    store = Store(str(results))
    ids = sorted(store.finished())
    assert store.release(ids[:2]) == 2  # two trials out of the part, into their own files
    singles = [f"{folder}/{rid}.parquet" for folder in (TRIALS, CURVES) for rid in ids[:2]]
    parts = [f"{f}/{p.name}" for f in (TRIALS, CURVES) for p in (results / f).iterdir()]
    parts = [p for p in parts if is_part(Path(p).name)]
    assert len(parts) == 2 and max(Path(s).name for s in singles) < min(parts)
    old = singles if old_first else parts
    if (results / FINDER).exists():
        old.append(f"{FINDER}/{min(p.name for p in (results / FINDER).glob('*.parquet'))}")

    nights = History(str(history))
    manifest = store.read_manifest()
    trials, grid = store.read_trials(), manifest.grid if manifest is not None else GRID
    for day in (1, 2):
        started = pd.Timestamp(f"2026-11-0{day}T03:17:00Z")
        night = {
            "run_started_at": started,
            "grid_digest": "g1",
            "revision": "abc123",
            "complete": True,
            "env": json.dumps({"device": "cpu: x"}),
        }
        nights.append(f"{started:%Y-%m-%d}", f"{started:%Y%m%dT%H%M%SZ}-run", trials, night, grid)
    night_files = sorted(str(p.relative_to(history)) for p in history.rglob("*.parquet"))
    old_nights = [night_files[0 if old_first else 1]]
    for name in old:
        downgrade(store, name, OLD)
    for name in old_nights:
        downgrade(nights, name, OLD)
    return results, history, [*old, *(f"history:{n}" for n in old_nights)]


def check(source: Path, tmp_path: Path, old_first: bool) -> None:
    """Before migration some client fails or drops columns; after it, every client
    reads every row and every column of trials, curves (finder) and nights."""
    results, history, old = mixed(source, tmp_path, old_first)
    store, nights = Store(str(results)), History(str(history))

    def frames() -> dict[str, pd.DataFrame]:
        found = {TRIALS: store.read_trials(), CURVES: store.read_curves(), NIGHTS: nights.read()}
        return {**found, FINDER: store.read_finder()} if (results / FINDER).exists() else found

    before = frames()
    failing = problems(results, history, before, values=False)
    assert {dataset_of(line) for line in failing} >= {TRIALS, NIGHTS}, failing

    rewritten = [
        *migrate(str(results)).rewritten,
        *(f"history:{n}" for n in migrate(nights).rewritten),
    ]
    assert sorted(rewritten) == sorted(old)

    after = frames()
    for name, frame in after.items():  # lrbench reads what it read before
        keys = [c for c in ("run_id", "trial_id", "finder_id", "step") if c in frame]
        pd.testing.assert_frame_equal(
            frame.sort_values(keys, ignore_index=True),
            shown(before[name]).sort_values(keys, ignore_index=True),
        )
    assert problems(results, history, after, values=True) == {}


def test_the_doc_shows_every_client_for_every_dataset():
    imports, lines = doc_code()
    assert {"duckdb", "polars", "pyarrow.dataset", "pandas"} <= set(
        re.findall(r"import (\S+)", imports)
    )
    clients = (
        "duckdb.sql(",
        "pl.read_parquet(",
        "pl.scan_parquet(",
        "ds.dataset(",
        "pd.read_parquet(",
    )
    for dataset in (TRIALS, CURVES, NIGHTS):
        shown_here = [line for line in lines if dataset_of(line) == dataset]
        assert sorted(c for c in clients for line in shown_here if line.startswith(c)) == sorted(
            clients
        )
    assert all("hive" in line for line in lines if dataset_of(line) == NIGHTS and "pd." not in line)


@pytest.mark.parametrize("old_first", [True, False], ids=["old-first", "old-last"])
def test_every_tool_reads_a_migrated_directory_whole(tmp_path, old_first):
    check(hand_made(tmp_path / "source"), tmp_path, old_first)


@pytest.mark.slow
@pytest.mark.parametrize("old_first", [True, False], ids=["old-first", "old-last"])
def test_every_tool_reads_a_migrated_real_sweep_whole(real_sweep, tmp_path, old_first):
    check(real_sweep, tmp_path, old_first)
