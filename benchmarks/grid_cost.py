"""The cost of one grid, two ways, side by side in one run.

1. The naive way, as the reference experiment ran it: a serial loop over the
   trials, one at a time with every core, no divergence stop and no pruning:
   every trial that does not reach the target trains to its time budget (or
   its ``max_epochs``). It runs ``harness.trial.run_trial`` with a stop rule
   that only knows "reached" and "budget".
2. lrbench as the grid says: ``lrbench sweep`` on embedded local Ray, trials
   in parallel, with the divergence stop (and pruning where the grid's
   ``[stop] prune`` turns it on; it is off by default).
3. lrbench with pruning: the same sweep with ``[stop] prune`` set to
   ``--prune`` (default ``optimistic``), unless the grid already prunes.

Each is a whole command in a fresh process, timed from start to exit. Prints
the wall times, their ratios to the naive loop (target on 2 cores: lrbench
with pruning <= 0.25x naive), the training seconds each spent, and the
verdicts compared cell by cell against the naive loop. The naive loop has no
divergence verdict, so agreement counts reached against not reached; every
disagreement is listed.

Usage: python benchmarks/grid_cost.py [--grid grids/smoke.toml] [--prune optimistic]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

NAIVE_LOOP = """
import json, math, os, sys
from dataclasses import replace

import harness.trial
from harness.data import load_dataset
from harness.grid import load_grid
from harness.records import TrialStatus
from harness.tracker import StopTracker


class NaiveTracker(StopTracker):
    # The reference experiment's stop: the target or the budget, nothing else.
    def check(self, logs):
        super().check(logs)
        if self.status is TrialStatus.DIVERGED:  # no divergence verdict: train on
            self.status = None
        if self.status is None and self.elapsed() >= self.rule.budget_s:
            self.status = TrialStatus.BUDGET


harness.trial.StopTracker = NaiveTracker
grid = load_grid(sys.argv[1])
data, out = {}, {}
for spec in grid.expand():
    if spec.dataset not in data:
        data[spec.dataset] = load_dataset(spec.dataset, grid.data_dir)
    naive = replace(spec, stop=replace(spec.stop, diverge_factor=math.inf, prune=None))
    record = harness.trial.run_trial(naive, data[spec.dataset], cpus=os.cpu_count()).record
    out[spec.trial_id] = {"status": record.status.value, "train_s": record.train_s}
json.dump(out, open(sys.argv[2], "w"))
"""

PRUNED_SWEEP = """
import sys
from dataclasses import replace

from harness.grid import load_grid
from harness.sweep import run_sweep

grid = load_grid(sys.argv[1])
run_sweep(replace(grid, stop=replace(grid.stop, prune=sys.argv[3])), sys.argv[2])
"""


def _run(cmd: list[str]) -> float:
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"}
    start = time.perf_counter()
    done = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True)
    wall = time.perf_counter() - start
    if done.returncode != 0:
        sys.exit(f"failed: {' '.join(cmd)}\n{done.stdout[-2000:]}\n{done.stderr[-2000:]}")
    return wall


def _compare(trials: list, naive: dict, rows, name: str) -> None:
    same, differ = 0, []
    for spec in trials:
        before, after = naive[spec.trial_id]["status"], rows.loc[spec.trial_id, "status"]
        if (before == "reached") == (after == "reached"):
            same += 1
        else:
            what = f"{spec.optimizer} {spec.optimizer_kwargs or ''} lr {spec.lr:g} seed {spec.seed}"
            differ.append(f"    {what}: naive {before}, {name} {after}")
    print(
        f"  verdicts (reached / not) the same as naive: {same} of {len(trials)} "
        f"({same / len(trials):.1%}; target >= 98 %)"
    )
    for line in differ:
        print(line)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--grid", default="grids/smoke.toml")
    parser.add_argument("--prune", default="optimistic")
    args = parser.parse_args()

    from harness.grid import load_grid
    from harness.store import Store

    grid = load_grid(ROOT / args.grid)
    trials = grid.expand()
    print(f"grid {args.grid}: {len(trials)} trials, {os.cpu_count()} cpus", flush=True)
    runs = {}
    with tempfile.TemporaryDirectory(prefix="lrbench-cost-") as tmp:
        statuses = os.path.join(tmp, "naive.json")
        naive_wall = _run([sys.executable, "-c", NAIVE_LOOP, args.grid, statuses])
        naive = json.loads(Path(statuses).read_text())
        print(f"naive serial loop        wall {naive_wall:7.1f} s", flush=True)
        lrbench = str(Path(sys.executable).parent / "lrbench")
        out = os.path.join(tmp, "default")
        runs["lrbench as the grid says"] = (
            _run([lrbench, "sweep", args.grid, "--out", out]),
            Store(out).read_trials().set_index("trial_id"),
        )
        if not grid.stop.prune:
            out = os.path.join(tmp, "pruned")
            runs[f"lrbench, prune {args.prune}"] = (
                _run([sys.executable, "-c", PRUNED_SWEEP, args.grid, out, args.prune]),
                Store(out).read_trials().set_index("trial_id"),
            )
    naive_s = sum(t["train_s"] for t in naive.values())
    print(f"  training seconds {naive_s:.0f} s")
    for name, (wall, rows) in runs.items():
        print(f"{name:24s} wall {wall:7.1f} s  ratio to naive {wall / naive_wall:.3f}")
        print(
            f"  training seconds {rows['train_s'].sum():.0f} s; "
            f"{int(rows['pruned'].fillna(False).sum())} trials pruned, "
            f"{int((rows['status'] == 'diverged').sum())} stopped as diverged"
        )
        _compare(trials, naive, rows, "lrbench")
    print("target on 2 cores: lrbench with pruning <= 0.25x naive, >= 98 % verdicts the same")


if __name__ == "__main__":
    main()
