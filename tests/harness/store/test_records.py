"""The JSON records of a results directory and a history: ``Manifest`` (with its
``RunEntry``s and ``GridVersion``s) and ``NightInfo`` read what earlier lrbench
versions wrote and write it back unchanged, keys they do not know included."""

from __future__ import annotations

import json

from harness.grid.parse import parse_grid
from harness.grid.resolved import ResolvedGrid
from harness.grid.specs import Fixed, StopRule
from harness.store.history import History
from harness.store.records import Manifest, NightInfo, RunEntry
from harness.store.results import MANIFEST, Store
from tests import helpers

# A manifest as lrbench wrote it before grids could grow: no grid_versions, and a
# run entry with only some of today's keys, plus a key no lrbench reads.
OLD = {
    "name": "test",
    "grid_digest": "d1",
    "schema_version": 3,
    "grid": {"name": "test", "lrs": [0.1], "stop": {"target": 0.8, "window": 5, "new": 1}},
    "created_at": "2026-01-01T00:00:00+00:00",
    "runs": [{"run_id": "r1", "started_at": "2026-01-01T00:00:01+00:00", "host": "h"}],
    "written_by": "a newer lrbench",
}


def test_an_older_manifest_reads_and_writes_back_unchanged():
    manifest = Manifest.from_json(OLD)
    assert manifest.to_json() == OLD
    assert manifest.versions() == ["d1"] and manifest.extra == {"written_by": "a newer lrbench"}
    run = manifest.runs[0]
    assert run.sweep_run_id == "r1" and run.info == {"host": "h"} and run.finished_at is None
    # the stored grid, with the keys this lrbench does not know left out
    assert manifest.resolved_grid().spec.stop == StopRule(target=0.8, window=5)
    assert manifest.resolved_grid().spec.lr == Fixed((0.1,))
    assert manifest.resolved_grid().spec.name == "test"


def test_a_run_is_opened_then_closed_and_a_grown_grid_becomes_a_version():
    entry = RunEntry("r2", started_at="t2", grid_digest="d1", info={"trials": 4})
    opened = Manifest.from_json(OLD).opened(OLD["grid"], "d1", entry, "t2")
    assert [v.digest for v in opened.grid_versions] == ["d1"]  # an older manifest's one version
    assert opened.grid_versions[0].added_at == OLD["created_at"]
    assert [r.sweep_run_id for r in opened.runs] == ["r1", "r2"]
    closed = opened.closed("r2", "t3", 1.23456, {"reached": 4})
    assert closed.runs[1].to_json() == {
        "run_id": "r2",
        "started_at": "t2",
        "grid_digest": "d1",
        "trials": 4,
        "finished_at": "t3",
        "wall_s": 1.235,
        "counts": {"reached": 4},
    }
    assert closed.runs[0] == opened.runs[0]  # the other run is left as it was
    grown = closed.opened({"name": "test", "lrs": [0.1, 1.0]}, "d2", RunEntry("r3"), "t4")
    assert grown.versions() == ["d1", "d2"] and grown.grid_digest == "d2"
    assert grown.grid["lrs"] == [0.1, 1.0] and grown.grid_versions[-1].added_at == "t4"
    assert Manifest.from_json(grown.to_json()) == grown


def test_the_store_writes_the_manifest_it_reads(tmp_path):
    grid = ResolvedGrid.fixed(parse_grid(helpers.GRID, "test.toml"))
    store = Store(str(tmp_path / "out"))
    store.open_sweep(grid, {"host": "h", "address": "ray://user:secret@head:10001"})
    store.close_run(2.5, {"reached": 1})
    raw = json.loads((tmp_path / "out" / MANIFEST).read_text())
    manifest = store.read_manifest()
    assert manifest is not None and manifest.to_json() == raw
    (run,) = manifest.runs
    assert run.sweep_run_id == store.sweep_run_id and run.wall_s == 2.5
    assert "secret" not in json.dumps(raw)  # the entry is stored redacted
    assert manifest.versions() == [grid.digest]
    assert manifest.grid == json.loads(json.dumps(grid.to_json()))


def test_a_nights_identity_round_trips(tmp_path):
    data = {
        "run_id": "20261201T031700Z-abc123",
        "date": "2026-12-01",
        "started_at": "2026-12-01T03:17:00+00:00",
        "grid": "nightly",
        "grid_digest": "d",
        "source": "grids/nightly.toml",
        "note": "kept",
    }
    info = NightInfo.from_json(data)
    assert info.to_json() == data and info.extra == {"note": "kept"}
    history = History(str(tmp_path / "h"))
    history.write_run_info(info)
    assert history.pending() == [info]
