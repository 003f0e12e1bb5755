"""The report and the notebook on a real tiny sweep's Parquet files (slow), and the
report on hand-made sweeps where nothing, or little, can be drawn (fast)."""

from __future__ import annotations

import json
import subprocess
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

import matplotlib.image as mpimg
import pandas as pd
import pyarrow.parquet as pq
import pytest
from typer.testing import CliRunner

from harness.grid.parse import parse_grid
from harness.grid.resolved import ResolvedGrid
from harness.store.records import TrialStatus
from harness.store.results import Store
from lrbench.cli import app
from tests import helpers

ROOT = helpers.ROOT
NOTEBOOK = ROOT / "analysis" / "analysis.ipynb"
FIGURES = ("valley", "envelope", "best_curves", "success_map", "success_rate")


def check_images(folder: Path, names: tuple[str, ...]) -> None:
    for name in names:
        png = folder / f"{name}.png"
        assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n", png
        pixels = mpimg.imread(png)
        assert pixels.shape[0] > 300 and pixels.shape[1] > 600, (png, pixels.shape)
        assert pixels.std() > 0.01, f"{png} is blank"
        root = ET.parse(folder / f"{name}.svg").getroot()
        assert root.tag.endswith("svg") and len(list(root.iter())) > 50


def expected_per_optimizer(results: Path) -> pd.DataFrame:
    """The per-optimizer numbers, computed here straight from the Parquet files."""
    t = pd.read_parquet(results / "trials")
    cell = t.groupby(["optimizer", "lr"]).agg(
        share=("status", lambda s: (s == "reached").mean()),
        median_time=("time_to_target_s", "median"),
    )
    ok = cell[cell.share >= 0.5].reset_index()
    rows = {}
    for opt, g in t.groupby("optimizer"):
        good = ok[ok.optimizer == opt].sort_values(["median_time", "lr"])
        rows[opt] = {
            "trials": len(g),
            "reached": int((g.status == "reached").sum()),
            "diverged": int((g.status == "diverged").sum()),
            "lr_low": good.lr.min() if len(good) else None,
            "lr_high": good.lr.max() if len(good) else None,
            "best_lr": good.lr.iloc[0] if len(good) else None,
            "best_time_s": good.median_time.iloc[0] if len(good) else None,
        }
    return pd.DataFrame(rows).T


@pytest.mark.slow
def test_report_on_a_real_sweep(real_sweep, tmp_path):
    out = tmp_path / "report"
    result = CliRunner().invoke(app, ["report", str(real_sweep), "--out", str(out)])
    assert result.exit_code == 0, result.output
    check_images(out / "figures", FIGURES)
    assert not (out / "figures" / "compare.png").exists()

    # the table's numbers match the data
    table = pd.read_csv(out / "tables" / "optimizers.csv").set_index("series")
    expected = expected_per_optimizer(real_sweep)
    assert set(table.index) == set(expected.index) == {"gd", "adam"}
    for opt, want in expected.iterrows():
        got = table.loc[opt]
        for col in ("trials", "reached", "diverged"):
            assert got[col] == want[col], (opt, col)
        for col in ("lr_low", "lr_high", "best_lr", "best_time_s"):
            if want[col] is None:
                assert pd.isna(got[col]), (opt, col)
            else:
                assert got[col] == pytest.approx(want[col]), (opt, col)
    assert table.loc["adam", "reached"] > 0  # the fixture grid is built so adam trains
    summary = pd.read_csv(out / "tables" / "summary.csv").iloc[0]
    trials = pd.read_parquet(real_sweep / "trials")
    assert summary["trials"] == len(trials) == 16
    for status, count in trials.status.value_counts().items():
        assert summary[status] == count
    cells = pd.read_csv(out / "tables" / "cells.csv")
    assert (cells["n"] == 2).all() and len(cells) == 8  # two seeds per cell

    # printed: the per-optimizer table with adam's reached count
    adam = next(line for line in result.output.splitlines() if "│ adam" in line)
    assert f"{int(table.loc['adam', 'reached'])}/8" in adam

    # one folder: index.html links only files inside it, and every one exists
    page = (out / "index.html").read_text()
    links = {part.split('"')[0] for part in page.split('href="')[1:]}
    links |= {part.split('"')[0] for part in page.split('src="')[1:]}
    assert links and all((out / link).is_file() for link in links)
    for name in FIGURES:
        assert f"figures/{name}.png" in page
    for name in ("summary", "optimizers", "union_band"):
        assert (out / "tables" / f"{name}.md").read_text().startswith("|")


@pytest.mark.slow
def test_report_needs_neither_ray_nor_tensorflow(real_sweep, tmp_path):
    code = (
        "import sys\n"
        "from lrbench.cli import app\n"
        f"app(['report', {str(real_sweep)!r}, '--out', {str(tmp_path)!r}], standalone_mode=False)\n"
        "heavy = [m for m in ('tensorflow', 'keras', 'ray') if m in sys.modules]\n"
        "assert not heavy, heavy\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert (tmp_path / "index.html").exists()


@pytest.mark.slow
def test_committed_notebook_is_parameterized_and_has_no_outputs():
    nb = json.loads(NOTEBOOK.read_text())
    code = [c for c in nb["cells"] if c["cell_type"] == "code"]
    assert "parameters" in code[0]["metadata"].get("tags", [])
    assert all(not c["outputs"] and c["execution_count"] is None for c in code)


@pytest.mark.slow
def test_notebook_runs_top_to_bottom_under_papermill(real_sweep, tmp_path):
    import papermill

    executed = tmp_path / "analysis.ipynb"
    papermill.execute_notebook(
        str(NOTEBOOK),
        str(executed),
        parameters={"results": str(real_sweep), "report_dir": str(tmp_path / "report")},
        cwd=str(ROOT),
        kernel_name="python3",
        progress_bar=False,
    )
    nb = json.loads(executed.read_text())
    outputs = [o for c in nb["cells"] if c["cell_type"] == "code" for o in c["outputs"]]
    assert not [o for o in outputs if o["output_type"] == "error"]
    images = [o for o in outputs if "image/png" in o.get("data", {})]
    assert len(images) >= 5  # valley, envelope, curves, success map, success rate
    assert any("trials from" in "".join(o.get("text", "")) for o in outputs)
    assert (tmp_path / "report" / "index.html").exists()


@pytest.mark.slow
def test_scaling_sweep_end_to_end(real_sweep, tmp_path, write_grid):
    """LRs from the real sweep, three widths, real training; the report fits them."""
    from harness.sweep.driver import run_sweep
    from lrbench.compose import prepare_grid

    path = write_grid(
        f"""
        name = "scaling-test"
        datasets = ["mnist5k"]
        models = [{{ name = "tiny_cnn", widths = [1, 2, 3] }}]
        optimizers = ["gd", "adam"]
        lr = {{ best = "{real_sweep}" }}
        [stop]
        target = 0.8
        budget_s = 3600
        max_epochs = 8
        """
    )
    grid = prepare_grid(path)
    assert {c.optimizer for c in grid.chosen} == {"gd", "adam"}
    out = tmp_path / "scaling"
    assert run_sweep(grid, str(out)).unfinished == 0

    trials = pd.read_parquet(out / "trials").sort_values(["optimizer", "width"])
    assert len(trials) == 6 and set(trials.width) == {1.0, 2.0, 3.0}
    assert trials.lr_source.str.startswith(f"{real_sweep} best 1/1").all()
    assert (trials.step_time_s > 0).all()
    for _, g in trials.groupby("optimizer"):
        assert g.n_params.is_monotonic_increasing and g.n_params.nunique() == 3
    manifest = json.loads((out / "manifest.json").read_text())
    assert {c["optimizer"] for c in manifest["grid"]["chosen_lrs"]} == {"gd", "adam"}

    report = tmp_path / "report"
    result = CliRunner().invoke(app, ["report", str(out), "--out", str(report)])
    assert result.exit_code == 0, result.output
    assert "Width scaling" in result.output
    check_images(report / "figures", ("scaling",))
    assert not (report / "figures" / "valley.png").exists()  # one LR per optimizer
    fits = pd.read_csv(report / "tables" / "scaling_fits.csv")
    assert set(fits.measure) == {"time_to_target_s", "steps_to_target", "step_time_s"}
    assert set(fits["size"]) == {"width", "n_params"}
    step = fits[(fits.measure == "step_time_s") & (fits["size"] == "width")]
    assert (step.n_points == 3).all() and step.slope.notna().all()
    assert "Width scaling" in (report / "index.html").read_text()


NO_TIMES = "No trial reached the target"
ONE_LR = "Each optimizer ran at a single learning rate"
# Hand-made sweeps (no training): (status, optimizer, lr) per trial, the note that
# index.html must show (or None), and the figures the report must draw.
EDGE_CASES = {
    "no trial reached": (
        [
            (TrialStatus.BUDGET, "adam", 1e-4),
            (TrialStatus.BUDGET, "adam", 1e-3),
            (TrialStatus.DIVERGED, "adam", 10.0),
            (TrialStatus.BUDGET, "gd", 1e-4),
            (TrialStatus.DIVERGED, "gd", 10.0),
        ],
        NO_TIMES + " (3 ran out of budget, 2 diverged), so there are no times to target to plot",
        ("valley", "success_map"),
    ),
    "every trial diverged": (
        [
            (TrialStatus.DIVERGED, "adam", 1.0),
            (TrialStatus.DIVERGED, "adam", 10.0),
            (TrialStatus.DIVERGED, "gd", 10.0),
        ],
        NO_TIMES + " (3 diverged)",
        ("valley", "success_map"),
    ),
    "a single LR": (
        [(TrialStatus.REACHED, "adam", 0.01), (TrialStatus.BUDGET, "gd", 0.01)],
        ONE_LR,
        (),
    ),
    "a single LR that nothing reached": (
        [(TrialStatus.BUDGET, "adam", 0.01)],
        NO_TIMES,
        (),
    ),
    "a single optimizer": (
        [
            (TrialStatus.REACHED, "adam", 0.01),
            (TrialStatus.REACHED, "adam", 0.1),
            (TrialStatus.DIVERGED, "adam", 10.0),
        ],
        None,
        ("valley", "envelope", "best_curves", "success_map"),
    ),
}


@pytest.mark.parametrize("case", list(EDGE_CASES))
def test_report_draws_what_it_can_and_says_what_it_left_out(case, tmp_path):
    rows, note, figures = EDGE_CASES[case]
    out = tmp_path / "hand"
    store = Store(str(out), grid_json={"name": "test"})
    for status, optimizer, lr in rows:
        store.write_trial(helpers.outcome(status, optimizer=optimizer, lr=lr))
    report = tmp_path / "report"
    result = CliRunner().invoke(app, ["report", str(out), "--out", str(report)])
    assert result.exit_code == 0, result.output
    page = (report / "index.html").read_text()
    if note is None:
        assert "class='note'" not in page
    else:
        assert note in page
    drawn = {p.stem for p in (report / "figures").glob("*.png")}
    assert drawn == set(figures)
    for name in figures:
        assert f"figures/{name}.png" in page
    cells = pd.read_csv(report / "tables" / "cells.csv")
    assert cells["n"].sum() == len(rows)
    if note is not None and note.startswith(NO_TIMES):
        assert cells["time_median_s"].isna().all()
        best = pd.read_csv(report / "tables" / "optimizers.csv")["best_lr"]
        assert best.isna().all()


@pytest.mark.slow
def test_a_real_sweep_where_everything_diverged_to_nan(write_grid, tmp_path):
    """Plain GD at absurd LRs: every loss turns NaN within an epoch. The report
    says so instead of crashing, and ``lr = { best }`` on it is one line."""
    from harness.grid.parse import load_grid
    from harness.sweep.driver import run_sweep

    grid = write_grid(
        """
        name = "all-nan"
        models = ["tiny_cnn"]
        optimizers = ["gd"]
        lr = [1e7]
        [stop]
        budget_s = 3600
        max_epochs = 1
        """
    )
    out = tmp_path / "sweep"
    run_sweep(ResolvedGrid.fixed(load_grid(grid)), str(out))
    curves = pd.read_parquet(out / "curves")
    assert curves["train_loss"].isna().any()
    report = tmp_path / "report"
    result = CliRunner().invoke(app, ["report", str(out), "--out", str(report)])
    assert result.exit_code == 0, result.output
    assert NO_TIMES + " (1 diverged)" in (report / "index.html").read_text()

    best = write_grid(
        f'models = ["tiny_cnn"]\noptimizers = ["gd"]\nlr = {{ best = "{out}" }}\n', "best.toml"
    )
    result = CliRunner().invoke(app, ["show", str(best)])
    lines = result.output.strip().splitlines()
    assert result.exit_code == 2 and len(lines) == 1, lines
    assert "lr.best: no optimizer of this grid succeeded in" in lines[0]


def test_a_sweep_of_error_rows_or_none_yet(tmp_path):
    out = tmp_path / "errors"
    store = Store(str(out), grid_json={"name": "test"})
    for lr in (0.01, 0.1):
        store.write_trial(helpers.outcome(TrialStatus.ERROR, optimizer="adam", lr=lr))
    result = CliRunner().invoke(app, ["report", str(out), "--out", str(tmp_path / "r")])
    assert result.exit_code == 0, result.output
    assert NO_TIMES + " (2 ended in error)" in (tmp_path / "r" / "index.html").read_text()

    empty = tmp_path / "empty"
    Store(str(empty)).open_sweep(
        ResolvedGrid.fixed(parse_grid(helpers.GRID, "test.toml")), {"host": "h"}
    )
    result = CliRunner().invoke(app, ["report", str(empty)])
    assert result.exit_code == 0, result.output
    assert result.output.startswith(f"{empty}: no trials stored yet; report: ")
    page = (empty / "report" / "index.html").read_text()
    assert "No trials stored yet. Sweep <code>test</code>" in page
    assert "still going, or stopped before its first trial finished" in page


@pytest.mark.slow
def test_a_resume_under_other_resources_is_refused_and_a_mixed_store_warned(write_grid, tmp_path):
    """Trial ids do not change with ``[resources]``: a resume with more CPUs is
    refused before it runs anything. A store that mixes them anyway (written
    by an older lrbench, or assembled from two sweeps) is reported as mixing
    conditions."""
    import shutil

    text = """
        name = "mixed"
        datasets = [{ name = "mnist5k", train_size = 500 }]
        models = ["tiny_cnn"]
        optimizers = ["gd"]
        lr = LRS
        [stop]
        budget_s = 3600
        max_epochs = 1
        [resources]
        cpus = CPUS
        """
    out, other, report = tmp_path / "sweep", tmp_path / "other", tmp_path / "report"
    grid = write_grid(text.replace("LRS", "[1e-6, 2e-6]").replace("CPUS", "1"))
    assert CliRunner().invoke(app, ["sweep", str(grid), "--out", str(out)]).exit_code == 0
    part = next((out / "trials").glob("part-*.parquet"))  # the finished sweep compacted
    pq.write_table(pq.read_table(part).slice(0, 1), part)  # one trial to run again
    grid = write_grid(text.replace("LRS", "[1e-6, 2e-6]").replace("CPUS", "2"))
    refused = CliRunner().invoke(app, ["sweep", str(grid), "--out", str(out)])
    assert refused.exit_code == 2, refused.output
    assert "resources.cpus: 2 per trial, but the 1 trials stored in" in refused.output
    assert len(pd.read_parquet(out / "trials")) == 1

    grid = write_grid(text.replace("LRS", "[2e-6]").replace("CPUS", "2"), name="other.toml")
    assert CliRunner().invoke(app, ["sweep", str(grid), "--out", str(other)]).exit_code == 0
    for folder in ("trials", "curves"):
        for path in (other / folder).glob("part-*.parquet"):
            shutil.copy(path, out / folder)
    trials = pd.read_parquet(out / "trials")
    assert sorted(trials.cpus) == [1.0, 2.0] and trials.data_fingerprint.nunique() == 1

    result = CliRunner().invoke(app, ["report", str(out), "--out", str(report)])
    assert result.exit_code == 0, result.output
    assert (
        "one sweep mixes trials run under different conditions (cpus)"
        in (report / "index.html").read_text()
    )
    conditions = pd.read_csv(report / "tables" / "conditions.csv")
    assert sorted(conditions.cpus) == [1.0, 2.0] and (conditions.trials == 1).all()
