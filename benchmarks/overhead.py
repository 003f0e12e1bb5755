"""Harness overhead, measured side by side in one run.

1. The smoke grid two ways: a plain serial Python loop calling the same trial
   function (``harness.trial.run_trial``, TensorFlow on every core), and
   ``lrbench sweep`` (Ray Tune on embedded local Ray). Both are whole commands
   in fresh processes, timed from start to exit. Prints both wall times and
   their ratio (target on 2 cores: sweep <= 0.55x the loop).
2. A trial's fixed cost in the sweep: the median harness overhead (wall -
   train - startup - validation) plus the median startup (model build,
   compile, first traced step), target < 0.3 s together; and how many trials
   reused a worker's compiled model (``harness.reuse``), with the medians of
   each kind. Validation is printed on its own line: it is a measurement the
   trial makes at every epoch end (the curve's ``val_acc``), so its cost grows
   with the trial's epochs instead of being fixed; the sum with it is printed
   too. Also printed: what the sweep would take with no start-up and no idle
   worker (its trials' wall seconds over its workers), as a ratio to the loop.
3. In-trial throughput: training examples/s inside a trial against bare
   ``model.fit`` on the same model, optimizer, batch size and thread count,
   alternated ``--repeats`` times (target >= 85 %).

Usage: python benchmarks/overhead.py [--grid grids/smoke.toml] [--skip-serial]
"""

from __future__ import annotations

import argparse
import math
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

SERIAL_LOOP = """
import os, sys
from harness.data import load_dataset
from harness.grid import load_grid
from harness.trial import run_trial

grid = load_grid(sys.argv[1])
data = {}
for spec in grid.expand():
    if spec.dataset not in data:
        data[spec.dataset] = load_dataset(spec.dataset, grid.data_dir)
    run_trial(spec, data[spec.dataset], cpus=os.cpu_count())
"""

THROUGHPUT = """
import json, sys, time
from harness.trial import configure_threads, run_trial
configure_threads(1)
import keras
from harness.data import load_mnist5k
from harness.grid import parse_grid
from harness.models import build_loss, build_model, build_optimizer

epochs, repeats = int(sys.argv[1]), int(sys.argv[2])
data = load_mnist5k()
n = len(data.x_train)
# adam at 1e-3 that never stops early: a target it cannot reach, no divergence stop
stop = {"target": 1.0, "budget_s": 1e6, "max_epochs": epochs, "diverge_factor": 1e9}
grid = {"models": ["tiny_cnn"], "optimizers": ["adam"], "lr": [1e-3], "stop": stop}
spec = parse_grid(grid, "throughput").expand()[0]
bare, trial = [], []
for _ in range(repeats):
    keras.utils.set_random_seed(0)
    model = build_model("tiny_cnn", 1.0)
    model.compile(optimizer=build_optimizer("adam", 1e-3),
                  loss=build_loss("crossentropy", "softmax"), metrics=["accuracy"])
    model.fit(data.x_train, data.y_train, batch_size=100, epochs=1, verbose=0)  # trace
    start = time.perf_counter()
    model.fit(data.x_train, data.y_train, batch_size=100, epochs=epochs - 1, verbose=0)
    bare.append((epochs - 1) * n / (time.perf_counter() - start))
    record = run_trial(spec, data, cpus=1).record
    # the clock starts after step 1, so count the examples after it
    trial.append((record.epochs * n - spec.batch_size) / record.train_s)
print(json.dumps({"bare": bare, "trial": trial}))
"""


def _run(cmd: list[str], **kwargs) -> tuple[float, subprocess.CompletedProcess]:
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
    parser.add_argument("--epochs", type=int, default=20)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()

    import json

    from harness.grid import load_grid
    from harness.store import Store

    grid = load_grid(ROOT / args.grid)
    n = len(grid.expand())
    print(f"grid {args.grid}: {n} trials, {os.cpu_count()} cpus", flush=True)

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
        print(f"ratio sweep / serial      {sweep_wall / serial_wall:.2f}  (target <= 0.55)")

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
        workers = max(1, int((os.cpu_count() or 1) // max(grid.resources.cpus, 1)))
        ideal = trials.wall_s.sum() / workers
        print(
            f"the sweep's trials alone on {workers} workers {ideal:.1f} s -> "
            f"{ideal / serial_wall:.2f} of the loop (no start-up, no idle worker)"
        )

    _, done = _run([sys.executable, "-c", THROUGHPUT, str(args.epochs), str(args.repeats)])
    rates = json.loads(done.stdout.strip().splitlines()[-1])
    bare, trial = statistics.median(rates["bare"]), statistics.median(rates["trial"])
    print(
        f"in-trial throughput       {trial:7.0f} ex/s vs bare fit {bare:7.0f} ex/s "
        f"-> {trial / bare:.0%}  (target >= 85 %; medians of {args.repeats}, 1 thread)"
    )


if __name__ == "__main__":
    main()
