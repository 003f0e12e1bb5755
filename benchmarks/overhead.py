"""Harness overhead, measured side by side in one run.

1. The smoke grid two ways: a plain serial Python loop calling the same trial
   function (``harness.trial.train.run_trial``, TensorFlow on every core), and
   ``lrbench sweep`` (Ray Tune on embedded local Ray). Both are whole commands
   in fresh processes, timed from start to exit. Prints both wall times and
   their ratio, and the sweep's **parallel efficiency**: its trials' summed
   wall time over (workers x the span from the first trial's start to the
   last trial's end), target >= 0.9. (A wall-clock budget trial runs as long
   with one trial at a time as with two, so the ratio to the loop is no
   measure of the harness; the efficiency is.) A trial the frontier guard
   rechecked ran twice: its pruned first run counts with its training seconds
   (``pruned_at_s``) plus the median trial's wall time outside training.
2. A trial's fixed cost in the sweep: the median harness overhead (wall -
   train - startup - validation) plus the median startup (model build,
   compile, first traced step), target < 0.3 s together; and how many trials
   reused a worker's compiled model (``harness.trial.reuse``), with the medians of
   each kind. Validation is printed on its own line: it is a measurement the
   trial makes at every epoch end (the curve's ``val_acc``), so its cost grows
   with the trial's epochs instead of being fixed; the sum with it is printed
   too. Also printed: what the sweep would take with no start-up and no idle
   worker (its trials' wall seconds over its workers), as a ratio to the loop.
3. In-trial throughput: training examples/s inside a trial against bare
   ``model.fit`` on the same model, data, batch size, loss and thread count,
   alternated ``--repeats`` times (target >= 85 %). Both train the grid's
   first trial (its model, built by ``harness.trial.models.build_model``, a user's
   builder included, on its dataset from ``harness.trial.data.load_grid_data``) with
   Adam at 1e-3, compiled as ``harness.trial.train.build_compiled`` compiles every
   trial; bare ``fit`` gets the inputs scaled as the trial's pipeline scales
   them. The trial keeps the grid's stop metric, window and check interval,
   with a target of 1.0 and no budget or divergence stop. A second baseline,
   bare ``fit`` on the trial's own ``tf.data`` stream (``make_dataset``),
   leaves only the stop rule's per-step callback as the difference: Keras'
   path for NumPy arrays costs more per step than that stream on a small
   model, so the first ratio can exceed 100 %. Last, the time the trial spent
   in per-step callbacks, timed inside it, as a share of its training time:
   unlike the ratios it does not swing with other load on the machine.

Usage: python benchmarks/overhead.py [--grid grids/smoke.toml] [--skip-serial]
       [--skip-sweep]
"""

from __future__ import annotations

import argparse
import json
import math
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent

SERIAL_LOOP = """
import os, sys
from harness import userref
from harness.trial.data import load_grid_data
from harness.trial.train import run_trial
from lrbench.compose import prepare_grid

resolved = prepare_grid(sys.argv[1])
grid = resolved.spec
userref.add_to_path(userref.search_dirs(grid.source))  # a user's builder imports here
specs = resolved.expand()
data = load_grid_data(grid, {spec.dataset for spec in specs})
for spec in specs:
    run_trial(spec, data[spec.dataset], cpus=os.cpu_count())
"""

THROUGHPUT = """
import json, sys, time
from dataclasses import replace
from harness import userref
from harness.grid.specs import CONSTANT_SCHEDULE
from harness.trial.train import (
    build_compiled, configure_threads, make_dataset, run_trial, sparse_labels,
)
from lrbench.compose import prepare_grid

resolved = prepare_grid(sys.argv[1])
grid = resolved.spec
epochs, repeats = int(sys.argv[2]), int(sys.argv[3])
threads = configure_threads(grid.resources.cpus)
import keras
from harness.trial.data import load_grid_data

userref.add_to_path(userref.search_dirs(grid.source))  # a user's builder imports here
first = resolved.expand()[0]
data = load_grid_data(grid, [first.dataset])[first.dataset].head(first.train_size)
n = len(data.x_train)
# adam at 1e-3 that never stops early: a target it cannot reach, no budget or divergence stop
stop = replace(
    first.stop, target=1.0, budget_s=1e6, max_epochs=epochs, diverge_factor=1e9, prune=None
)
spec = replace(
    first, optimizer="adam", optimizer_kwargs={}, lr=1e-3, schedule=dict(CONSTANT_SCHEDULE),
    stop=stop,
)
# bare fit sees what the trial's pipeline gives the model: inputs scaled (uint8),
# integer labels expanded to one-hot where the loss needs them
x = data.model_inputs(data.x_train)
y = data.y_train
if data.sparse and not sparse_labels(data, spec.loss):
    y = keras.utils.to_categorical(y, data.num_classes)
stream = make_dataset(data, spec.batch_size, spec.seed, threads, spec.loss)
# the time a trial spends in Keras' per-batch callback dispatch (the logs made
# Python floats, the stop rule's callback): a share of the same run's training
# time, so it holds on a busy machine where the wall-clock ratios swing
dispatch = keras.callbacks.CallbackList.on_train_batch_end
in_callbacks = [0.0, False]

def timed_dispatch(self, batch, logs=None):
    if not in_callbacks[1]:
        return dispatch(self, batch, logs)
    start = time.perf_counter()
    try:
        return dispatch(self, batch, logs)
    finally:
        in_callbacks[0] += time.perf_counter() - start

keras.callbacks.CallbackList.on_train_batch_end = timed_dispatch
bare, pipeline, trial, callback_s, callback_share = [], [], [], [], []
for _ in range(repeats):
    # bare fit on the arrays, then on the trial's own input pipeline (no callback)
    for inputs, kwargs, rates in (((x, y), {"batch_size": spec.batch_size}, bare),
                                  ((stream,), {"shuffle": False}, pipeline)):
        keras.utils.set_random_seed(spec.seed)
        model = build_compiled(spec, data)
        model.fit(*inputs, epochs=1, verbose=0, **kwargs)  # trace
        start = time.perf_counter()
        model.fit(*inputs, epochs=epochs - 1, verbose=0, **kwargs)
        rates.append((epochs - 1) * n / (time.perf_counter() - start))
    in_callbacks[:] = [0.0, True]
    record = run_trial(spec, data, cpus=grid.resources.cpus).record
    in_callbacks[1] = False
    # the clock starts after step 1, so count the examples after it
    trial.append((record.epochs * n - spec.batch_size) / record.train_s)
    callback_s.append(in_callbacks[0] / record.steps)
    callback_share.append(in_callbacks[0] / record.train_s)
print(json.dumps({"bare": bare, "pipeline": pipeline, "trial": trial, "threads": threads,
                  "callback_s": callback_s, "callback_share": callback_share}))
"""


def _run(cmd: list[str], **kwargs: Any) -> tuple[float, subprocess.CompletedProcess]:
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"}
    start = time.perf_counter()
    done = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, **kwargs)
    wall = time.perf_counter() - start
    if done.returncode != 0:
        sys.exit(f"failed: {' '.join(cmd)}\n{done.stdout[-2000:]}\n{done.stderr[-2000:]}")
    return wall, done


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--grid", default="grids/smoke.toml")
    parser.add_argument("--skip-serial", action="store_true")
    parser.add_argument(
        "--skip-sweep", action="store_true", help="only the in-trial throughput (part 3)"
    )
    parser.add_argument("--epochs", type=int, default=20)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()

    from lrbench.compose import prepare_grid

    resolved = prepare_grid(ROOT / args.grid)
    grid = resolved.spec
    n = len(resolved.expand())
    print(f"grid {args.grid}: {n} trials, {os.cpu_count()} cpus", flush=True)
    if not args.skip_sweep:
        _sweep_overhead(args, grid)
    _throughput(args)


def _sweep_overhead(args: argparse.Namespace, grid: Any) -> None:
    """Parts 1 and 2: the serial loop and the sweep, and a trial's fixed cost."""
    from harness.store.results import Store

    serial_wall = None
    if not args.skip_serial:
        serial_wall, _ = _run([sys.executable, "-c", SERIAL_LOOP, args.grid])
        print(f"serial loop    wall {serial_wall:7.1f} s", flush=True)
    with tempfile.TemporaryDirectory(prefix="lrbench-bench-") as out:
        lrbench = str(Path(sys.executable).parent / "lrbench")
        sweep_wall, _ = _run([lrbench, "sweep", args.grid, "--out", out])
        trials = Store(out).read_trials()
    print(f"lrbench sweep  wall {sweep_wall:7.1f} s", flush=True)
    if serial_wall:
        print(f"ratio sweep / serial      {sweep_wall / serial_wall:.2f}")
    workers = max(1, int((os.cpu_count() or 1) // max(grid.resources.cpus, 1)))
    _efficiency(trials, workers)

    outside = trials.wall_s - trials.train_s - trials.startup_s
    overhead = outside - trials.val_s
    fixed = overhead.median() + trials.startup_s.median()
    print(
        f"median overhead per trial {overhead.median():.3f} s  (wall - train - startup - "
        f"validation; max {overhead.max():.2f} s)"
    )
    print(
        f"median startup per trial  {trials.startup_s.median():.3f} s "
        f"(max {trials.startup_s.max():.2f} s); worker processes: "
        f"{trials.worker_pid.nunique()} for {len(trials)} trials"
    )
    print(f"overhead + startup        {fixed:.3f} s  (target < 0.3 s)")
    passes = trials.epochs.apply(math.ceil) + 1  # each epoch end, and the last point
    print(
        f"validation per trial      {trials.val_s.median():.3f} s median "
        f"({(trials.val_s / passes).median() * 1000:.0f} ms a pass, "
        f"{trials.val_s.sum() / trials.wall_s.sum():.1%} of the trials' wall time); "
        f"overhead + startup with it {outside.median() + trials.startup_s.median():.3f} s"
    )
    reused = trials["reused"].fillna(False).astype(bool)
    for label, part in (("reused", reused), ("fresh", ~reused)):
        if part.any():
            print(
                f"  {label:6s} {int(part.sum()):3d} trials: median overhead "
                f"{overhead[part].median():.3f} s, startup "
                f"{trials.startup_s[part].median():.3f} s, "
                f"validation {trials.val_s[part].median():.3f} s"
            )
    busy = (trials.wall_s.sum()) / sweep_wall
    print(f"sum of trial walls / sweep wall  {busy:.2f}  (trials running at once, on average)")
    if serial_wall:
        ideal = trials.wall_s.sum() / workers
        print(
            f"the sweep's trials alone on {workers} workers {ideal:.1f} s -> "
            f"{ideal / serial_wall:.2f} of the loop (no start-up, no idle worker)"
        )


def _efficiency(trials: Any, workers: int) -> None:
    """Parallel efficiency: the trials' summed wall time over ``workers`` x the
    span from the first trial's start to the last one's end."""
    import pandas as pd

    start = pd.to_datetime(trials.started_at, utc=True)
    end = start + pd.to_timedelta(trials.wall_s, unit="s")
    span = (end.max() - start.min()).total_seconds()
    rechecked = trials["rechecked"].fillna(False).astype(bool)
    outside = (trials.wall_s - trials.train_s).median()
    first_runs = (trials.pruned_at_s[rechecked].fillna(0.0) + outside).sum()
    busy = trials.wall_s.sum() + first_runs
    print(
        f"parallel efficiency       {busy / (workers * span):.3f}  (target >= 0.9): "
        f"{busy:.1f} trial-seconds over {workers} workers x {span:.1f} s from the first "
        f"trial's start to the last one's end; {int(rechecked.sum())} rechecked trials' "
        f"first runs count {first_runs:.1f} s"
    )


def _throughput(args: argparse.Namespace) -> None:
    """Part 3: in-trial throughput against bare ``model.fit`` on the grid's first trial."""
    cmd = [sys.executable, "-c", THROUGHPUT, args.grid, str(args.epochs), str(args.repeats)]
    _, done = _run(cmd)
    rates = json.loads(done.stdout.strip().splitlines()[-1])
    bare, trial = statistics.median(rates["bare"]), statistics.median(rates["trial"])
    threads = rates["threads"]
    print(
        f"in-trial throughput       {trial:7.0f} ex/s vs bare fit {bare:7.0f} ex/s "
        f"-> {trial / bare:.0%}  (target >= 85 %; medians of {args.repeats}, "
        f"{threads} thread{'s' if threads != 1 else ''})"
    )
    pipeline = statistics.median(rates["pipeline"])
    print(
        f"  bare fit on the trial's input pipeline {pipeline:7.0f} ex/s -> {trial / pipeline:.0%} "
        "(the same tf.data stream: what is left is the stop rule's callback)"
    )
    per_step = statistics.median(rates["callback_s"]) * 1e6
    print(
        f"  per-step callbacks in the trial {per_step:.0f} us a step, "
        f"{statistics.median(rates['callback_share']):.1%} of its training time "
        "(timed inside it: Keras' dispatch and logs, the stop rule)"
    )


if __name__ == "__main__":
    main()
