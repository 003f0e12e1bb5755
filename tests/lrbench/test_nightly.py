"""``lrbench nightly``: real nights on the bundled data, re-judging a synthetic
history, and bad input."""

from __future__ import annotations

import json
import shutil

import pytest
from typer.testing import CliRunner

from analysis.nightly.judge import judge
from harness.store.history import History
from lrbench.cli import app
from lrbench.cli.nightly_cmd import new_spelling
from tests.helpers import CELLS, REACHED, commit_night, history_of, quiet, scaled

runner = CliRunner()

# Cells far from their band's edges, so every night has the same outcomes. Epochs end
# the trials, not the clock: on these 1,000 images (10 steps an epoch) adam at 0.01
# reaches 0.8 in about 6 epochs; gd at 0.01 is near 0.3 after 30.
TINY = """
name = "tiny-nightly"
datasets = [{ name = "mnist5k", train_size = 1000 }]
models = ["tiny_cnn"]
optimizers = ["adam", "gd"]
lr = [1e-5, 0.01, 100.0]
[stop]
target = 0.8
budget_s = 3600
max_epochs = 20
"""


def error_line(result) -> str:
    assert result.exit_code == 2, result.output
    lines = result.output.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), result.output
    return lines[0]


@pytest.mark.slow
def test_two_real_nights_then_a_resumed_one(write_grid, tmp_path):
    grid, root = write_grid(TINY), tmp_path / "history"
    summary = tmp_path / "summary.md"
    # timing noise is not under test here: only the status of these robust cells
    loose = ["--floor-time", "10", "--floor-steps", "10", "--summary", str(summary)]
    args = [
        "nightly", "run", str(grid), "--history", str(root), "--revision", "rev-under-test",
        "--device-class", "test-box", *loose,
    ]  # fmt: skip

    first = runner.invoke(app, args)
    assert first.exit_code == 0, first.output
    assert "no baseline (nothing judged)" in first.output
    assert "first night of grid 'tiny-nightly'" in first.output

    second = runner.invoke(app, args)
    assert second.exit_code == 0, second.output
    assert ": clean" in second.output

    history = History(str(root)).read()
    runs = list(dict.fromkeys(history.sort_values("run_started_at")["run_id"]))
    assert len(runs) == 2 and len(history) == 2 * 6
    assert history["complete"].all() and set(history["revision"]) == {"rev-under-test"}
    # two runs, two files, each in the partition of its UTC start date (the same
    # one, unless midnight fell between them)
    for run_id, rows in history.groupby("run_id"):
        started = rows["run_started_at"].iloc[0].tz_convert("UTC").date().isoformat()
        assert set(rows["date"]) == {started}
        assert (root / "nights" / f"date={started}" / f"{run_id}.parquet").exists()
    assert len(list((root / "nights").glob("date=*/*.parquet"))) == 2
    env = json.loads(history["env"].iloc[0])
    assert env["versions"]["tensorflow"] and env["device"].startswith("cpu")
    assert env["device_class"] == "test-box"
    assert len(env["data"]["mnist5k"]) == 16

    verdict = judge(history)
    assert verdict.night.run_id == runs[1] and verdict.baseline == [runs[0]]
    first_night = history[history["run_id"] == runs[0]].set_index(["optimizer", "lr"])
    adam = verdict.cells.set_index(["optimizer", "lr"]).loc[("adam", 0.01)]
    assert adam["outcome_base"] == adam["outcome"] == "reached"
    assert adam["time_median_s_base"] == first_night.loc[("adam", 0.01), "time_to_target_s"]
    assert set(verdict.cells["outcome_base"]) == {"reached", "budget", "diverged"}

    report = root / "report"
    for name in ("index.html", "summary.md", "trend.png", "trend.svg", "tables/findings.csv"):
        assert (report / name).stat().st_size > 0, name
    assert summary.read_text().count("## lrbench nightly: tiny-nightly") == 2

    # an interrupted run of today: the same command resumes it and repeats no trial
    pending = "20990101T000000Z-abcdef"
    shutil.copytree(root / "runs" / runs[1], root / "runs" / pending)
    info = json.loads((root / "runs" / runs[1] / "nightly.json").read_text())
    info["run_id"] = pending
    (root / "runs" / pending / "nightly.json").write_text(json.dumps(info))
    # one interrupted on an earlier date is left alone, and said so
    stale = "20260101T000000Z-000000"
    (root / "runs" / stale).mkdir()
    (root / "runs" / stale / "nightly.json").write_text(
        json.dumps({**info, "run_id": stale, "date": "2026-01-01"})
    )
    third = runner.invoke(app, [*args, "--keep-runs", "1"])
    assert third.exit_code == 0, third.output
    assert f"night {pending} (resumed): 6 trials (0 run now)" in third.output
    assert f"note: run {stale} was interrupted on another date" in third.output
    assert History(str(root)).committed() == {*runs, pending}
    # --keep-runs 1: only the newest night keeps its curves; the history keeps every row
    assert sorted(p.name for p in (root / "runs").iterdir()) == [stale, pending]
    assert len(History(str(root)).read()) == 3 * 6


def test_compare_only_exits_1_on_a_regression_and_0_when_clean(tmp_path):
    history = history_of(tmp_path, [*quiet(3), scaled(CELLS, {("gd", 0.1): 2.0})])
    summary = tmp_path / "summary.md"
    base = ["nightly", "judge", "--history", history.out]
    result = runner.invoke(app, [*base, "--summary", str(summary)])
    assert result.exit_code == 1, result.output
    assert "REGRESSION: 1 regression" in result.output
    assert "| time   | gd       |  0.1 | 4 s        | 8 s       | +100%    | +20%" in result.output
    assert summary.read_text() == result.output
    assert (tmp_path / "history" / "report" / "index.html").exists()
    # the night before was clean; a looser floor forgives tonight
    assert runner.invoke(app, [*base, "--run", "run03"]).exit_code == 0
    assert runner.invoke(app, [*base, "--floor-time", "1.5"]).exit_code == 0


def test_bad_nightly_requests_are_one_line(tmp_path):
    root = str(tmp_path / "h")
    cases = {
        ("judge",): "the history holds no nights yet",
        ("judge", "--baseline-nights", "0"): "--baseline-nights: 0 is not >= 1",
        ("judge", "--k", "-1"): "--k: -1.0 is not >= 0",
        ("run", str(tmp_path / "none.toml")): "none.toml: cannot read grid file",
    }
    for extra, message in cases.items():
        result = runner.invoke(app, ["nightly", *extra, "--history", root])
        assert message in error_line(result), extra
    history = history_of(tmp_path, quiet(1))
    commit_night(history, "run02", CELLS, day=2)
    bad = tmp_path / "history" / "nights" / "date=2026-11-02" / "run02.parquet"
    bad.write_bytes(b"not parquet at all")
    result = runner.invoke(app, ["nightly", "judge", "--history", history.out])
    # a corrupt night is said in one line, and the rest is judged; a judgement
    # only reads, so the file stays where it is
    assert result.exit_code == 0, result.output
    assert f"warning: {bad}: corrupt or unreadable Parquet" in result.output
    assert "skipped, and left in place" in result.output
    assert "Night `run01`" in result.output and bad.exists()


def test_the_shipped_nightly_grid_and_schedules():
    import subprocess
    from pathlib import Path

    import yaml

    from harness.grid.parse import load_grid

    grid = load_grid("grids/nightly.toml")
    optimizers = {o.name for o in grid.optimizers}
    assert optimizers == {"gd", "momentum", "adam", "adagrad", "adadelta", "rmsprop"}
    lrs = grid.lr.lrs
    assert min(lrs) <= 1e-5 and max(lrs) >= 100 and len(lrs) >= 3

    workflow = yaml.safe_load(Path(".github/workflows/nightly.yml").read_text())
    triggers = workflow.get("on", workflow.get(True))  # YAML 1.1 reads a bare `on` as True
    assert triggers["schedule"][0]["cron"]
    steps = workflow["jobs"]["nightly"]["steps"]
    runs = " ".join(step.get("run", "") for step in steps)
    assert "lrbench nightly run grids/nightly.toml" in runs and "$GITHUB_STEP_SUMMARY" in runs
    uploads = {
        s["with"]["name"]: s.get("if", "")
        for s in steps
        if str(s.get("uses", "")).startswith("actions/upload-artifact")
    }
    # the history: only after a good download and a completed night (0 clean, 1
    # regression), only on the default branch; the report: always
    history_if = uploads["${{ env.ARTIFACT }}"]
    assert "steps.fetch.outcome == 'success'" in history_if
    assert "steps.night.outputs.code == '1'" in history_if and "default_branch" in history_if
    assert uploads["lrbench-nightly-report"] == "always()"
    assert "--device-class" in runs and "head_branch" in runs
    # pip's downloads cached; the runtime installed at the tested versions, no dev tools
    setup = next(s for s in steps if str(s.get("uses", "")).startswith("actions/setup-python"))
    assert (
        setup["with"]["cache"] == "pip"
        and "constraints.txt" in setup["with"]["cache-dependency-path"]
    )
    assert "pip install --quiet -c constraints.txt ." in runs and "[dev]" not in runs

    script = Path("scheduling/nightly.sh")
    assert subprocess.run(["bash", "-n", str(script)], check=False).returncode == 0
    assert "lrbench nightly run" in script.read_text()


def test_regressed_nights_stay_out_of_the_baseline_until_accepted(tmp_path):
    """Six nights three times slower after five quiet ones (a full baseline of
    five): each is a regression, however many follow, since regressions do not
    join the baseline; accepting the first of them starts a new baseline, and
    the latest is clean again."""
    slow = scaled(CELLS, dict.fromkeys(REACHED, 3.0))
    history = history_of(tmp_path, [*quiet(5), *[slow] * 6])
    judge_again = ["nightly", "judge", "--history", history.out, "--baseline-nights", "5"]
    judged = runner.invoke(app, judge_again)
    assert judged.exit_code == 1, judged.output
    assert "5 earlier nights judged a regression left out" in judged.output

    bad = runner.invoke(app, ["nightly", "accept", "run99", "--history", history.out])
    assert bad.exit_code == 2 and "RUN_ID: run99 is not in the history" in bad.output
    accepted = runner.invoke(app, ["nightly", "accept", "run06", "--history", history.out])
    assert accepted.exit_code == 0 and "accepted run06" in accepted.output
    judged = runner.invoke(app, judge_again)
    assert judged.exit_code == 0, judged.output
    assert "the median of 5 good nights" in judged.output and "left out" not in judged.output


def test_the_earlier_spelling_still_works_with_a_one_line_notice(tmp_path):
    """``lrbench nightly GRID``, ``--compare-only`` and ``--accept RUN_ID`` (the
    single command of earlier releases) run the subcommand they now are, and
    say so in one line."""
    history = history_of(tmp_path, [*quiet(3), scaled(CELLS, {("gd", 0.1): 2.0})])
    old = runner.invoke(app, ["nightly", "--history", history.out, "--compare-only"])
    new = runner.invoke(app, ["nightly", "judge", "--history", history.out])
    assert old.exit_code == new.exit_code == 1
    notice = f"note: `lrbench nightly --history {history.out} --compare-only` is now "
    notice += f"`lrbench nightly judge --history {history.out}`; the old spelling goes"
    assert old.output.startswith(notice)
    assert old.output.split("\n", 1)[1] == new.output
    accepted = runner.invoke(app, ["nightly", "--history", history.out, "--accept=run04"])
    assert accepted.exit_code == 0 and "accepted run04" in accepted.output
    assert "is now `lrbench nightly accept run04 --history" in accepted.output
    missing = runner.invoke(app, ["nightly", str(tmp_path / "none.toml"), "--history", history.out])
    assert missing.exit_code == 2
    assert (
        "is now `lrbench nightly run " in missing.output
        and "cannot read grid file" in missing.output
    )
    assert [new_spelling(a) for a in (["judge"], ["--help"], [])] == [["judge"], ["--help"], []]
    assert new_spelling(["--accept", "r1", "--history", "h"]) == ["accept", "r1", "--history", "h"]
    assert new_spelling(["g.toml", "--no-compare-only"]) == ["run", "g.toml"]
    assert new_spelling(["--history", "h", "judge"]) == ["--history", "h", "judge"]


def test_run_and_judge_take_the_same_judging_options():
    """Both commands get the rules' options from one declaration (``judging``)."""
    from lrbench.cli.nightly_cmd import RULE_OPTIONS

    for command in ("run", "judge"):
        shown = runner.invoke(app, ["nightly", command, "--help"], env={"COLUMNS": "200"})
        assert shown.exit_code == 0, shown.output
        for name, (_, default, _) in RULE_OPTIONS.items():
            option = f"--{name.replace('_', '-')}"
            assert option in shown.output and f"[default: {default}]" in shown.output, option
