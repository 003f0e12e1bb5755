"""Memory of the sweep driver over a long grid of trivial trials.

Runs ``lrbench sweep`` on a grid of ``--trials`` trivial trials (plain GD on
the first 100 images of the bundled MNIST subset, one epoch, one step each) in
a fresh process, samples the driver's resident memory (RSS) twice a second,
and prints it against the number of trials stored so far, with the growth per
100 trials between the first and the last tenth of the sweep.

Usage: python benchmarks/driver_memory.py [--trials 300] [--address ADDR]
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

GRID = """
name = "driver-memory"
datasets = [{{ name = "mnist5k", train_size = 100 }}]
models = ["tiny_cnn"]
optimizers = ["gd"]
lr = {{ start = 1e-6, stop = 1e-2, num = {trials} }}
batch_size = 100
[stop]
target = 0.99
budget_s = 5
max_epochs = 1
"""


def rss_mb(pid: int) -> float:
    """Resident memory of a process, MiB (0 once it is gone)."""
    import psutil

    try:
        return psutil.Process(pid).memory_info().rss / 2**20
    except psutil.NoSuchProcess:
        return 0.0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=300)
    parser.add_argument("--address", default=None, help="an existing Ray cluster")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory(prefix="lrbench-driver-memory-") as tmp:
        grid = Path(tmp) / "grid.toml"
        grid.write_text(GRID.format(trials=args.trials))
        out = Path(tmp) / "out"
        command = [
            str(Path(sys.executable).parent / "lrbench"),
            "sweep",
            str(grid),
            "--out",
            str(out),
        ]
        if args.address:
            command += ["--address", args.address]
        started = time.monotonic()
        log = open(Path(tmp) / "sweep.log", "w+")  # noqa: SIM115 (read back on failure)
        proc = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT)
        samples: list[tuple[float, int, float]] = []  # (seconds, trials stored, RSS MiB)
        while proc.poll() is None:
            stored = (
                len(list((out / "trials").glob("*.parquet"))) if (out / "trials").exists() else 0
            )
            rss = rss_mb(proc.pid)
            if rss:
                samples.append((time.monotonic() - started, stored, rss))
            time.sleep(0.5)
        wall = time.monotonic() - started
        log.seek(0)
        tail = log.read()[-3000:]
        log.close()
    if proc.returncode != 0:
        sys.exit(f"{tail}\nlrbench sweep exited {proc.returncode}")

    print(f"{args.trials} trials in {wall:.0f}s; driver RSS against trials stored:")
    print(f"{'trials':>7} {'RSS MiB':>8}")
    marks = sorted({round(args.trials * f / 10) for f in range(11)})
    for mark in marks:
        at = [rss for _, n, rss in samples if n >= mark]
        if at:
            print(f"{mark:>7} {at[0]:>8.0f}")
    # growth while trials run: the second tenth against the second-to-last tenth
    # (the last one includes the end of the sweep: reading results, shutting down)
    tenth = max(1, args.trials // 10)
    early = [rss for _, n, rss in samples if tenth <= n < 2 * tenth]
    late = [rss for _, n, rss in samples if args.trials - 2 * tenth <= n < args.trials - tenth]
    if early and late:
        growth = (statistics.median(late) - statistics.median(early)) / (args.trials - 3 * tenth)
        print(
            f"peak {max(s[2] for s in samples):.0f} MiB (at the end of the sweep); "
            f"growth while trials run: {growth * 100:+.1f} MiB per 100 trials"
        )


if __name__ == "__main__":
    main()
