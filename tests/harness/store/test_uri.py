"""The results store on a non-local pyarrow filesystem: S3, served on localhost
by moto's S3-compatible server (pyarrow's own S3 client talks HTTP to it)."""

from __future__ import annotations

from dataclasses import replace

import pandas as pd
import pytest
from typer.testing import CliRunner

from harness.errors import StoreError
from harness.grid.parse import parse_grid
from harness.grid.resolved import ResolvedGrid
from harness.grid.specs import Fixed
from harness.store.history import History
from harness.store.location import child
from harness.store.records import TrialStatus
from harness.store.results import Store
from lrbench.cli import app
from tests import helpers
from tests.helpers import CELLS, commit_night

runner = CliRunner()
SECRET = "do-not-show-0123456789"


def test_child_keeps_a_uris_query_last():
    uri = "s3://b/r?endpoint_override=http://h:1&scheme=http"
    assert child(uri, "runs", "x") == "s3://b/r/runs/x?endpoint_override=http://h:1&scheme=http"
    assert child("/tmp/r/", "report") == "/tmp/r/report"


def test_the_store_round_trips_on_s3_and_quarantines_a_corrupt_object(s3, capsys):
    uri = s3("unit")
    base = {"models": ["tiny_cnn"], "optimizers": ["adam"], "lr": [0.1]}
    grid = ResolvedGrid.fixed(parse_grid({**base, "name": "g"}, "g.toml"))
    other = parse_grid(base, "other.toml")
    store = Store(uri)
    store.open_sweep(grid, {"host": "h"})
    store.write_trial(helpers.outcome())
    store.write_trial(helpers.outcome(TrialStatus.DIVERGED, lr=50.0))
    trials = store.read_trials()
    assert sorted(trials.status) == ["diverged", "reached"] and len(store.read_curves()) == 6
    assert set(store.finished()) == set(trials.trial_id)
    assert Store(uri).read_manifest().grid_digest == grid.digest
    with pytest.raises(StoreError, match="holds results of grid 'g'"):
        Store(uri).check_grid(ResolvedGrid.fixed(replace(other, lr=Fixed((0.2,)))))
    with store.fs.open_output_stream(f"{store.root}/trials/bad.parquet") as sink:
        sink.write(b"PAR1 not parquet")
    assert len(store.read_trials()) == 2
    assert not store.has("quarantine")  # a reader without the lease moves nothing
    with store.locked("a test"):
        assert len(store.read_trials()) == 2
    err = capsys.readouterr().err
    assert "lrbench/unit/trials/bad.parquet?" in err and ": corrupt or unreadable Parquet" in err
    assert not store.has(".lock")  # the lease is gone with its holder
    moved = store.entries("quarantine", recursive=True)
    assert [m.base_name.split(".")[0] for m in moved if m.type.name == "File"] == ["bad"]


def test_a_nightly_history_on_s3(s3):
    history = History(s3("history"))
    for day in (1, 2):
        commit_night(history, f"run{day:02d}", CELLS, day=day)
    assert history.committed() == {"run01", "run02"}
    assert set(history.read()["date"]) == {"2026-11-01", "2026-11-02"}
    result = runner.invoke(app, ["nightly", "judge", "--history", history.out])
    assert result.exit_code == 0, result.output
    assert ": clean" in result.output
    assert history.has("report/index.html")


@pytest.mark.slow
def test_a_sweep_to_s3_resumes_and_reports(s3, write_grid, tmp_path, monkeypatch):
    """With credentials in the URI (``s3://KEY:SECRET@bucket/...``), which no
    output may show: not the console, the errors, the page or folder names."""
    grid = write_grid(
        """
        name = "s3-test"
        datasets = [{ name = "mnist5k", train_size = 1000 }]
        models = ["tiny_cnn"]
        optimizers = ["adam"]
        lr = [0.01, 100.0]
        [stop]
        target = 0.8
        budget_s = 3600
        max_epochs = 20
        """
    )
    uri = s3("sweep").replace("s3://", f"s3://lrbench-test:{SECRET}@")
    first = runner.invoke(app, ["sweep", str(grid), "--out", uri])
    assert first.exit_code == 0, first.output
    assert "2 trials (0 already stored, 2 run now)" in first.output
    trials = Store(uri).read_trials()  # written by the Ray workers, read back over S3
    assert sorted(trials.status) == ["diverged", "reached"]
    again = runner.invoke(app, ["sweep", str(grid), "--out", uri])
    assert "2 trials (2 already stored, 0 run now)" in again.output, again.output
    report = runner.invoke(app, ["report", uri, "--out", str(tmp_path / "report")])
    assert report.exit_code == 0, report.output
    table = pd.read_csv(tmp_path / "report" / "tables" / "optimizers.csv")
    assert table.loc[0, "reached"] == 1
    monkeypatch.chdir(tmp_path)  # the default report folder of a URI is under results/
    default = runner.invoke(app, ["report", uri])
    assert default.exit_code == 0, default.output
    missing = runner.invoke(app, ["report", uri.replace("/sweep?", "/nothing-here?")])
    assert missing.exit_code == 2 and "s3://***@lrbench/nothing-here" in missing.output
    shown = [first.output, again.output, report.output, default.output, missing.output]
    pages = [p.read_text() for p in tmp_path.rglob("*.html")]
    names = [str(p) for p in tmp_path.rglob("*")]
    assert len(pages) == 2 and "s3://***@lrbench/sweep" in pages[0]
    assert not [text for text in shown + pages + names if SECRET in text]


@pytest.mark.parametrize(
    ("text", "shown"),
    [
        ("s3://KEY:SECRET@bucket/x?region=eu", "s3://***@bucket/x?region=eu"),
        (
            "error: gs://b/x?access_token=SECRET&scheme=http: cannot open",
            "error: gs://b/x?access_token=***&scheme=http: cannot open",
        ),
        ("s3://b/x?endpoint_override=http://h:9000", "s3://b/x?endpoint_override=http://h:9000"),
        ("results/paper?secret=1", "results/paper?secret=1"),  # a local path: nothing to hide
    ],
)
def test_redact_hides_credentials_and_keeps_the_rest(text, shown):
    from harness.store.location import redact

    assert redact(text) == shown
