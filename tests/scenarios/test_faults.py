"""Network faults and concurrent writers against real stores: an I/O error is
tried again and never taken for corruption, so nothing is quarantined and
nothing retrained; a file merged away while read is read from its part; a
trial stored twice reads once, its newest copy with its own curve."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest
from typer.testing import CliRunner

from harness.errors import StoreUnreachable
from harness.grid.parse import load_grid
from harness.grid.resolved import ResolvedGrid
from harness.store import location, locking
from harness.store.results import Store
from harness.sweep.driver import run_sweep
from lrbench.cli import app
from tests.conftest import moto_s3, s3_uri
from tests.faults import FlakyHandler, FlakyProxy

runner = CliRunner()


@pytest.fixture
def quick_retries(monkeypatch):
    monkeypatch.setattr(location, "BACKOFF_S", 0.01)
    monkeypatch.setattr(locking, "LEASE_SETTLE_S", 0.01)


def _copy(real_sweep: Path, tmp_path: Path) -> tuple[Path, Path]:
    """A copy of the shared real sweep, and its grid file."""
    out = tmp_path / "out"
    shutil.copytree(real_sweep, out)
    return out, real_sweep.parent / "grid.toml"


def _files(root: Path) -> dict[str, float]:
    return {str(p.relative_to(root)): p.stat().st_mtime for p in root.rglob("*") if p.is_file()}


def _flaky(monkeypatch, root: Path, handler: FlakyHandler) -> None:
    """Open ``root`` through ``handler`` wherever lrbench opens a location."""
    from pyarrow import fs

    opened = location.filesystem

    def filesystem(out: str):
        if os.path.abspath(out).startswith(str(root)):
            return fs.PyFileSystem(handler), os.path.abspath(out)
        return opened(out)

    monkeypatch.setattr(location, "filesystem", filesystem)


@pytest.mark.slow
def test_flaky_reads_of_a_local_store_move_nothing_and_retrain_nothing(
    real_sweep, tmp_path, monkeypatch, quick_retries
):
    out, grid = _copy(real_sweep, tmp_path)
    before, stored = _files(out), Store(str(out)).read_trials()
    handler = FlakyHandler(flaky=40)
    _flaky(monkeypatch, tmp_path, handler)
    resolved = ResolvedGrid.fixed(load_grid(grid))
    result = run_sweep(resolved, str(out))  # the resume reads everything once
    assert handler.failed >= 4  # the faults hit the manifest, the lock, the listings, the parts
    assert (result.ran, result.already_stored) == (0, len(stored))
    assert not (out / "quarantine").exists()
    after = _files(out)
    assert {k: v for k, v in after.items() if k != "manifest.json"} == {
        k: v for k, v in before.items() if k != "manifest.json"
    }  # no file moved or rewritten (a resume with nothing to run leaves the manifest as is)
    report = runner.invoke(app, ["report", str(out), "--out", str(tmp_path / "report")])
    assert report.exit_code == 0, report.output


@pytest.mark.slow
def test_an_outage_fails_in_one_line_with_exit_1_and_moves_nothing(
    real_sweep, tmp_path, monkeypatch, quick_retries
):
    out, grid = _copy(real_sweep, tmp_path)
    before = _files(out)
    _flaky(monkeypatch, tmp_path, FlakyHandler(down=True))
    with pytest.raises(StoreUnreachable, match="failed 5 times"):
        Store(str(out)).finished()
    for command in (["sweep", str(grid), "--out", str(out)], ["report", str(out)]):
        result = runner.invoke(app, command)
        assert result.exit_code == 1, result.output
        errors = [line for line in result.output.splitlines() if line.startswith("error: ")]
        assert len(errors) == 1 and "nothing was moved or retrained" in errors[0], result.output
        assert "Traceback" not in result.output
    assert _files(out) == before


def test_a_file_merged_away_while_read_is_read_from_its_part(tmp_path, monkeypatch):
    """A compaction in another process removes the per-trial files a reader
    has just listed: the reader lists again and reads the part, each trial once."""
    from tests import helpers

    out = tmp_path / "out"
    writer = Store(str(out))
    outcomes = [helpers.outcome(lr=lr) for lr in (0.01, 0.02, 0.03)]
    for outcome in outcomes:
        writer.write_trial(outcome)

    class CompactsOnFirstOpen(FlakyHandler):
        merged = False

        def open_input_file(self, path: str):
            if not self.merged:
                self.merged = True
                Store(str(out)).compact()  # a plain local store: the other process
            return self.local.open_input_file(path)

    _flaky(monkeypatch, tmp_path, CompactsOnFirstOpen())
    reader = Store(str(out))
    trials = reader.read_trials()
    assert sorted(trials["trial_id"]) == sorted(o.record.trial_id for o in outcomes)
    assert not list((out / "trials").glob("[!p]*.parquet"))  # it did merge them meanwhile
    assert not (out / "quarantine").exists()


@pytest.fixture
def s3_proxy():
    """A moto S3 server behind a proxy that can reset connections; yields the
    proxy and a function making an ``s3://`` URI through it."""
    with moto_s3("faults") as port:
        proxy = FlakyProxy(port)
        try:
            yield proxy, lambda key: s3_uri("faults", proxy.port, key)
        finally:
            proxy.close()


def _objects(store: Store) -> list[str]:
    return sorted(i.path for i in store.entries("", recursive=True) if i.type.name == "File")


@pytest.mark.slow
def test_network_faults_on_s3_neither_quarantine_nor_retrain(
    real_sweep, tmp_path, s3_proxy, monkeypatch, quick_retries
):
    from pyarrow import fs

    proxy, uri = s3_proxy
    out, grid = _copy(real_sweep, tmp_path)
    store = Store(uri("sweep"))
    fs.copy_files(str(out), store.root, destination_filesystem=store.fs)
    before = _objects(store)
    total = len(Store(str(out)).read_trials())

    proxy.fail(8)  # more than the S3 client's own three attempts of one request
    resumed = runner.invoke(app, ["sweep", str(grid), "--out", uri("sweep")])
    assert resumed.exit_code == 0, resumed.output
    assert f"{total} trials ({total} already stored, 0 run now)" in resumed.output
    assert proxy.dropped == 8  # the faults really hit this run
    proxy.fail(8)
    report = runner.invoke(app, ["report", uri("sweep"), "--out", str(tmp_path / "report")])
    assert report.exit_code == 0, report.output
    assert proxy.dropped == 16
    assert _objects(store) == before  # nothing quarantined, nothing rewritten

    proxy.fail(10**6)  # the network is gone
    down = runner.invoke(app, ["sweep", str(grid), "--out", uri("sweep")])
    assert down.exit_code == 1, down.output
    assert "nothing was moved or retrained" in down.output and "Traceback" not in down.output
    proxy.fail(0)
    assert _objects(store) == before
