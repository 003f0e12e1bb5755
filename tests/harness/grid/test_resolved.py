"""A grid's ``lr`` setting (``Fixed``, ``FromBest``, ``FromFinder``) and the
``ResolvedGrid`` each becomes: its LRs and their provenance, its trial count,
and its stored JSON, read back as the same grid."""

from __future__ import annotations

import hashlib
import json

import pytest

from harness.grid.parse import parse_grid
from harness.grid.resolved import ChosenLr, LrChoice, ResolvedGrid, Skipped, SuggestedLr
from harness.grid.specs import Fixed, FromBest, FromFinder, OptimizerSpec
from tests import helpers

BASE = {
    "models": [{"name": "tiny_cnn", "widths": [1, 2]}],
    "optimizers": ["adam", {"name": "momentum", "kwargs": {"momentum": 0.5}}, "rmsprop"],
    "seeds": 2,
}
ADAM = OptimizerSpec("adam")
MOMENTUM = OptimizerSpec("momentum", {"momentum": 0.5})
RMSPROP = OptimizerSpec("rmsprop")


def spec(lr):
    return parse_grid({**BASE, "lr": lr}, "g.toml")


FIXED = spec([0.1, 0.01])
BEST = spec({"best": "results/earlier", "top_k": 2})
FINDER = spec({"finder": "results/tests", "rule": "min/10", "decades": 2, "num": 3})
# what the earlier sweep chose (adam's two best, momentum's one; rmsprop absent)
CHOSEN = (
    ChosenLr("adam", {}, 0.01, 1, 1.5, 60.0, 1.0),
    ChosenLr("momentum", {"momentum": 0.5}, 0.1, 1, 2.25, 90.0, 1.0),
    ChosenLr("adam", {}, 0.03, 2, 1.75, 70.0, 0.5),
)
SKIPPED = (Skipped("rmsprop", "absent", "results/earlier"),)
# ladders around range-test suggestions (momentum has none), in another order
SUGGESTED = (
    SuggestedLr("rmsprop", {}, "min/10", 0.001234, "f1", (0.0001234, 0.001234, 0.01234)),
    SuggestedLr("adam", {}, "min/10", 0.01, "f2", (0.001, 0.01, 0.1)),
)


def resolved() -> dict[str, ResolvedGrid]:
    return {
        "fixed": ResolvedGrid.fixed(FIXED),
        "best": ResolvedGrid.from_best(BEST, CHOSEN, SKIPPED),
        "finder": ResolvedGrid.from_finder(FINDER, SUGGESTED),
    }


def test_the_parser_gives_one_lr_setting_of_each_kind():
    assert FIXED.lr == Fixed((0.01, 0.1))  # sorted, each once
    assert BEST.lr == FromBest("results/earlier", top_k=2)
    assert FINDER.lr == FromFinder("results/tests", "min/10", decades=2.0, num=3)
    assert [g.lr.per_optimizer for g in (FIXED, BEST, FINDER)] == [2, 2, 3]


def test_a_fixed_grid_runs_every_lr_for_every_optimizer():
    grid = ResolvedGrid.fixed(FIXED)
    assert grid.lrs == tuple(
        LrChoice(opt, lr, "grid") for opt in (ADAM, MOMENTUM, RMSPROP) for lr in (0.01, 0.1)
    )
    assert grid.chosen == grid.suggested == grid.skipped == ()


def test_a_best_grid_runs_the_chosen_lrs_in_optimizer_order_and_says_where_from():
    grid = ResolvedGrid.from_best(BEST, CHOSEN, SKIPPED)
    assert grid.lrs == (
        LrChoice(ADAM, 0.01, "results/earlier best 1/2 (1.5 s, 60 steps)"),
        LrChoice(ADAM, 0.03, "results/earlier best 2/2 (1.75 s, 70 steps)"),
        LrChoice(MOMENTUM, 0.1, "results/earlier best 1/2 (2.25 s, 90 steps)"),
    )
    assert grid.chosen == CHOSEN and grid.skipped == SKIPPED and grid.suggested == ()
    assert {t.optimizer for t in grid.expand()} == {"adam", "momentum"}


def test_a_finder_grid_runs_each_optimizers_ladder_and_says_where_from():
    grid = ResolvedGrid.from_finder(FINDER, SUGGESTED)
    adam = "results/tests finder min/10 (suggested 0.01)"
    rmsprop = "results/tests finder min/10 (suggested 0.00123)"
    assert grid.lrs == (
        LrChoice(ADAM, 0.001, adam),
        LrChoice(ADAM, 0.01, adam),
        LrChoice(ADAM, 0.1, adam),
        LrChoice(RMSPROP, 0.0001234, rmsprop),
        LrChoice(RMSPROP, 0.001234, rmsprop),
        LrChoice(RMSPROP, 0.01234, rmsprop),
    )
    assert grid.suggested == SUGGESTED and grid.chosen == grid.skipped == ()


@pytest.mark.parametrize(
    ("build", "says"),
    [
        (lambda: ResolvedGrid.fixed(BEST), "fixed takes a grid with lr = [...]; g.toml has"),
        (lambda: ResolvedGrid.fixed(FINDER), "g.toml has lr = { finder = DIR }"),
        (lambda: ResolvedGrid.from_best(FIXED, CHOSEN), "from_best takes a grid with lr = { best"),
        (lambda: ResolvedGrid.from_best(FINDER, CHOSEN), "g.toml has lr = { finder = DIR }"),
        (lambda: ResolvedGrid.from_finder(FIXED, SUGGESTED), "g.toml has lr = [...]"),
        (lambda: ResolvedGrid.from_finder(BEST, SUGGESTED), "g.toml has lr = { best = DIR }"),
    ],
)
def test_a_constructor_refuses_another_kind_of_lr_setting(build, says):
    with pytest.raises(TypeError, match=r"ResolvedGrid\.") as refused:
        build()
    assert says in str(refused.value)


def test_the_trial_count_is_known_before_the_lrs_are_resolved():
    # 2 widths x 3 optimizers x 2 seeds x the LRs per optimizer
    assert FIXED.trial_count() == 24
    assert BEST.trial_count() == 24  # top_k = 2: at most
    assert FINDER.trial_count() == 36  # num = 3
    grids = resolved()
    assert len(grids["fixed"].expand()) == 24
    assert len(grids["best"].expand()) == 12 <= BEST.trial_count()
    assert len(grids["finder"].expand()) == 24 <= FINDER.trial_count()


# Each kind's digest and a hash of its trial ids in order, as stored results,
# manifests and histories know them: a change here would orphan stored trials.
PINNED = {
    "fixed": ("eec4c42665638718", 24, "efac62cc6632", "8352887527e7"),
    "best": ("98e16fe3b45c4712", 12, "d0fdc8bb5256", "7536be6b338b"),
    "finder": ("493d666e95e3ad8d", 24, "267cc0a364fb", "954d28a101a9"),
}
KEYS = [
    "name",
    "description",
    "data_dir",
    "datasets",
    "models",
    "optimizers",
    "lrs",
    "best_lr",
    "chosen_lrs",
    "skipped",
    "batch_sizes",
    "losses",
    "schedules",
    "seeds",
    "stop",
    "resources",
]


@pytest.mark.parametrize("kind", sorted(PINNED))
def test_the_json_digest_and_trial_ids_are_those_stored_before(kind):
    grid = resolved()[kind]
    data = grid.to_json()
    ids = [t.trial_id for t in grid.expand()]
    text = json.dumps(data)  # the manifest's text: key order included
    got = (
        grid.digest,
        len(ids),
        hashlib.sha256("".join(ids).encode()).hexdigest()[:12],
        hashlib.sha256(text.encode()).hexdigest()[:12],
    )
    assert got == PINNED[kind]
    finder = ["finder_lr", "suggested_lrs"] if kind == "finder" else []
    assert list(data) == KEYS[:10] + finder + KEYS[10:]


def test_the_stored_json_names_each_kind_as_grids_always_have():
    data = {kind: grid.to_json() for kind, grid in resolved().items()}
    assert data["fixed"]["lrs"] == (0.01, 0.1) and data["fixed"]["best_lr"] is None
    assert data["best"]["lrs"] == () and data["best"]["best_lr"] == {
        "results": "results/earlier",
        "top_k": 2,
        "min_success": 0.5,
        "rule": "fastest median time to target; ties: fewer steps, then the lower LR",
    }
    assert [c["lr"] for c in data["best"]["chosen_lrs"]] == [0.01, 0.1, 0.03]
    assert data["best"]["skipped"] == ["rmsprop: not in results/earlier"]
    assert data["finder"]["finder_lr"] == {
        "results": "results/tests",
        "rule": "min/10",
        "decades": 2.0,
        "num": 3,
    }
    assert data["finder"]["suggested_lrs"][1]["lrs"] == (0.001, 0.01, 0.1)


@pytest.mark.parametrize("kind", sorted(PINNED))
def test_each_kind_reads_back_from_its_stored_json(kind):
    grid = resolved()[kind]
    back = helpers.stored_and_read_back(grid)  # the same JSON, digest, trials and provenance
    assert back.spec == grid.spec and back.lrs == grid.lrs
    assert back.chosen == grid.chosen and back.suggested == grid.suggested
    assert [s.text for s in back.skipped] == [s.text for s in grid.skipped]
    assert ResolvedGrid.from_json(grid.to_json(), "g.toml") == back  # JSON as given, not as text


def test_a_stored_grid_from_any_version_reads_back_with_defaults_and_unknown_keys_left_out():
    back = ResolvedGrid.from_json({"name": "old", "lrs": [0.1], "later": 1, "stop": {"x": 2}})
    assert back.spec.lr == Fixed((0.1,)) and back.spec.name == "old" and back.spec.source == ""
    assert back.lrs == () and back.expand() == []  # a stored grid without optimizers
    best = ResolvedGrid.from_json({"best_lr": {"results": "r", "rule": "text"}, "skipped": ["x"]})
    assert best.spec.lr == FromBest("r") and best.skipped == (Skipped.stored("x"),)
    assert best.skipped[0].text == "x"
