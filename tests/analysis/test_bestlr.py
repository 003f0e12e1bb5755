"""``lr = { best = DIR }``: LRs chosen from an earlier sweep's results (made by hand)."""

from __future__ import annotations

import json
from dataclasses import replace

import pytest

from harness.errors import GridError
from harness.store.records import TrialStatus
from harness.store.results import Store
from lrbench.compose import prepare_grid
from tests import helpers

R, B = TrialStatus.REACHED, TrialStatus.BUDGET


def source(tmp_path, trials: list[tuple]) -> str:
    """An earlier sweep's results: (optimizer, lr, status, time_s, steps[, seed])."""
    out = tmp_path / "source"
    store = Store(str(out), grid_json={"name": "source"})
    for optimizer, lr, status, time_s, steps, *seed in trials:
        store.write_trial(
            helpers.outcome(
                status, time_s=time_s, steps=steps, optimizer=optimizer, lr=lr,
                seed=seed[0] if seed else 0,
            )
        )  # fmt: skip
    return str(out)


def grid(write_grid, results: str, optimizers: str = '["adam", "gd"]', extra: str = "") -> str:
    return write_grid(
        f"""
        name = "scaling"
        models = [{{ name = "tiny_cnn", widths = [1, 2] }}]
        optimizers = {optimizers}
        lr = {{ best = "{results}"{extra} }}
        """
    )


def chosen(spec) -> dict[str, list[float]]:
    out: dict[str, list[float]] = {}
    for choice in spec.lrs:
        out.setdefault(choice.optimizer.name, []).append(choice.lr)
    return out


def test_fastest_median_time_wins_and_ties_go_to_fewer_steps_then_lower_lr(tmp_path, write_grid):
    results = source(
        tmp_path,
        [
            ("adam", 0.001, R, 2.0, 100),
            ("adam", 0.01, R, 1.0, 60),
            ("adam", 0.1, R, 1.0, 50),  # same time, fewer steps: wins
            ("gd", 0.1, R, 3.0, 90),
            ("gd", 0.3, R, 3.0, 90),  # a full tie: the lower LR wins
            ("gd", 1.0, B, 0.0, 500),
        ],
    )
    spec = prepare_grid(grid(write_grid, results))
    assert chosen(spec) == {"adam": [0.1], "gd": [0.1]}
    trials = spec.expand()
    assert len(trials) == 4 and {t.width for t in trials} == {1.0, 2.0}
    assert all(t.lr_source.startswith(f"{results} best 1/1") for t in trials)
    top2 = prepare_grid(grid(write_grid, results, extra=", top_k = 2"))
    assert chosen(top2) == {"adam": [0.1, 0.01], "gd": [0.1, 0.3]}
    assert [c.rank for c in top2.chosen if c.optimizer == "adam"] == [1, 2]


def test_the_choice_is_recorded_in_the_grid_json_and_leaves_trial_ids_alone(tmp_path, write_grid):
    results = source(tmp_path, [("adam", 0.01, R, 1.0, 60)])
    spec = prepare_grid(grid(write_grid, results, optimizers='["adam"]'))
    data = json.loads(json.dumps(spec.to_json(), default=str))
    assert data["best_lr"]["results"] == results
    assert data["chosen_lrs"][0]["lr"] == 0.01 and data["chosen_lrs"][0]["time_s"] == 1.0
    trial = spec.expand()[0]
    assert trial.lr_source != "grid"  # the provenance is recorded ...
    assert trial.trial_id == replace(trial, lr_source="grid").trial_id  # ... but not hashed


def test_an_optimizer_without_success_is_skipped_with_a_reason(tmp_path, write_grid):
    results = source(
        tmp_path, [("adam", 0.01, R, 1.0, 60), ("gd", 0.01, B, 0.0, 500), ("gd", 1.0, B, 0.0, 9)]
    )
    spec = prepare_grid(grid(write_grid, results, optimizers='["adam", "gd", "rmsprop"]'))
    assert chosen(spec) == {"adam": [0.01]}
    assert [(s.optimizer, s.reason, s.trials, s.reached) for s in spec.skipped] == [
        ("gd", "no_success", 2, 0),
        ("rmsprop", "absent", 0, 0),
    ]
    assert [s.text for s in spec.skipped] == [
        f"gd: none of its 2 trials in {results} reached the target",
        f"rmsprop: not in {results}",
    ]
    assert {t.optimizer for t in spec.expand()} == {"adam"}
    back = helpers.stored_and_read_back(spec)  # the chosen LRs and the skipped lines kept
    assert back.chosen == spec.chosen
    assert [s.text for s in back.skipped] == [s.text for s in spec.skipped]


def test_no_optimizer_left_is_a_grid_error(tmp_path, write_grid):
    results = source(tmp_path, [("gd", 0.01, B, 0.0, 500)])
    path = grid(write_grid, results, optimizers='["gd"]')
    match = r"lr\.best: no optimizer of this grid succeeded in .*: none has a learning rate"
    with pytest.raises(GridError, match=match):
        prepare_grid(path)


def test_several_seeds_use_the_median_and_the_success_share(tmp_path, write_grid):
    results = source(
        tmp_path,
        [
            ("adam", 0.1, R, 0.5, 30, 0),  # one fast seed of three: a minority success
            ("adam", 0.1, B, 0.0, 500, 1),
            ("adam", 0.1, B, 0.0, 500, 2),
            ("adam", 0.01, R, 1.0, 60, 0),
            ("adam", 0.01, R, 3.0, 90, 1),  # median 2.0
            ("adam", 0.001, R, 2.5, 80, 0),
            ("adam", 0.001, R, 2.5, 80, 1),
        ],
    )
    spec = prepare_grid(grid(write_grid, results, optimizers='["adam"]'))
    assert chosen(spec) == {"adam": [0.01]}
    assert spec.chosen[0].time_s == 2.0
    path = grid(write_grid, results, optimizers='["adam"]', extra=", min_success = 0.3")
    loose = prepare_grid(path)
    assert chosen(loose) == {"adam": [0.1]}  # 1 of 3 seeds now counts


def test_missing_source_and_bad_keys_are_one_line_grid_errors(tmp_path, write_grid):
    with pytest.raises(GridError, match=r"lr\.best: .*nope: no such results directory"):
        prepare_grid(grid(write_grid, str(tmp_path / "nope")))
    with pytest.raises(GridError, match=r"lr\.top_k: must be"):
        prepare_grid(grid(write_grid, str(tmp_path), extra=", top_k = 0"))
    with pytest.raises(GridError, match=r"lr\.min_success: must be in \(0, 1\]"):
        prepare_grid(grid(write_grid, str(tmp_path), extra=", min_success = 2"))
    with pytest.raises(GridError, match=r"lr\.stop: unknown key"):
        prepare_grid(grid(write_grid, str(tmp_path), extra=", stop = 3"))
