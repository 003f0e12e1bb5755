"""How the sweep driver's cost grows with the grid: 1,000 and 10,000 trials.

Each size is a grid of ``tiny_cnn`` on the bundled ``mnist5k`` (5 optimizers x
200 log-spaced LRs x size/1,000 seeds) swept through the real driver
(``harness.sweep.driver.run_sweep``: the store, the optimizer/model check, data
loading, embedded Ray and Ray Tune) with a trainer that does no training:
``no_train``, passed as ``run_sweep``'s ``runner`` (only this benchmark does).
It sleeps ``--trial-ms`` (default 0) and returns a realistic outcome, the same
for the same trial: a status from where its LR sits (reached, budget,
diverged), a curve of ``--points`` checks and made-up training timings
(``train_s``, ``time_to_target_s`` ...), so that the store, its compaction
and ``lrbench report`` do their real work. Its ``wall_s`` is real: the
seconds the runner itself took (not the worker's writing of the trial to the
store after it, which counts as overhead).

For each size, every step a separate process, timed from its start to its exit:

- sweep: a small driver (this file, ``--drive``) that calls ``run_sweep`` with
  ``no_train``. Printed: its wall time; the driver's peak RSS
  (``getrusage(RUSAGE_SELF).ru_maxrss``: the driver process alone, not Ray's
  raylet, GCS or workers); the trials' own time (the stored rows' ``wall_s``,
  summed); and the scheduling overhead per trial,

      overhead = (sweep wall - trials' own time / workers) / trials,

  ``workers`` being the trials that can run at once (the Ray cluster's CPUs
  over the grid's CPUs per trial, from the store's manifest). That wall
  includes start-up (imports, the child's optimizer/model check, data, Ray,
  Tune's trial objects) and the end (Ray's shutdown, compaction), so it is
  split by the stored trials' start times: start (command start to the first
  trial's start), the trials (first start to last end) and end (last end to
  exit), with the overhead of the trials' phase alone per trial ("in flight").
  Also the driver's CPU seconds (user + system, ``getrusage``) per trial:
  unlike the wall times it hardly moves with other load on the machine, so
  it is the figure to compare ``--tune-env`` settings by on a busy machine.
- ``lrbench show GRID --out DIR``: the grid expanded, its models built, the
  store's trials counted.
- resume, all stored: ``lrbench sweep GRID --out DIR`` again; it decides
  there is nothing to run and exits (its wall is its start).
- resume, new trials: the grid grown by one LR (5 x seeds new trials), swept
  again with ``no_train``; its start is the command's start to its first new
  trial's start (reading the stored trials, data, Ray, Tune).
- ``lrbench report DIR --out DIR/report``.

Targets at 10,000 trials: driver peak RSS < 2 GB, overhead < 50 ms a trial,
resume's start < 30 s. ``--tune-env KEY=VALUE`` (repeatable) sets environment
variables of the sweep drivers (Ray Tune's ``TUNE_*`` settings), to compare
settings side by side; the figures printed say which were set.

``--prefill`` writes each size's store directly instead (``no_train``'s
outcomes through ``Store.write_trial``, then compaction; no Ray, no Tune) and
times the steps after the sweep on it: for a size whose sweep is out of reach.

Usage: python benchmarks/driver_scale.py [--sizes 1000 10000] [--trial-ms 0]
           [--points 5] [--tune-env KEY=VALUE ...] [--sweep-only | --prefill]
           [--keep DIR]
"""

from __future__ import annotations

import argparse
import json
import math
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
import zlib
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from harness.grid.specs import TrialSpec
from harness.store.records import CurvePoint, TrialOutcome, TrialRecord, TrialStatus

ROOT = Path(__file__).resolve().parent.parent
LRBENCH = str(Path(sys.executable).parent / "lrbench")
OPTIMIZERS = ["gd", "momentum", "adam", "adagrad", "rmsprop"]
N_LRS = 200
GROWN_LR = 300.0  # the LR the grown grid adds (above the range)
TARGET_RSS_MB = 2000.0  # at 10,000 trials
TARGET_OVERHEAD_MS = 50.0
TARGET_RESUME_S = 30.0

GRID = """\
name = "driver-scale-{size}"
description = "driver_scale.py: {size} trials that do not train"
datasets = ["mnist5k"]
models = ["tiny_cnn"]
optimizers = {optimizers}
lr = [{lrs}]
batch_size = 100
seeds = {seeds}

[stop]
target = 0.9
metric = "recent"
window = 40
budget_s = 6
max_epochs = 50

[resources]
cpus = 1
gpus = 0
"""

# Set by the ``--drive`` process from its arguments, before ``run_sweep``;
# ``no_train`` reads them where it runs (pickled by value with it).
TRIAL_S = 0.0
POINTS = 5


def no_train(spec: TrialSpec, data: Any, *, cpus: float = 1.0, gpus: float = 0.0) -> TrialOutcome:
    """A trial that does not train (``harness.sweep.driver.Runner``): sleeps ``TRIAL_S``
    and returns the outcome a trial at this LR plausibly has, the same each
    time. Its ``wall_s`` is the real time this function took."""
    wall_start = time.perf_counter()
    started_at = datetime.now(UTC).isoformat(timespec="microseconds")
    if TRIAL_S:
        time.sleep(TRIAL_S)
    from harness.trial import sysinfo

    log_lr = math.log10(spec.lr)
    jitter = (zlib.crc32(spec.trial_id.encode()) % 1000) / 1000  # fixed per trial
    if log_lr > 1 + jitter:
        status = TrialStatus.DIVERGED
    elif -3 < log_lr < 0.5:
        status = TrialStatus.REACHED
    else:
        status = TrialStatus.BUDGET
    step_s = 0.002 * (1 + jitter)  # reached within the grid's 6 s budget, else at it
    steps = 200 + int(1200 * jitter) if status is TrialStatus.REACHED else int(6 / step_s)
    n_train = min(len(data.x_train), spec.train_size or len(data.x_train))
    curve = []
    for i in range(1, POINTS + 1):
        step = max(1, steps * i // POINTS)
        acc = min(0.99, 0.1 + (0.85 if status is TrialStatus.REACHED else 0.3) * i / POINTS)
        curve.append(
            CurvePoint(
                spec.trial_id,
                step,
                step * spec.batch_size / n_train,
                step * spec.batch_size,
                step * step_s,
                spec.lr,
                float("nan") if status is TrialStatus.DIVERGED and i == POINTS else 2.3 * (1 - acc),
                acc,
                acc,
                acc,
                acc - 0.02 if i == POINTS else None,
            )
        )
    last = curve[-1]
    fields: dict[str, Any] = {}
    if status is TrialStatus.REACHED:
        fields.update(
            time_to_target_s=last.elapsed_s,
            steps_to_target=last.step,
            epochs_to_target=last.epoch,
            examples_to_target=last.examples,
        )
    record = TrialRecord.from_spec(
        spec,
        status,
        n_params=3_300,
        steps=last.step,
        epochs=last.epoch,
        train_s=last.elapsed_s,
        startup_s=0.0,
        val_s=0.0,
        step_time_s=step_s,
        final_train_acc=last.train_acc,
        best_train_acc=max(p.train_acc for p in curve),
        final_val_acc=last.val_acc,
        final_train_loss=None if status is TrialStatus.DIVERGED else last.train_loss,
        started_at=started_at,
        host=sysinfo.host(),
        worker_pid=os.getpid(),
        device="none: driver_scale.py (no training)",
        cpus=cpus,
        gpus=gpus,
        versions=sysinfo.versions(),
        input_shape=json.dumps(list(data.input_shape)),
        num_classes=data.num_classes,
        wall_s=time.perf_counter() - wall_start,
        **fields,
    )
    return TrialOutcome(record=record, curve=curve)


def drive(grid_path: str, out: str, trial_ms: float, points: int) -> None:
    """The ``--drive`` process: ``run_sweep`` with ``no_train``, then one JSON
    line with its result and this process's peak RSS."""
    global TRIAL_S, POINTS
    TRIAL_S, POINTS = trial_ms / 1000, points
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    from harness.sweep.driver import RunOptions, run_sweep
    from lrbench.compose import prepare_grid

    result = run_sweep(prepare_grid(grid_path), out, RunOptions(runner=no_train))
    usage = resource.getrusage(resource.RUSAGE_SELF)  # this process alone
    print(
        "DRIVE "
        + json.dumps(
            {
                "total": result.total,
                "ran": result.ran,
                "stored": result.already_stored,
                "unfinished": result.unfinished,
                "run_sweep_s": result.wall_s,
                "compacted": result.compacted,
                "peak_rss_mb": usage.ru_maxrss * 1024 / 1e6,  # KiB on Linux
                "cpu_s": usage.ru_utime + usage.ru_stime,
            }
        ),
        flush=True,
    )


def fill(grid_path: str, out: str, points: int) -> None:
    """The ``--fill`` process: the store a finished sweep of the grid leaves,
    written directly (``no_train``'s outcomes through ``Store.write_trial``,
    the manifest's run, compaction), with no Ray or Tune."""
    global POINTS
    POINTS = points
    from concurrent.futures import ThreadPoolExecutor

    from harness.store.results import Store
    from harness.trial.data import load_grid_data
    from lrbench.compose import prepare_grid

    grid = prepare_grid(grid_path)
    trials = grid.expand()
    data = load_grid_data(grid.spec, {t.dataset for t in trials})
    fingerprints = {name: d.fingerprint() for name, d in data.items()}
    store = Store(out)
    store.open_sweep(grid, {"trials": len(trials), "pending": len(trials), "fill": True})

    def write(spec: TrialSpec) -> None:
        outcome = no_train(spec, data[spec.dataset])
        record = replace(outcome.record, data_fingerprint=fingerprints[spec.dataset])
        store.write_trial(replace(outcome, record=record))

    with ThreadPoolExecutor(4) as pool:
        list(pool.map(write, trials))
    store.close_run(0.0, {})
    store.compact()


def grid_text(size: int, extra_lr: bool = False) -> tuple[str, int]:
    """A grid of about ``size`` trials (its TOML and its exact trial count)."""
    import numpy as np

    seeds = max(1, size // (len(OPTIMIZERS) * N_LRS))
    n_lrs = math.ceil(size / (len(OPTIMIZERS) * seeds))
    lrs = [float(f"{x:.6g}") for x in np.logspace(-6, 2, n_lrs)]
    if extra_lr:
        lrs.append(GROWN_LR)
    text = GRID.format(
        size=size,
        optimizers=json.dumps(OPTIMIZERS),
        lrs=", ".join(repr(x) for x in lrs),
        seeds=seeds,
    )
    return text, len(OPTIMIZERS) * len(lrs) * seeds


def run(cmd: list[str], log: Path, env: dict[str, str] | None = None) -> tuple[float, float, str]:
    """Run ``cmd`` (from the repository root), its output to ``log``; returns the
    wall clock at its start (``time.time``), its wall seconds and its output."""
    started_at = time.time()
    started = time.perf_counter()
    with open(log, "w") as f:
        done = subprocess.run(cmd, cwd=ROOT, env=env, stdout=f, stderr=subprocess.STDOUT)
    wall = time.perf_counter() - started
    text = log.read_text()
    if done.returncode != 0:
        sys.exit(f"{text[-4000:]}\n{' '.join(cmd)} exited {done.returncode} (log: {log})")
    return started_at, wall, text


def drive_result(text: str) -> dict[str, Any]:
    line = next(ln for ln in reversed(text.splitlines()) if ln.startswith("DRIVE "))
    return json.loads(line[len("DRIVE ") :])


def stored_times(out: str, ids: set[str] | None = None) -> tuple[int, float, float, float]:
    """Of the stored trials (those in ``ids`` when given): how many, their summed
    ``wall_s``, the first start and the last end (epoch seconds)."""
    from harness.store.results import Store

    df = Store(out).read_trials()
    if ids is not None:
        df = df[df["trial_id"].isin(ids)]
    starts = df["started_at"].map(lambda t: t.timestamp())
    ends = starts + df["wall_s"]
    return len(df), float(df["wall_s"].sum()), float(starts.min()), float(ends.max())


def workers(out: str) -> int:
    """Trials that could run at once in the last run: the cluster's CPUs over the
    grid's CPUs per trial (both from the store's manifest)."""
    from harness.store.results import Store

    manifest = Store(out).read_manifest()
    assert manifest is not None, f"{out}: no manifest"
    cpus = manifest.runs[-1].info.get("cluster_resources", {}).get("CPU", os.cpu_count() or 1)
    per_trial = manifest.grid.get("resources", {}).get("cpus", 1) or 1
    return max(1, int(cpus // per_trial))


def measure(size: int, work: Path, args: argparse.Namespace, env: dict[str, str]) -> dict:
    """Every step at one size (see the module's docstring); returns the figures."""
    text, total = grid_text(size)
    grid = work / f"grid-{size}.toml"
    grid.write_text(text)
    grown = work / f"grid-{size}-grown.toml"
    grown_text, grown_total = grid_text(size, extra_lr=True)
    grown.write_text(grown_text)
    out = work / f"out-{size}"
    me = [sys.executable, str(Path(__file__).resolve()), "--trial-ms", str(args.trial_ms)]
    me += ["--points", str(args.points), "--drive"]
    if args.prefill:
        print(f"\n{total:,} trials ({grid}): writing the store (no sweep) ...", flush=True)
        fill_cmd = [sys.executable, str(Path(__file__).resolve()), "--points", str(args.points)]
        _, fill_s, _ = run([*fill_cmd, "--fill", str(grid), str(out)], work / f"fill-{size}.log")
        f: dict[str, Any] = {"size": total, "fill_s": fill_s}
        return after_sweep(f, total, grid, grown, grown_total, out, work, me, env)
    print(f"\n{total:,} trials ({grid}): sweeping ...", flush=True)

    t0, sweep_s, log = run([*me, str(grid), str(out)], work / f"sweep-{size}.log", env)
    driven = drive_result(log)
    assert driven["ran"] == total and not driven["unfinished"], driven
    n, own_s, first, last = stored_times(str(out))
    assert n == total, (n, total)
    w = workers(str(out))
    f = {"size": total, "workers": w, "sweep_s": sweep_s, "own_s": own_s}
    f["rss_mb"] = driven["peak_rss_mb"]
    f["cpu_ms"] = driven["cpu_s"] / total * 1000
    f["overhead_ms"] = (sweep_s - own_s / w) / total * 1000
    f["start_s"], f["phase_s"], f["end_s"] = first - t0, last - first, t0 + sweep_s - last
    f["flight_ms"] = (f["phase_s"] - own_s / w) / total * 1000
    f["compacted"] = driven["compacted"]

    if args.sweep_only:
        return f
    return after_sweep(f, total, grid, grown, grown_total, out, work, me, env)


def after_sweep(
    f: dict[str, Any],
    total: int,
    grid: Path,
    grown: Path,
    grown_total: int,
    out: Path,
    work: Path,
    me: list[str],
    env: dict[str, str],
) -> dict[str, Any]:
    """show, both resumes and report on the stored sweep; adds their figures to ``f``."""
    size = f["size"]
    _, f["show_s"], _ = run(
        [LRBENCH, "show", str(grid), "--out", str(out)], work / f"show-{size}.log"
    )
    _, f["resume_s"], log = run(
        [LRBENCH, "sweep", str(grid), "--out", str(out)], work / f"resume-{size}.log"
    )
    assert f"({total} already stored, 0 run now)" in log, log[-2000:]

    before = set(stored_ids(str(out)))
    t0, f["grown_s"], log = run([*me, str(grown), str(out)], work / f"resume-grown-{size}.log", env)
    driven = drive_result(log)
    assert driven["ran"] == grown_total - total, driven
    new = set(stored_ids(str(out))) - before
    n, _, first, _ = stored_times(str(out), new)
    f["grown_new"], f["grown_start_s"] = n, first - t0

    _, f["report_s"], _ = run(
        [LRBENCH, "report", str(out), "--out", str(work / f"report-{size}")],
        work / f"report-{size}.log",
    )
    return f


def stored_ids(out: str) -> list[str]:
    from harness.store.results import Store

    return Store(out).read_trials()["trial_id"].tolist()


def verdict(value: float, target: float, at_target_size: bool) -> str:
    if not at_target_size:
        return ""
    return "  ok" if value < target else "  OVER TARGET"


def print_figures(figures: list[dict[str, Any]], env: dict[str, str]) -> None:
    """The table of figures, one column per size, with the targets at 10,000."""
    set_ = {k: v for k, v in env.items() if k.startswith(("TUNE_", "RAY_"))}
    print(f"\ncpus: {os.cpu_count()}; tune env: {set_ or 'harness defaults'}")
    sizes = [f"{f['size']:,}" for f in figures]
    print(f"{'trials':42}" + "".join(f"{s:>12}" for s in sizes) + "   target at 10,000")
    rows: list[tuple[str, str, str, float | None]] = [
        ("store written directly, no sweep (s)", "fill_s", "{:12.1f}", None),
        ("sweep wall (s)", "sweep_s", "{:12.1f}", None),
        ("  start: command to first trial (s)", "start_s", "{:12.1f}", None),
        ("  trials: first start to last end (s)", "phase_s", "{:12.1f}", None),
        ("  end: last trial to exit (s)", "end_s", "{:12.1f}", None),
        ("trials' own time, summed (s)", "own_s", "{:12.2f}", None),
        ("workers at once", "workers", "{:12d}", None),
        ("driver peak RSS (MB)", "rss_mb", "{:12.0f}", TARGET_RSS_MB),
        ("overhead per trial, whole sweep (ms)", "overhead_ms", "{:12.1f}", TARGET_OVERHEAD_MS),
        ("overhead per trial, in flight (ms)", "flight_ms", "{:12.1f}", None),
        ("driver CPU per trial (ms)", "cpu_ms", "{:12.1f}", None),
        ("lrbench show --out (s)", "show_s", "{:12.1f}", None),
        ("resume, all stored: wall (s)", "resume_s", "{:12.1f}", TARGET_RESUME_S),
        ("resume, new trials: start (s)", "grown_start_s", "{:12.1f}", TARGET_RESUME_S),
        ("resume, new trials: wall (s)", "grown_s", "{:12.1f}", None),
        ("  new trials", "grown_new", "{:12d}", None),
        ("lrbench report (s)", "report_s", "{:12.1f}", None),
    ]
    for label, key, fmt, target in rows:
        if key not in figures[0]:
            continue
        line = f"{label:42}" + "".join(fmt.format(f[key]) for f in figures)
        if target is not None:
            big = [f for f in figures if f["size"] >= 10_000]
            unit = "MB" if key == "rss_mb" else "ms" if key.endswith("_ms") else "s"
            line += f"   < {target:g} {unit}"
            if big:
                line += verdict(big[-1][key], target, True)
        print(line)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[1_000, 10_000])
    parser.add_argument("--trial-ms", type=float, default=0.0, help="each trial's sleep, ms")
    parser.add_argument("--points", type=int, default=5, help="curve points per trial")
    parser.add_argument(
        "--tune-env",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="an environment variable of the sweep drivers (repeatable)",
    )
    parser.add_argument(
        "--sweep-only",
        action="store_true",
        help="only the sweep (to compare --tune-env settings): no show, resume or report",
    )
    parser.add_argument(
        "--prefill",
        action="store_true",
        help="write each size's store directly (no Ray, no Tune) instead of sweeping it, "
        "then time show, resume and report on it",
    )
    parser.add_argument("--keep", default=None, help="work in DIR and keep it (stores, logs)")
    parser.add_argument("--drive", nargs=2, metavar=("GRID", "OUT"), help=argparse.SUPPRESS)
    parser.add_argument("--fill", nargs=2, metavar=("GRID", "OUT"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.fill:
        fill(args.fill[0], args.fill[1], args.points)
        return
    if args.drive:
        drive(args.drive[0], args.drive[1], args.trial_ms, args.points)
        return

    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2")
    for item in args.tune_env:
        key, sep, value = item.partition("=")
        if not sep:
            parser.error(f"--tune-env {item!r}: expected KEY=VALUE")
        env[key] = value
    work = Path(args.keep or tempfile.mkdtemp(prefix="lrbench-driver-scale-"))
    work.mkdir(parents=True, exist_ok=True)
    figures = []
    try:
        for size in args.sizes:
            figures.append(measure(size, work, args, env))
            print_figures(figures, env)
    finally:
        if not args.keep:
            shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
