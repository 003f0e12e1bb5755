"""``lr = { finder = DIR, rule, decades, num }``: ladders around range-test
suggestions (stored by hand, then for real), and the report's confirmation."""

from __future__ import annotations

import json
import math
from dataclasses import asdict
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

from analysis.finder import suggest as F
from analysis.finder.finder_lrs import confirm_table
from harness.errors import GridError
from harness.grid.parse import load_grid
from harness.grid.specs import FinderParams, FinderSpec, FromFinder
from harness.store.records import FinderOutcome, FinderPoint, Manifest
from harness.store.results import Store
from lrbench.cli import app
from lrbench.compose import prepare_grid
from tests import helpers

runner = CliRunner()
LR = 10 ** np.linspace(-7, 1, 161)  # x = log10 lr steps by 0.05


def curve() -> np.ndarray:
    """Falls to its minimum at LR 0.1 (x = -1), then rises: min/10 suggests 0.01."""
    x = np.log10(LR)
    return np.where(x <= -1 + 1e-9, 2.3 - 0.1 * (x + 7), 1.7 + (x + 1) ** 2)


def store_range_test(out, optimizer: str = "adam", n: int = len(LR), **changes) -> None:
    """One range test of the tests' setup (tiny_cnn, mnist5k), made by hand."""
    params = FinderParams(start_lr=1e-7, end_lr=10.0, num_steps=len(LR))
    setup = {**asdict(helpers.BASE.setup()), "optimizer": optimizer, **changes}
    spec = FinderSpec(**setup, params=params)
    loss = curve()
    points = [FinderPoint(i + 1, LR[i], loss[i], loss[i]) for i in range(n)]
    outcome = FinderOutcome(
        spec, points, "end" if n == len(LR) else "diverged", 3300, "2026-11-22T10:00:00+00:00", 1.0
    )
    Store(str(out)).write_finder(outcome)


def grid(write_grid, results, rule: str = "min/10", extra: str = "", head: str = "") -> Path:
    return write_grid(
        f"""
        name = "confirm"
        models = ["tiny_cnn"]
        optimizers = ["adam", "gd"]
        lr = {{ finder = "{results}", rule = "{rule}"{extra} }}
        {head}
        """
    )


def test_each_optimizer_gets_a_ladder_centred_on_its_suggestion(tmp_path, write_grid):
    results = tmp_path / "res"
    store_range_test(results, "adam")
    store_range_test(results, "gd")
    spec = prepare_grid(grid(write_grid, results, extra=", decades = 2, num = 5"))
    assert helpers.stored_and_read_back(spec).suggested == spec.suggested
    adam = next(s for s in spec.suggested if s.optimizer == "adam")
    assert adam.suggested_lr == pytest.approx(0.01) and adam.rule == "min/10"
    assert adam.lrs == (0.001, 0.00316228, 0.01, 0.0316228, 0.1)
    trials = spec.expand()
    assert len(trials) == 10 and spec.spec.trial_count() == 10
    assert {t.lr_source for t in trials} == {f"{results} finder min/10 (suggested 0.01)"}
    data = spec.to_json()  # the manifest keeps the rule, the suggestion and the ladder
    assert data["finder_lr"]["rule"] == "min/10" and data["suggested_lrs"][0]["lrs"] == adam.lrs
    # an even count straddles the suggestion; one LR is the suggestion itself
    even = prepare_grid(grid(write_grid, results, extra=", decades = 1, num = 4"))
    lrs = even.suggested[0].lrs
    assert len(lrs) == 4 and math.sqrt(lrs[1] * lrs[2]) == pytest.approx(0.01, rel=1e-5)
    assert math.log10(lrs[-1] / lrs[0]) == pytest.approx(1.0, abs=1e-5)
    one = prepare_grid(grid(write_grid, results, extra=", num = 1"))
    assert one.suggested[0].lrs == (0.01,)


def test_other_grids_keep_their_json_and_the_dir_is_relative_to_the_cwd(
    tmp_path, write_grid, monkeypatch
):
    plain = prepare_grid(write_grid('models = ["tiny_cnn"]\noptimizers = ["adam"]\nlr = [0.1]\n'))
    assert "finder_lr" not in plain.to_json() and "suggested_lrs" not in plain.to_json()
    store_range_test(tmp_path / "res", "adam")
    store_range_test(tmp_path / "res", "gd")
    monkeypatch.chdir(tmp_path)
    path = grid(write_grid, "res")
    assert prepare_grid(path).spec.lr == FromFinder("res", "min/10")
    result = runner.invoke(app, ["show", str(path), "--no-build"])  # the ladders: no model built
    assert result.exit_code == 0, result.output
    assert "adam: min/10 suggests 0.01; 0.00177828, " in result.output


def one_error(result, *parts: str) -> None:
    lines = result.output.strip().splitlines()
    assert result.exit_code == 2, result.output
    assert len(lines) == 1 and lines[0].startswith("error: "), lines
    for part in parts:
        assert part in lines[0], lines[0]


def test_what_the_range_tests_cannot_give_is_one_line(tmp_path, write_grid):
    results = tmp_path / "res"
    show = ["show"]
    one_error(
        runner.invoke(app, [*show, str(grid(write_grid, results))]),
        "lr.finder: ",
        "res: no such results directory",
    )
    results.mkdir()
    one_error(
        runner.invoke(app, [*show, str(grid(write_grid, results))]),
        "lr.finder: ",
        "no LR range tests stored",
    )
    store_range_test(results, "adam")
    path = grid(write_grid, results)
    one_error(
        runner.invoke(app, [*show, str(path)]),
        "lr.finder: ",
        "has no range test of gd on this grid's setup",
        f"run `lrbench find-lr {path} --out {results}`",
    )
    store_range_test(results, "gd", n=20)  # stopped early: fastai skips 16, then 5 more
    one_error(
        runner.invoke(app, [*show, str(grid(write_grid, results, rule="fastai-valley"))]),
        "lr.rule: fastai-valley gives no suggestion for gd",
        "stopped (diverged) after 20 steps",
    )
    store_range_test(results, "adam", seed=7)
    one_error(
        runner.invoke(app, [*show, str(grid(write_grid, results))]),
        "lr.finder: ",
        "has 2 range tests of adam on this grid's setup (seed 0, ",
    )
    wide = grid(write_grid, results, head="batch_size = [50, 100]")
    with pytest.raises(GridError, match=r"2 setups per optimizer \(several batch sizes\)"):
        prepare_grid(wide)


def test_find_lr_on_a_finder_grid_runs_its_range_tests_instead_of_reading_them(
    tmp_path, write_grid
):
    """The confirming grid can seed itself: find-lr reads the grid's declaration
    (``load_grid``), it does not resolve its ladders."""
    from harness.trial.range_test import finder_runs

    spec = load_grid(grid(write_grid, tmp_path / "nothing-yet"))
    assert isinstance(spec.lr, FromFinder) and spec.trial_count() == 2 * 9
    assert [r.optimizer for r in finder_runs(spec, FinderParams())] == ["adam", "gd"]


def test_a_sweep_grows_by_optimizers_but_its_ladders_stay_as_they_were(tmp_path, write_grid):
    from harness.grid.growth import compare

    results = tmp_path / "res"
    for opt in ("adam", "gd", "rmsprop"):
        store_range_test(results, opt)
    path = grid(write_grid, results, extra=", num = 3")
    stored = prepare_grid(path).to_json()
    more = write_grid(path.read_text().replace('"gd"]', '"gd", "rmsprop"]'), "more.toml")
    grown = compare(stored, prepare_grid(more))
    assert grown.grows and [v["optimizer"] for v in grown.added["lrs"]] == ["rmsprop"] * 3
    wider = compare(stored, prepare_grid(grid(write_grid, results, extra=", num = 5")))
    assert wider.problem.startswith("lr.finder (the range tests' directory, rule, decades or num)")
    moved = json.loads(json.dumps(stored))  # as stored before the range tests changed
    moved["suggested_lrs"][0]["lrs"] = [0.002, 0.02, 0.2]
    same = prepare_grid(grid(write_grid, results, extra=", num = 3"))
    assert compare(moved, same).problem.startswith("lrs: drops")


def test_confirm_table_sets_each_suggestion_against_its_ladders_best():
    trials = helpers.trials(
        [
            ("adam", 0.001, "budget", None, None),
            ("adam", 0.00316228, "reached", 3.0, 90),
            ("adam", 0.01, "reached", 2.0, 60),
            ("adam", 0.0316228, "reached", 1.0, 30),  # the best
            ("adam", 0.1, "diverged", None, None),
            ("gd", 0.1, "budget", None, None),
            ("gd", 0.3, "reached", 4.0, 120),  # the best, at the ladder's top
        ]
    )
    ladders = [
        ("adam", 0.01, [0.001, 0.00316228, 0.01, 0.0316228, 0.1]),
        ("gd", 0.17, [0.1, 0.3]),
        ("rmsprop", 0.001, [0.0001, 0.001, 0.01]),  # not run yet
    ]
    grid_json = {
        "finder_lr": {"results": "r", "rule": "min/10", "decades": 2.0, "num": 5},
        "suggested_lrs": [
            {
                "optimizer": o,
                "optimizer_kwargs": {},
                "rule": "min/10",
                "suggested_lr": s,
                "finder_id": "f",
                "lrs": lrs,
            }
            for o, s, lrs in ladders
        ],  # fmt: skip
    }
    manifest = Manifest.from_json({"grid": grid_json})
    table = confirm_table(trials, {"hand": manifest}, 0.5).set_index("optimizer")
    assert list(table.index) == ["adam", "gd", "rmsprop"]
    adam, gd, rms = table.loc["adam"], table.loc["gd"], table.loc["rmsprop"]
    assert adam["best_lr"] == 0.0316228
    assert adam["decades_from_best"] == pytest.approx(math.log10(0.01 / 0.0316228))
    assert adam["suggested_outcome"] == "reached" and adam["suggested_success_rate"] == 1.0
    assert not adam["best_at_edge"] and (adam["ladder_low"], adam["ladder_num"]) == (0.001, 5)
    assert gd["best_at_edge"] and gd["suggested_outcome"] == ""  # 0.17 is not on its ladder
    assert rms["trials"] == 0 and pd.isna(rms["best_lr"])
    assert confirm_table(trials, {"hand": Manifest.from_json({"grid": {"lrs": [0.1]}})}, 0.5).empty


# ---------------------------------------------------------------- for real ---

SEED_GRID = """
name = "seed"
datasets = [{ name = "mnist5k", train_size = 2000 }]
models = ["tiny_cnn"]
optimizers = ["gd", "adam"]
lr = [0.01]
[stop]
target = 0.5
window = 20
budget_s = 3600
max_epochs = 3
"""


@pytest.fixture(scope="module")
def range_tests(tmp_path_factory):
    """Real range tests (60 updates each) of two optimizers on 2,000 MNIST images."""
    base = tmp_path_factory.mktemp("finderlr")
    seed = base / "seed.toml"
    seed.write_text(SEED_GRID)
    out = base / "range-tests"
    args = ["find-lr", str(seed), "--out", str(out), "--steps", "60", "--start", "1e-4"]
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    return base, out


def confirm_grid(base, out, rule: str, decades: float, num: int):
    path = base / f"confirm-{num}.toml"
    head = SEED_GRID.replace('name = "seed"', 'name = "confirm"')
    path.write_text(
        head.replace(
            "lr = [0.01]",
            f'lr = {{ finder = "{out}", rule = "{rule}", decades = {decades}, num = {num} }}',
        )
    )
    return path


@pytest.mark.slow
def test_show_gives_each_optimizer_its_ladder_around_the_real_suggestion(range_tests):
    base, out = range_tests
    path = confirm_grid(base, out, "longest-descent", 1.5, 7)
    result = runner.invoke(app, ["show", str(path), "--no-build"])  # the ladders: grid lines
    assert result.exit_code == 0, result.output
    found = F.suggestions(Store(str(out)).read_finder()).set_index(["optimizer", "rule"])
    for opt in ("gd", "adam"):
        line = next(x for x in result.output.splitlines() if x.strip().startswith(f"{opt}: "))
        shown, ladder = line.split(";", 1)
        suggested = found.loc[(opt, "longest-descent"), "suggested_lr"]
        assert f"longest-descent suggests {suggested:.3g}" in shown
        lrs = [float(v) for v in ladder.split(",")]
        assert len(lrs) == 7 and lrs == sorted(lrs)
        assert lrs[3] == pytest.approx(suggested, rel=1e-5)  # the middle one
        assert math.log10(lrs[-1] / lrs[0]) == pytest.approx(1.5, abs=1e-5)
    assert "trials      14" in result.output


@pytest.mark.slow
def test_a_confirming_sweep_reports_each_suggestion_against_its_best(range_tests):
    base, out = range_tests
    path = confirm_grid(base, out, "fastai-valley", 1.0, 3)
    results = base / "confirmed"
    swept = runner.invoke(app, ["sweep", str(path), "--out", str(results)])
    assert swept.exit_code == 0, swept.output
    reported = runner.invoke(app, ["report", str(results)])
    assert reported.exit_code == 0, reported.output
    assert "LR range test, confirmed" in reported.output
    report = results / "report"
    table = pd.read_csv(report / "tables" / "finder_confirm.csv").set_index("optimizer")
    assert sorted(table.index) == ["adam", "gd"] and set(table["rule"]) == {"fastai-valley"}
    found = F.suggestions(Store(str(out)).read_finder()).set_index(["optimizer", "rule"])
    trials = Store(str(results)).read_trials()
    for opt, row in table.iterrows():
        assert row["suggested_lr"] == pytest.approx(
            found.loc[(opt, "fastai-valley"), "suggested_lr"]
        )
        assert row["trials"] == 3 and row["ladder_num"] == 3
        mine = trials[trials["optimizer"] == opt]
        assert set(mine["lr_source"]) == {
            f"{out} finder fastai-valley (suggested {row['suggested_lr']:.3g})"
        }
        if not math.isnan(row["best_lr"]):
            assert row["best_lr"] in set(mine["lr"])
            expected = math.log10(row["suggested_lr"] / row["best_lr"])
            assert row["decades_from_best"] == pytest.approx(expected)
        middle = mine[np.isclose(mine["lr"], row["suggested_lr"], rtol=1e-5)]
        assert row["suggested_outcome"] == middle["status"].iloc[0]  # one seed: its status
    assert "Range-test suggestions, confirmed" in (report / "index.html").read_text()
