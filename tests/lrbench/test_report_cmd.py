"""``lrbench report``: in-process, on stores written by hand, and its bad input."""

from __future__ import annotations

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from typer.testing import CliRunner

from harness.store.records import TrialStatus
from harness.store.results import SCHEMA_METADATA_KEY, Store
from lrbench.cli import app
from tests import helpers

runner = CliRunner()


@pytest.fixture
def store_dir(tmp_path):
    """A results directory with five hand-made trials: adam reaches at 0.01 and
    0.1, gd only at 0.1; the rest run out of budget or diverge."""
    out = tmp_path / "hand"
    store = Store(str(out), grid_json={"name": "test"})
    store.write_trial(helpers.outcome(TrialStatus.REACHED, lr=0.01))
    store.write_trial(helpers.outcome(TrialStatus.REACHED, lr=0.1))
    store.write_trial(helpers.outcome(TrialStatus.DIVERGED, lr=10.0))
    store.write_trial(helpers.outcome(TrialStatus.REACHED, optimizer="gd", lr=0.1))
    store.write_trial(helpers.outcome(TrialStatus.BUDGET, optimizer="gd", lr=1e-4))
    return out


def error_line(result) -> str:
    assert result.exit_code == 2, result.output
    lines = result.output.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), result.output
    return lines[0]


def test_report_writes_folder_and_prints_tables(store_dir, tmp_path):
    result = runner.invoke(app, ["report", str(store_dir), "--out", str(tmp_path / "r")])
    assert result.exit_code == 0, result.output
    assert "Per optimizer" in result.output and "0.01 .. 0.1" in result.output
    assert f"report: {tmp_path / 'r' / 'index.html'}" in result.output
    for name in ("valley", "envelope", "best_curves", "success_map"):
        assert (tmp_path / "r" / "figures" / f"{name}.png").stat().st_size > 1000
    assert not (tmp_path / "r" / "figures" / "success_rate.png").exists()  # one seed


def test_default_report_folder_is_inside_the_results(store_dir):
    result = runner.invoke(app, ["report", str(store_dir)])
    assert result.exit_code == 0, result.output
    assert (store_dir / "report" / "index.html").exists()


def test_several_results_are_compared(store_dir, tmp_path):
    other = tmp_path / "other" / "hand"
    store = Store(str(other), grid_json={"name": "test"})
    store.write_trial(helpers.outcome(TrialStatus.REACHED, lr=0.01))
    result = runner.invoke(app, ["report", str(store_dir), str(other)])
    assert result.exit_code == 0, result.output
    out = tmp_path / "hand" / "report-vs-other-hand"
    assert (out / "figures" / "compare.png").exists()
    compare = (out / "tables" / "compare.md").read_text()
    assert "tmp" not in compare.split("\n")[0]
    assert "other/hand" in compare


def test_missing_directory(tmp_path):
    line = error_line(runner.invoke(app, ["report", str(tmp_path / "nope")]))
    assert line == f"error: {tmp_path / 'nope'}: no such results directory"


def test_directory_with_no_results(tmp_path):
    line = error_line(runner.invoke(app, ["report", str(tmp_path)]))
    assert "not an lrbench results directory" in line and str(tmp_path) in line


def test_sweep_with_no_trials_yet(tmp_path):
    (tmp_path / "trials").mkdir()
    result = runner.invoke(app, ["report", str(tmp_path)])
    assert result.exit_code == 0, result.output
    assert "no trials stored yet" in result.output
    assert "No trials stored yet" in (tmp_path / "report" / "index.html").read_text()
    # a comparison needs trials on every side: one line, exit 2
    line = error_line(runner.invoke(app, ["report", str(tmp_path), str(tmp_path)]))
    assert line.endswith("no trials stored yet (trials/ is empty)")


def test_a_corrupt_parquet_file_is_named_and_left_for_a_writer_to_move(store_dir):
    bad = store_dir / "curves" / "ffffffffffffffff.parquet"
    bad.write_bytes(b"PAR1 not really parquet PAR1")
    result = runner.invoke(app, ["report", str(store_dir)])
    assert result.exit_code == 0, result.output
    assert f"warning: {bad}: corrupt or unreadable Parquet" in result.output
    assert bad.exists() and not (store_dir / "quarantine").exists()  # a report only reads
    compacted = runner.invoke(app, ["compact", str(store_dir)])  # a writer moves it
    assert compacted.exit_code == 0, compacted.output
    assert not bad.exists() and list((store_dir / "quarantine" / "curves").iterdir())


def test_older_schema_names_the_file_and_the_missing_columns(store_dir):
    path = next((store_dir / "trials").glob("*.parquet"))
    old = pq.read_table(path).drop_columns(["worker_pid", "device"])
    pq.write_table(old.replace_schema_metadata({}), path)
    line = error_line(runner.invoke(app, ["report", str(store_dir)]))
    assert str(path) in line and "older lrbench" in line
    assert "missing columns: worker_pid, device" in line


def test_changed_column_type_is_named(store_dir):
    path = next((store_dir / "trials").glob("*.parquet"))
    table = pq.read_table(path)
    i = table.schema.get_field_index("lr")
    pq.write_table(table.set_column(i, "lr", table["lr"].cast(pa.string())), path)
    line = error_line(runner.invoke(app, ["report", str(store_dir)]))
    assert "changed types: lr (string, expected double)" in line


def test_newer_schema_asks_for_an_upgrade(store_dir):
    path = next((store_dir / "trials").glob("*.parquet"))
    table = pq.read_table(path)
    meta = {**(table.schema.metadata or {}), SCHEMA_METADATA_KEY: b"99"}
    pq.write_table(table.replace_schema_metadata(meta), path)
    line = error_line(runner.invoke(app, ["report", str(store_dir)]))
    assert "results schema 99, newer than this lrbench reads" in line


def test_min_success_out_of_range(store_dir):
    line = error_line(runner.invoke(app, ["report", str(store_dir), "--min-success", "0"]))
    assert "--min-success" in line


def test_schedules_get_a_faceted_valley_and_shift_table(tmp_path):
    """adam at a constant LR succeeds at 0.01 .. 0.1 (best 0.01); with a cosine
    schedule at 0.01 .. 1 (best 0.1): one decade higher, one decade wider."""
    out = tmp_path / "sched"
    store = Store(str(out), grid_json={"name": "test"})
    cosine = {"name": "cosine", "epochs": 10.0, "alpha": 0.0, "restarts": False}
    cosine.update(t_mul=2.0, m_mul=1.0)
    for lr, const, cos in [
        (1e-3, None, None),
        (1e-2, 1.0, 2.0),
        (1e-1, 2.0, 1.0),
        (1.0, None, 3.0),
        (10.0, None, None),
    ]:
        for t, schedule in ((const, {"name": "constant"}), (cos, cosine)):
            status = TrialStatus.REACHED if t else TrialStatus.DIVERGED
            store.write_trial(helpers.outcome(status, time_s=t or 1.0, lr=lr, schedule=schedule))
    result = runner.invoke(app, ["report", str(out)])
    assert result.exit_code == 0, result.output
    assert "How the valley moves" in result.output
    report = out / "report"
    assert (report / "figures" / "valley_schedule.png").stat().st_size > 10_000
    import pandas as pd

    shifts = pd.read_csv(report / "tables" / "shifts.csv").set_index("series")
    assert shifts["reference"].unique().tolist() == ["adam (schedule=constant)"]
    row = shifts.loc["adam (schedule=cosine(epochs=10))"]
    assert row["best_shift_decades"] == pytest.approx(1.0)
    assert row["width_change_decades"] == pytest.approx(1.0)
    text = (report / "tables" / "shifts.md").read_text()
    assert "best LR 1.0 decades higher; band 1.0 decades wider" in text
