"""The cost of one grid, two ways, side by side in one run.

1. The naive way, as the reference experiment ran it: a serial loop over the
   trials, one at a time, no divergence stop and no pruning: every trial that
   does not reach the target trains to its time budget (or its
   ``max_epochs``). It runs ``harness.trial.train.run_trial`` with a stop rule that
   only knows "reached" and "budget", with the thread count a sweep trial gets
   (the grid's ``[resources] cpus``), so that a trial at the edge of a
   wall-clock budget has the same speed both ways.
2. lrbench as the grid says (pruning is off unless it says ``prune``):
   ``lrbench sweep`` on embedded local Ray, trials in parallel, with the
   divergence stop.
3. lrbench with pruning: the same sweep with ``[stop] prune`` set to
   ``--prune`` (default ``optimistic``), behind the frontier guard, which
   runs again in full every pruned trial next to a reached cell (unless the
   grid already prunes).

Each is a whole command in a fresh process, timed from start to exit. Prints
the wall times, their ratios to the naive loop (target on 2 cores for the
demo's grid: lrbench with pruning <= 0.30x naive), the training seconds each
spent, the trials pruned and rechecked, and the verdicts compared cell by cell
against the naive loop. The
naive loop has no divergence verdict, so agreement counts reached against not
reached; every disagreement is listed.

``--lrs N`` runs the grid with its learning rates replaced by N log-spaced
from the lowest to the highest (the larger grid: ``--lrs 22`` on the demo's),
where start-up no longer dominates.

``--keep DIR`` keeps the sweeps' results (``DIR/default``, ``DIR/pruned``):
``lrbench replay DIR/default`` then replays pruning and its guard on the
unpruned sweep.

Usage: python benchmarks/grid_cost.py [--grid grids/smoke.toml] [--lrs 22]
       [--prune optimistic] [--keep DIR]
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

import harness.trial.train
from harness.trial.data import load_dataset
from harness.store.records import TrialStatus
from harness.rules.tracker import StopTracker
from lrbench.compose import prepare_grid


class NaiveTracker(StopTracker):
    # The reference experiment's stop: the target or the budget, nothing else.
    def check(self, logs):
        super().check(logs)
        if self.status is TrialStatus.DIVERGED:  # no divergence verdict: train on
            self.status = None
        if self.status is None and self.elapsed() >= self.rule.budget_s:
            self.status = TrialStatus.BUDGET


harness.trial.train.StopTracker = NaiveTracker
resolved = prepare_grid(sys.argv[1])
grid = resolved.spec
data, out = {}, {}
for spec in resolved.expand():
    if spec.dataset not in data:
        data[spec.dataset] = load_dataset(spec.dataset, grid.data_dir)
    naive = replace(spec, stop=replace(spec.stop, diverge_factor=math.inf, prune=None))
    record = harness.trial.train.run_trial(
        naive, data[spec.dataset], cpus=grid.resources.cpus
    ).record
    out[spec.trial_id] = {"status": record.status.value, "train_s": record.train_s}
json.dump(out, open(sys.argv[2], "w"))
"""

PRUNED_SWEEP = """
import sys
from dataclasses import replace

from harness.sweep.driver import run_sweep
from lrbench.compose import prepare_grid

resolved = prepare_grid(sys.argv[1])
stop = replace(resolved.spec.stop, prune=sys.argv[3])
run_sweep(replace(resolved, spec=replace(resolved.spec, stop=stop)), sys.argv[2])
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


def _with_lrs(grid_file: Path, n: int, tmp: str) -> Path:
    """A copy of ``grid_file`` with ``n`` log-spaced LRs over its own range."""
    import re

    from harness.grid.parse import load_grid
    from harness.grid.specs import Fixed

    lr = load_grid(grid_file).lr
    if not isinstance(lr, Fixed):
        sys.exit(f"--lrs replaces a grid's own LRs; {grid_file} takes them from elsewhere")
    lrs = lr.lrs
    text = grid_file.read_text()
    line = f"lr = {{ start = {min(lrs):g}, stop = {max(lrs):g}, num = {n} }}"
    text = re.sub(r"^lr = .*$", line, text, count=1, flags=re.M)
    text = re.sub(r'^name = "(.*)"$', lambda m: f'name = "{m[1]}-{n}"', text, count=1, flags=re.M)
    path = Path(tmp) / f"{grid_file.stem}-{n}.toml"
    path.write_text(text)
    return path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--grid", default="grids/smoke.toml")
    parser.add_argument("--lrs", type=int, default=0, help="replace the LRs by N log-spaced")
    parser.add_argument("--prune", default="optimistic", help="the pruning rule of run 3")
    parser.add_argument("--keep", help="keep the sweeps' results directories under this folder")
    args = parser.parse_args()

    from harness.store.results import Store
    from lrbench.compose import prepare_grid

    runs = {}
    with tempfile.TemporaryDirectory(prefix="lrbench-cost-") as tmp:
        where = args.keep or tmp
        grid_file = ROOT / args.grid
        if args.lrs:
            grid_file = _with_lrs(grid_file, args.lrs, tmp)
        resolved = prepare_grid(grid_file)
        trials = resolved.expand()
        print(
            f"grid {args.grid}{f' with {args.lrs} LRs' if args.lrs else ''}: {len(trials)} "
            f"trials, {os.cpu_count()} cpus; every trial, naive or not, runs with "
            f"{resolved.spec.resources.cpus:g} cpu threads (the grid's [resources] cpus)",
            flush=True,
        )
        statuses = os.path.join(tmp, "naive.json")
        naive_wall = _run([sys.executable, "-c", NAIVE_LOOP, str(grid_file), statuses])
        naive = json.loads(Path(statuses).read_text())
        print(f"naive serial loop        wall {naive_wall:7.1f} s", flush=True)
        lrbench = str(Path(sys.executable).parent / "lrbench")
        out = os.path.join(where, "default")
        runs["lrbench as the grid says"] = (
            _run([lrbench, "sweep", str(grid_file), "--out", out]),
            Store(out).read_trials().set_index("trial_id"),
        )
        if not resolved.spec.stop.prune:
            out = os.path.join(where, "pruned")
            runs[f"lrbench, prune {args.prune} + guard"] = (
                _run([sys.executable, "-c", PRUNED_SWEEP, str(grid_file), out, args.prune]),
                Store(out).read_trials().set_index("trial_id"),
            )
    naive_s = sum(t["train_s"] for t in naive.values())
    print(f"  training seconds {naive_s:.0f} s")
    for name, (wall, rows) in runs.items():
        print(f"{name:24s} wall {wall:7.1f} s  ratio to naive {wall / naive_wall:.3f}")
        print(
            f"  training seconds {rows['train_s'].sum():.0f} s; "
            f"{int(rows['pruned'].fillna(False).sum())} trials pruned, "
            f"{int(rows['rechecked'].fillna(False).sum())} rechecked in full by the guard, "
            f"{int((rows['status'] == 'diverged').sum())} stopped as diverged"
        )
        _compare(trials, naive, rows, "lrbench")
    print("target on 2 cores, the demo's grid: lrbench with pruning <= 0.30x naive, >= 98 % same")


if __name__ == "__main__":
    main()
