"""Judging a night against its baseline, on synthetic histories (no training):
each night is committed to a real history dataset and read back."""

from __future__ import annotations

import pytest

from analysis.nightly.compare import FINDING_COLUMNS
from analysis.nightly.judge import Night, judge
from analysis.nightly.noise import Rules
from harness.errors import LrbenchError, ParamError, StoreError
from harness.store.history import History
from tests.helpers import CELLS, REACHED, commit_night, history_of, quiet, scaled


def test_a_clean_night_has_no_regression(tmp_path):
    tonight = scaled(CELLS, {REACHED[0]: 1.04, REACHED[1]: 0.97})
    verdict = judge(history_of(tmp_path, [*quiet(), tonight]).read())
    assert verdict.verdict == "clean"
    assert verdict.baseline == [f"run{d:02d}" for d in range(1, 6)]
    assert verdict.findings.empty
    assert "the median of 5 good nights (2026-11-01 .. 2026-11-05)" in verdict.note
    cell = verdict.cells.set_index(["optimizer", "lr"]).loc[("adam", 0.01)]
    assert cell["time_median_s_base"] == pytest.approx(2.0)
    assert cell["time_change"] == pytest.approx(0.04)


def test_a_slowdown_above_the_threshold_is_a_regression_of_that_cell(tmp_path):
    tonight = scaled(CELLS, {("gd", 0.1): 1.5})
    verdict = judge(history_of(tmp_path, [*quiet(), tonight]).read())
    assert verdict.verdict == "regression"
    (row,) = verdict.regressions.itertuples(index=False)
    assert (row.kind, row.series, row.lr) == ("time", "gd", 0.1)
    assert row.change == pytest.approx(0.5)
    # quiet history: the noise estimate is below the floor, so the floor is the threshold
    assert row.threshold == pytest.approx(Rules().floor_time)
    assert "gd at lr 0.1: time to target 4 s -> 6 s (+50%" in row.message


def test_a_slowdown_inside_the_noise_is_not_flagged_but_the_same_one_on_a_quiet_history_is(
    tmp_path,
):
    # +-30 % night-to-night on every cell: the estimated threshold rises above +35 %
    swings = [0.7, 1.3, 1.0, 0.75, 1.25, 1.0, 1.3]
    noisy = [
        scaled(CELLS, {key: swings[(night + i) % len(swings)] for i, key in enumerate(REACHED)})
        for night in range(len(swings))
    ]
    tonight = scaled(CELLS, {("gd", 0.1): 1.35})
    loud = judge(history_of(tmp_path / "noisy", [*noisy, tonight]).read())
    calm = judge(history_of(tmp_path / "quiet", [*quiet(7), tonight]).read())
    cell_noise = loud.noise.set_index(["metric", "scope"]).loc[("time", "cell")]
    assert cell_noise["samples"] == 7 * len(REACHED)
    assert cell_noise["up"] > 0.35
    assert loud.verdict == "clean"
    assert calm.verdict == "regression"
    assert list(calm.regressions["kind"]) == ["time"]


def test_a_status_flip_is_a_regression_and_narrows_the_band(tmp_path):
    tonight = dict(CELLS)
    tonight[("gd", 0.1)] = ("budget", 0.0, 200)  # the low edge of gd's band stops reaching
    tonight[("adam", 1e-5)] = ("reached", 9.0, 400)  # and adam's low LR starts reaching
    tonight[("adam", 100.0)] = ("budget", 0.0, 200)  # diverged -> budget: neither
    verdict = judge(history_of(tmp_path, [*quiet(3), tonight]).read())
    regressions = verdict.regressions.set_index("kind")
    assert set(regressions.index) == {"status", "band"}
    assert (
        "gd at lr 0.1: reached -> budget (baseline: reached in 3 of 3 trials)"
        in (regressions.loc["status", "message"])
    )
    assert regressions.loc["band", "before"] == "0.1 .. 0.3"
    assert regressions.loc["band", "after"] == "0.3 .. 0.3"
    improved = verdict.improvements.set_index("kind")
    assert improved.loc["status", "lr"] == 1e-5 and improved.loc["band", "series"] == "adam"
    changes = verdict.findings[verdict.findings["verdict"] == "change"]
    assert list(changes["message"]) == ["adam at lr 100: diverged -> budget (baseline: reached "
                                        "in 0 of 3 trials)"]  # fmt: skip


def test_the_first_night_has_no_baseline_and_no_regression(tmp_path):
    broken = {key: ("diverged", 0.0, 3) for key in CELLS}  # a bad first night
    verdict = judge(history_of(tmp_path, [broken]).read())
    assert verdict.verdict == "no baseline" and verdict.findings.empty
    assert "first night of grid 'test'" in verdict.note
    # a changed grid or a new device starts its own baseline too
    history = history_of(tmp_path / "h2", quiet(2))
    commit_night(history, "run03", broken, day=3, digest="g2")
    assert "first night of grid" in judge(history.read()).note
    commit_night(history, "run04", broken, day=4, device="gpu: H100")
    assert "first night on device 'gpu: H100'" in judge(history.read()).note


def test_incomplete_nights_stay_out_of_the_baseline_and_only_the_last_n_count(tmp_path):
    history = history_of(tmp_path, quiet(4))
    commit_night(history, "run05", scaled(CELLS, dict.fromkeys(REACHED, 3.0)), day=5,
                 complete=False)  # fmt: skip
    commit_night(history, "run06", CELLS, day=6)
    rules = Rules(baseline_nights=3)
    assert judge(history.read(), rules).baseline == ["run02", "run03", "run04"]
    # the incomplete night itself is still judged (and its slowdown flagged)
    slow = judge(history.read(), rules, "run05")
    assert slow.baseline == ["run02", "run03", "run04"] and slow.verdict == "regression"


def test_a_systematic_slowdown_below_each_cells_noise_is_caught_over_all_cells(tmp_path):
    # every cell swings by up to 30 % on its own, but each night's cells take every
    # value of the cycle once, so the nights' medians stay put
    cycle = [0.7, 0.9, 1.1, 1.3]
    nights = [
        scaled(CELLS, {key: cycle[(night + i) % 4] for i, key in enumerate(REACHED)})
        for night in range(4)
    ]
    tonight = scaled(CELLS, dict.fromkeys(REACHED, 1.3))  # everything 30 % slower
    verdict = judge(history_of(tmp_path, [*nights, tonight]).read())
    per_cell = verdict.regressions[verdict.regressions["series"] != "all cells"]
    assert per_cell.empty
    assert verdict.noise.set_index(["metric", "scope"]).loc[("time", "cell"), "up"] > 0.3
    (row,) = verdict.regressions.itertuples(index=False)
    assert row.series == "all cells" and row.kind == "time"
    assert row.change == pytest.approx(0.3)


def test_environment_changes_are_listed_per_night(tmp_path):
    history = history_of(tmp_path, quiet(2))
    commit_night(history, "run03", CELLS, day=3, versions={"tensorflow": "2.22.0"})
    env = judge(history.read()).env.set_index("key")
    assert list(env.columns) == ["run01", "run02", "run03"]
    assert list(env.loc["versions.tensorflow"]) == ["2.21.0", "2.21.0", "2.22.0"]


def test_a_corrupt_or_misplaced_partition_file_is_moved_aside_under_the_lock(tmp_path, capsys):
    history = history_of(tmp_path, quiet(2))
    root = tmp_path / "history" / "nights"
    (root / "date=2026-11-02" / "run99.parquet").write_bytes(b"PAR1 not parquet")
    (root / "run98.parquet").write_bytes(b"")
    assert set(history.read()["run_id"]) == {"run01", "run02"}
    assert not (tmp_path / "history" / "quarantine").exists()  # a reader moves nothing
    with history.locked("a night"):
        assert set(history.read()["run_id"]) == {"run01", "run02"}
    warnings = capsys.readouterr().err
    assert "run99.parquet: corrupt or unreadable Parquet" in warnings
    assert "run98.parquet: not where a history file belongs" in warnings
    moved = {p.name.split(".")[0] for p in (tmp_path / "history" / "quarantine").rglob("*.*")}
    assert moved == {"run98", "run99"}
    assert history.committed() == {"run01", "run02"}


def test_a_night_is_never_rewritten_and_bad_requests_are_one_line(tmp_path):
    history = history_of(tmp_path, quiet(1))
    with pytest.raises(StoreError, match="already committed"):
        commit_night(history, "run01", CELLS, day=1)
    with pytest.raises(ParamError, match="run_id: nope is not in the history") as bad_run:
        judge(history.read(), run_id="nope")
    assert bad_run.value.field == "run_id"
    with pytest.raises(LrbenchError, match="holds no nights yet"):
        judge(History(str(tmp_path / "empty")).read())


@pytest.mark.parametrize(
    ("rules", "field", "problem"),
    [
        (Rules(baseline_nights=0), "baseline_nights", "0 is not >= 1"),
        (Rules(k=-1.0), "k", "-1.0 is not >= 0"),
        (Rules(floor_seconds=float("nan")), "floor_seconds", "nan is not >= 0"),
        (Rules(min_success=0.0), "min_success", "0.0 is outside (0, 1]"),
    ],
)
def test_rules_out_of_range_name_the_field_not_a_cli_flag(rules, field, problem):
    with pytest.raises(ParamError) as bad:
        rules.check()
    assert (bad.value.field, bad.value.problem) == (field, problem)
    assert str(bad.value) == f"{field}: {problem}"
    Rules().check()  # the defaults are in range


def test_the_night_and_the_findings_are_typed_records(tmp_path):
    tonight = scaled(CELLS, {("gd", 0.1): 1.5})
    verdict = judge(history_of(tmp_path, [*quiet(2), tonight]).read())
    night = verdict.night
    assert isinstance(night, Night) and night.run_id == "run03" and night.complete
    assert night.counts() == {"reached": 4, "budget": 2, "diverged": 2, "error": 0}
    assert list(verdict.nights["run_id"]) == ["run01", "run02", "run03"]
    assert list(verdict.findings.columns) == FINDING_COLUMNS
    assert FINDING_COLUMNS[:4] == ["kind", "verdict", "series", "lr"]


def test_a_sub_second_cell_must_also_move_by_more_than_floor_seconds(tmp_path):
    fast = {**CELLS, ("adam", 0.03): ("reached", 0.4, 60)}
    tonight = scaled(fast, {("adam", 0.03): 1.5})  # +50 %, but only 0.2 s
    history = history_of(tmp_path, [fast, fast, fast, tonight])
    assert judge(history.read()).verdict == "clean"
    strict = judge(history.read(), Rules(floor_seconds=0.1))
    assert strict.regressions[["kind", "lr"]].values.tolist() == [["time", 0.03]]


def _edge(night, reached=True):
    """A night whose gd at 0.3 (the band's upper edge) reached, or ran out of budget."""
    cells = dict(night)
    if not reached:
        cells[("gd", 0.3)] = ("budget", 0.0, 200)
    return cells


def test_a_cell_that_flips_in_the_history_is_a_change_not_a_regression(tmp_path):
    """A cell at its band's edge reaches on some nights and not on others: its
    flip tonight is judged against that flip rate, not flagged."""
    flaky = [_edge(n, reached=i % 3 != 1) for i, n in enumerate(quiet(6))]  # 2 of 6 flip
    tonight = _edge(CELLS, reached=False)
    verdict = judge(history_of(tmp_path / "flaky", [*flaky, tonight]).read())
    assert verdict.verdict == "clean", verdict.regressions
    changes = verdict.findings[verdict.findings["verdict"] == "change"]
    assert set(changes["kind"]) == {"status", "band"}
    assert "flipped on 33% of the baseline nights" in changes["message"].str.cat()

    steady = judge(history_of(tmp_path / "steady", [*quiet(6), tonight]).read())
    assert steady.verdict == "regression"
    assert set(steady.regressions["kind"]) == {"status", "band"}


def test_a_device_class_joins_nights_whose_device_strings_differ(tmp_path):
    """CI runners' CPU models vary: by device string, tonight has no baseline;
    under one device class, it is judged."""
    history = History(str(tmp_path / "history"))
    for day, cells in enumerate(quiet(5), 1):
        model = "cpu: Xeon 8370C" if day % 2 else "cpu: EPYC 7763"
        commit_night(history, f"run{day:02d}", cells, day=day, device=model)
    commit_night(history, "run06", CELLS, day=6, device="cpu: Xeon 8272CL")
    assert judge(history.read()).verdict == "no baseline"

    classed = History(str(tmp_path / "classed"))
    for day, cells in enumerate([*quiet(5), CELLS], 1):
        model = "cpu: Xeon 8370C" if day % 2 else "cpu: EPYC 7763"
        commit_night(classed, f"run{day:02d}", cells, day=day, device=model, device_class="ci")
    verdict = judge(classed.read())
    assert verdict.verdict == "clean" and len(verdict.baseline) == 5
    assert verdict.night.device == "ci"
