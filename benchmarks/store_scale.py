"""Reading a large results store, before and after compaction.

Writes a synthetic store of ``--trials`` trial rows with their curves (``--points``
checks each) through the store's own writer (``Store.write_trial``: one row file
and one curve file per trial, as workers write them), then times, side by side:

- ``load_results`` (what the report, the notebook and ``lr = { best }`` read);
- the whole ``lrbench report`` (load, tables, figures, page);
- ``Store.compact``;

and both reads again after compaction, with the speed-up. It does so on local
disk and on a local S3-compatible server (moto's, in this process), through
pyarrow's S3 filesystem as a cluster sweep on an object store would.

The trials are a paper-like grid (6 optimizers x 48 LRs x seeds), with statuses
and curves drawn from a fixed random seed; nothing trains.

Usage: python benchmarks/store_scale.py [--trials 20000] [--points 40]
           [--s3-trials 2000] [--no-s3] [--threads 8]
"""

from __future__ import annotations

import argparse
import math
import os
import random
import shutil
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor

from harness.grid.parse import parse_grid
from harness.grid.resolved import ResolvedGrid
from harness.grid.specs import TrialSpec
from harness.store.records import CurvePoint, TrialOutcome, TrialRecord, TrialStatus
from harness.store.results import Store

CREDENTIALS = {
    "AWS_ACCESS_KEY_ID": "lrbench-bench",
    "AWS_SECRET_ACCESS_KEY": "lrbench-bench",
    "AWS_DEFAULT_REGION": "us-east-1",
}


def specs(n: int) -> list[TrialSpec]:
    """The first ``n`` trials of a paper-like grid with enough seeds."""
    seeds = math.ceil(n / (6 * 48))
    grid = parse_grid(
        {
            "name": "store-scale",
            "models": ["tiny_cnn"],
            "optimizers": ["gd", "momentum", "adam", "adagrad", "adadelta", "rmsprop"],
            "lr": {"start": 1e-6, "stop": 100, "num": 48},
            "seeds": seeds,
        },
        "store-scale.toml",
    )
    return ResolvedGrid.fixed(grid).expand()[:n]


def outcome(spec: TrialSpec, points: int, rng: random.Random) -> TrialOutcome:
    """A plausible finished trial: its verdict from where its LR sits, a curve."""
    log_lr = math.log10(spec.lr)
    status = (
        TrialStatus.DIVERGED
        if log_lr > 1 + rng.random()
        else TrialStatus.REACHED
        if -3 < log_lr < 0.5
        else TrialStatus.BUDGET
    )
    steps = rng.randint(200, 3000)
    step_s = 0.004 * (1 + rng.random())
    reached = status is TrialStatus.REACHED
    record = TrialRecord.from_spec(
        spec,
        status,
        n_params=3_300,
        time_to_target_s=steps * step_s if reached else None,
        steps_to_target=steps if reached else None,
        steps=steps,
        train_s=steps * step_s,
        step_time_s=step_s,
        started_at="2026-11-23T03:00:00+00:00",
        host="bench",
        device="cpu: bench",
        versions={"lrbench": "bench"},
    )
    curve = []
    for i in range(1, points + 1):
        step = max(1, steps * i // points)
        acc = min(0.99, 0.1 + (0.9 if reached else 0.3) * i / points + rng.gauss(0, 0.01))
        curve.append(
            CurvePoint(
                spec.trial_id,
                step,
                step * spec.batch_size / 5000,
                step * spec.batch_size,
                step * step_s,
                spec.lr,
                2.3 * (1 - acc),
                acc,
                acc,
                acc,
                None,
            )
        )
    return TrialOutcome(record, curve)


def write_store(out: str, n: int, points: int, threads: int) -> float:
    """Write the synthetic store; returns the seconds it took."""
    store = Store(out, grid_json={"name": "store-scale"})
    rng = random.Random(0)
    outcomes = [outcome(s, points, rng) for s in specs(n)]
    store.write_json("manifest.json", {"name": "store-scale", "runs": [], "grid": {}})
    started = time.perf_counter()
    with ThreadPoolExecutor(threads) as pool:
        list(pool.map(store.write_trial, outcomes))
    return time.perf_counter() - started


def timed(fn) -> tuple[float, object]:
    started = time.perf_counter()
    value = fn()
    return time.perf_counter() - started, value


def measure(out: str, report_dir: str) -> tuple[float, float, int]:
    """Seconds of ``load_results`` and of the whole report, and the rows read."""
    from analysis.load import load_results
    from analysis.report.writer import write_report

    load_s, results = timed(lambda: load_results(out))
    n = len(results.trials)
    report_s, _ = timed(lambda: write_report(load_results(out), report_dir, formats=("png",)))
    return load_s, report_s, n


def run(label: str, out: str, n: int, points: int, threads: int, scratch: str) -> None:
    write_s = write_store(out, n, points, threads)
    print(f"\n{label}: {n} trials x {points} curve points, written in {write_s:.1f} s")
    load_before, report_before, rows = measure(out, os.path.join(scratch, f"{label}-before"))
    compact_s, done = timed(lambda: Store(out).compact())
    load_after, report_after, rows_after = measure(out, os.path.join(scratch, f"{label}-after"))
    assert rows == rows_after == n, (rows, rows_after, n)
    print(f"  {'':24}{'before':>10}{'after':>10}{'speed-up':>10}")
    print(
        f"  {'load_results (s)':24}{load_before:10.2f}{load_after:10.2f}"
        f"{load_before / load_after:9.1f}x"
    )
    print(
        f"  {'lrbench report (s)':24}{report_before:10.2f}{report_after:10.2f}"
        f"{report_before / report_after:9.1f}x"
    )
    print(
        f"  compaction: {compact_s:.1f} s, {done.trials} trials into {done.parts} parts, "
        f"{done.removed} files removed"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--trials", type=int, default=20_000)
    parser.add_argument("--points", type=int, default=40, help="curve points per trial")
    parser.add_argument(
        "--s3-trials", type=int, default=2_000, help="trials on S3 (moto serves ~100 requests/s)"
    )
    parser.add_argument("--no-s3", action="store_true", help="local disk only")
    parser.add_argument("--threads", type=int, default=8, help="writer threads")
    args = parser.parse_args()
    import matplotlib

    matplotlib.use("Agg")
    print(f"cpus: {os.cpu_count()}")
    scratch = tempfile.mkdtemp(prefix="lrbench-store-scale-")
    try:
        local = os.path.join(scratch, "store")
        run("local", local, args.trials, args.points, args.threads, scratch)
        if not args.no_s3:
            import logging

            from moto.server import ThreadedMotoServer
            from pyarrow import fs

            logging.getLogger("werkzeug").setLevel(logging.ERROR)  # no line per request
            os.environ.update(CREDENTIALS)
            server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
            server.start()
            host, port = server.get_host_and_port()
            endpoint = f"http://{host}:{port}"
            fs.S3FileSystem(
                endpoint_override=endpoint,
                scheme="http",
                region="us-east-1",
                allow_bucket_creation=True,
            ).create_dir("lrbench")
            uri = f"s3://lrbench/store?endpoint_override={endpoint}&scheme=http&region=us-east-1"
            try:
                n = args.s3_trials
                run("s3", uri, n, args.points, args.threads, scratch)
            finally:
                server.stop()
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


if __name__ == "__main__":
    main()
