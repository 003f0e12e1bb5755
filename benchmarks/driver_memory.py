"""Memory of the sweep driver over a long grid of trivial trials.

Runs ``lrbench sweep`` on a grid of ``--trials`` trivial trials (plain GD on
the first 100 images of the bundled MNIST subset, one epoch, one step each) in
a fresh process, samples the driver's resident memory (RSS) twice a second,
and prints it against the number of trials stored so far, with the growth per
100 trials between the first and the last tenth of the sweep.

``--cifar-like`` measures instead what a large dataset costs: it writes a
synthetic CIFAR-10-sized set (50,000 + 10,000 32x32x3 uint8 images, integer
labels) to an ``.npz`` in a temporary folder, sweeps a grid naming it by
``path`` (a small ``mlp``, ``--trials`` one-step trials, default 6), and
prints, in MB (10**6 bytes), the dataset's size, the driver's peak RSS (the
kernel's high-water mark, VmHWM) and how far above the dataset's size it is
(target: at most 400 MB), and the largest peak RSS of one Ray worker that ran
trials. Each RSS is split into anonymous (private) memory and shared memory:
the pages of Ray's object store that the process wrote or read, one copy for
the whole machine (the driver's copy of the dataset that its workers map).

Usage: python benchmarks/driver_memory.py [--trials 300] [--address ADDR]
       python benchmarks/driver_memory.py --cifar-like [--trials 6] [--address ADDR]
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


CIFAR_LIKE_GRID = """
name = "driver-memory-cifar-like"
datasets = [{{ name = "cifarlike", path = "cifarlike.npz", train_size = 100 }}]
models = [{{ name = "mlp", kwargs = {{ hidden = 8 }} }}]
optimizers = ["gd"]
lr = {{ start = 1e-6, stop = 1e-2, num = {trials} }}
batch_size = 100
[stop]
target = 0.99
budget_s = 60
max_epochs = 1
"""
TARGET_ABOVE_DATA_MB = 400  # the driver's peak, at most this far above the dataset's size


def rss_mb(pid: int) -> float:
    """Resident memory of a process, MiB (0 once it is gone)."""
    import psutil

    try:
        return psutil.Process(pid).memory_info().rss / 2**20
    except psutil.NoSuchProcess:
        return 0.0


def memory_mb(pid: int) -> dict[str, float]:
    """A process's memory from /proc/PID/status, MB: VmRSS, VmHWM (the peak
    RSS so far), RssAnon, RssShmem; empty once the process is gone."""
    try:
        lines = Path(f"/proc/{pid}/status").read_text().splitlines()
    except OSError:
        return {}
    keys = ("VmRSS", "VmHWM", "RssAnon", "RssShmem")
    found = {}
    for line in lines:
        key, _, value = line.partition(":")
        if key in keys:
            found[key] = int(value.split()[0]) * 1024 / 1e6  # kB
    return found


def ray_workers(driver: int, address: str | None) -> dict[int, str]:
    """Ray worker processes, pid -> process title (``ray::IDLE``, or what the
    worker runs): the driver's descendants with embedded Ray; on an existing
    cluster, every Ray worker on this machine."""
    import psutil

    if address:
        candidates = list(psutil.process_iter())
    else:
        try:
            candidates = psutil.Process(driver).children(recursive=True)
        except psutil.NoSuchProcess:
            return {}
    found = {}
    for proc in candidates:
        try:
            title = " ".join(proc.cmdline())
        except (psutil.NoSuchProcess, psutil.AccessDenied, psutil.ZombieProcess):
            continue
        if title.startswith("ray::"):
            found[proc.pid] = title.split()[0]
    return found


def cifar_like(args: argparse.Namespace) -> None:
    """The ``--cifar-like`` measurement (see the module's docstring)."""
    import numpy as np

    trials = args.trials or 6
    with tempfile.TemporaryDirectory(prefix="lrbench-driver-memory-") as tmp:
        rng = np.random.default_rng(0)
        arrays = {
            "x_train": rng.integers(0, 256, (50_000, 32, 32, 3), dtype=np.uint8),
            "y_train": rng.integers(0, 10, 50_000),
            "x_val": rng.integers(0, 256, (10_000, 32, 32, 3), dtype=np.uint8),
            "y_val": rng.integers(0, 10, 10_000),
        }
        data_mb = sum(a.nbytes for a in arrays.values()) / 1e6
        np.savez(Path(tmp) / "cifarlike.npz", **arrays)
        del arrays
        grid = Path(tmp) / "grid.toml"
        grid.write_text(CIFAR_LIKE_GRID.format(trials=trials))
        out = Path(tmp) / "out"
        command = [str(Path(sys.executable).parent / "lrbench"), "sweep", str(grid)]
        command += ["--out", str(out)] + (["--address", args.address] if args.address else [])
        started = time.monotonic()
        log = open(Path(tmp) / "sweep.log", "w+")  # noqa: SIM115 (read back on failure)
        proc = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT)
        driver: dict[str, float] = {}  # the largest value of each field seen
        titles: dict[int, set[str]] = {}  # worker pid -> the titles it had
        workers: dict[int, dict[str, float]] = {}  # worker pid -> the largest value of each field
        while proc.poll() is None:
            for key, value in memory_mb(proc.pid).items():
                driver[key] = max(driver.get(key, 0.0), value)
            for pid, title in ray_workers(proc.pid, args.address).items():
                titles.setdefault(pid, set()).add(title)
                peak = workers.setdefault(pid, {})
                for key, value in memory_mb(pid).items():
                    peak[key] = max(peak.get(key, 0.0), value)
            time.sleep(0.2)
        wall = time.monotonic() - started
        log.seek(0)
        tail = log.read()[-3000:]
        log.close()
    if proc.returncode != 0:
        sys.exit(f"{tail}\nlrbench sweep exited {proc.returncode}")

    peak = driver.get("VmHWM", 0.0)
    above = peak - data_mb
    verdict = "within" if above <= TARGET_ABOVE_DATA_MB else "ABOVE"
    print(f"{trials} one-step trials on a CIFAR-10-sized uint8 set in {wall:.0f}s")
    print(f"dataset: {data_mb:.0f} MB (50,000 + 10,000 uint8 32x32x3 images, int64 labels)")
    print(
        f"driver peak RSS: {peak:.0f} MB (anonymous up to {driver.get('RssAnon', 0):.0f}, "
        f"shared up to {driver.get('RssShmem', 0):.0f}: Ray's object store)"
    )
    print(
        f"driver peak - dataset: {above:+.0f} MB ({verdict} the target of "
        f"+{TARGET_ABOVE_DATA_MB} MB)"
    )
    # the workers that ran something (Tune's trial actors, its helpers), not idle ones
    busy = {pid: mem for pid, mem in workers.items() if titles[pid] - {"ray::IDLE"}}
    if busy:
        pid, mem = max(busy.items(), key=lambda w: w[1].get("VmHWM", 0.0))
        print(
            f"worker peak RSS: {mem.get('VmHWM', 0):.0f} MB (pid {pid}, "
            f"{', '.join(sorted(titles[pid] - {'ray::IDLE'}))}; anonymous up to "
            f"{mem.get('RssAnon', 0):.0f}, shared up to {mem.get('RssShmem', 0):.0f}); "
            f"{len(busy)} busy worker(s)"
        )
    else:
        print("worker peak RSS: no busy Ray worker seen")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=None, help="300; 6 with --cifar-like")
    parser.add_argument("--address", default=None, help="an existing Ray cluster")
    parser.add_argument(
        "--cifar-like",
        action="store_true",
        help="peak RSS of the driver and a worker with a CIFAR-10-sized uint8 dataset",
    )
    args = parser.parse_args()
    if args.cifar_like:
        cifar_like(args)
        return
    args.trials = args.trials or 300

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
