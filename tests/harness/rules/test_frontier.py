"""The frontier guard's decisions (harness.rules.frontier), on hand-made ladders."""

from __future__ import annotations

from dataclasses import replace

from harness.grid.specs import StopRule, TrialSpec
from harness.rules.frontier import Cell, Guard, Recheck, frontier, series_of, unguarded


def _ladder(series: str, verdicts: str, lrs: list[float] | None = None) -> list[Cell]:
    """Cells of one series from a string: R reached, P pruned (budget), B
    budget, D diverged, . not finished."""
    lrs = lrs or [10.0**i for i in range(-len(verdicts), 0)]
    status = {"R": "reached", "P": "budget", "B": "budget", "D": "diverged", ".": ""}
    return [
        Cell(f"{series}{i}", series, lr, status[v], v == "P")
        for i, (v, lr) in enumerate(zip(verdicts, lrs, strict=True))
    ]


def test_a_pruned_cell_next_to_a_reached_one_is_on_the_frontier():
    assert frontier(_ladder("a", "PPRRD")) == ["a1"]
    assert frontier(_ladder("a", "PRP")) == ["a0", "a2"]


def test_pruned_cells_far_from_the_band_and_series_without_a_reached_cell_are_left():
    assert frontier(_ladder("a", "PPBRD")) == []
    assert frontier(_ladder("a", "PPPPD")) == []
    assert unguarded(_ladder("a", "PPPPD") + _ladder("b", "PRD")) == {"a": 4}


def test_a_series_still_running_is_not_judged_and_series_are_apart():
    assert frontier(_ladder("a", "PR.")) == []
    cells = _ladder("a", "PRD") + _ladder("b", "RPP")
    assert frontier(cells) == ["a0", "b1"]


def test_the_ladder_is_ordered_by_lr_not_by_input_order():
    cells = _ladder("a", "RPP", lrs=[1e-3, 1e-1, 1e-2])
    assert frontier(cells) == ["a2"]  # 1e-2 sits between 1e-3 (reached) and 1e-1


def _specs(n: int, seed: int = 0) -> list[TrialSpec]:
    stop = StopRule(prune="optimistic")
    return [
        TrialSpec(
            sweep="t",
            dataset="mnist5k",
            train_size=None,
            model="tiny_cnn",
            width=1.0,
            model_kwargs={},
            optimizer="gd",
            optimizer_kwargs={},
            batch_size=100,
            loss="crossentropy",
            seed=seed,
            lr=10.0**-i,
            stop=stop,
        )
        for i in range(n, 0, -1)
    ]


def _drain(guard: Guard, verdicts: dict[float, list[str]]) -> list[tuple[float, bool]]:
    """Run ``guard`` to its end; a trial at LR x takes the next verdict in
    ``verdicts[x]`` ("P": pruned, else a status). Returns what ran: (lr, recheck)."""
    ran = []
    while not guard.finished:
        picked = guard.next()
        assert picked is not None
        spec, recheck = picked
        ran.append((spec.lr, recheck is not None))
        assert (spec.stop.prune is None) == (recheck is not None)  # a recheck runs in full
        verdict = verdicts[spec.lr].pop(0)
        pruned = Recheck(1.0, 10) if verdict == "P" else None
        guard.done(spec.trial_id, "budget" if verdict == "P" else verdict, pruned)
    return ran


def test_the_guard_runs_the_grid_then_rechecks_until_no_new_cell_reaches():
    specs = _specs(5)  # LRs 1e-5 .. 1e-1
    verdicts = {
        1e-5: ["P"],
        1e-4: ["P", "budget"],  # rechecked: a real budget verdict
        1e-3: ["P", "reached"],  # rechecked: a late starter, uncovers 1e-4
        1e-2: ["reached"],
        1e-1: ["diverged"],
    }
    guard = Guard(specs, {}, {})
    ran = _drain(guard, verdicts)
    assert [lr for lr, recheck in ran if not recheck] == [s.lr for s in specs]
    assert [lr for lr, recheck in ran if recheck] == [1e-3, 1e-4]
    assert guard.rechecks == 2
    cells = {c.lr: c for c in guard.cells()}
    assert cells[1e-3].status == "reached" and not cells[1e-3].pruned
    assert cells[1e-5].pruned  # two steps from the band: it rests on the rule


def test_a_stored_pruned_trial_a_new_reached_cell_sits_next_to_is_rechecked():
    """Growth: the stored ladder had no reached cell; a new LR reaches."""
    new = _specs(4)  # LRs 1e-4 .. 1e-1
    old = new[:3]  # the stored grid had no 1e-1
    stored = {s.trial_id: Cell(s.trial_id, series_of(s), s.lr, "budget", True) for s in old}
    released = []
    guard = Guard(new, stored, {s.trial_id: Recheck(2.0, 20) for s in old}, released.extend)
    assert guard.pending == 1  # only the new LR runs at first
    ran = _drain(guard, {1e-1: ["reached"], 1e-2: ["budget"]})
    assert ran == [(1e-1, False), (1e-2, True)]
    assert released == [new[2].trial_id]


def test_a_resumed_guard_rechecks_what_an_interrupted_sweep_left():
    specs = _specs(3)
    verdicts = ["budget", "budget", "reached"]
    stored = {
        s.trial_id: Cell(s.trial_id, series_of(s), s.lr, v, v == "budget" and s.lr == 1e-2)
        for s, v in zip(specs, verdicts, strict=True)
    }
    guard = Guard(specs, stored, {specs[1].trial_id: Recheck(3.0, 30)})
    spec, recheck = guard.next()
    assert spec.lr == 1e-2 and recheck == Recheck(3.0, 30)
    assert spec.trial_id == specs[1].trial_id  # pruning is not part of a trial's id


def test_seeds_are_separate_series():
    a, b = _specs(2, seed=0), _specs(2, seed=1)
    assert series_of(a[0]) == series_of(a[1]) != series_of(b[0])
    assert series_of(replace(a[0], stop=replace(a[0].stop, prune=None))) == series_of(a[0])


def test_the_replay_asks_the_same_frontier_until_no_new_cell_reaches():
    """``analysis.replay.guarded``: a late starter next to the band is rechecked
    and reaches, which puts its own pruned neighbour on the frontier; the same
    trial id in another source is another trial."""
    import pandas as pd

    from analysis.replay import guarded

    rows = []
    for source in ("a", "b"):
        for lr, status, pruned in (
            (1e-3, "budget", True),
            (1e-2, "reached", True),
            (0.1, "reached", False),
        ):
            rows.append(
                {
                    "source": source,
                    "trial_id": f"t{lr}",
                    "series": source,
                    "lr": lr,
                    "status": status if source == "a" else "budget",
                    "replayed": "budget" if pruned or source == "b" else status,
                    "pruned": pruned if source == "a" else lr < 0.1,
                    "pruned_at_s": 2.0 if pruned else float("nan"),
                    "saved_s": 4.0 if pruned else 0.0,
                    "rechecked": False,
                }
            )
    out = guarded(pd.DataFrame(rows)).set_index(["source", "lr"])
    assert out.loc[("a", 1e-2), "rechecked"] and out.loc[("a", 1e-2), "replayed"] == "reached"
    assert out.loc[("a", 1e-3), "rechecked"] and out.loc[("a", 1e-3), "saved_s"] == -2.0
    assert not out.loc["b", "rechecked"].any()  # no reached cell in b: pruned for good
