"""What the store's safe reads cost: this checkout's readers against another
revision's, side by side on one store.

This checkout's readers take each trial's newest copy and that copy's curve
(a trial stored twice reads once), tell corruption from I/O errors, and retry
the latter. This times them against the readers of a baseline source tree (a
``git worktree`` of an earlier revision) on the same synthetic store (written
by ``benchmarks/store_scale.py``'s writer, then compacted, as a finished sweep
leaves it), alternating the two in fresh subprocesses so that both see the
same machine load. Prints the median seconds of ``finished`` (every sweep's
start), ``read_trials`` and ``read_curves`` (every report), and the ratio.

Usage:
    git worktree add /tmp/lrbench-base <rev>
    python benchmarks/store_reads.py --baseline /tmp/lrbench-base [--trials 20000]
        [--points 40] [--repeats 5] [--singles 0]
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile

HERE = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
READS = ("finished", "read_trials", "read_curves")
PROBE = """
import sys, time
sys.path.insert(0, {src!r})
from harness.store.results import Store
store = Store({out!r})
started = time.perf_counter()
value = getattr(store, {read!r})()
print(time.perf_counter() - started, len(value))
"""


def timed(src: str, out: str, read: str) -> tuple[float, int]:
    """Seconds and rows of one read by the lrbench at ``src``, in a fresh process."""
    code = PROBE.format(src=src, out=out, read=read)
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=src
    )
    seconds, rows = done.stdout.split()
    return float(seconds), int(rows)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--baseline", required=True, help="source tree of another revision")
    parser.add_argument("--trials", type=int, default=20_000)
    parser.add_argument("--points", type=int, default=40, help="curve points per trial")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument(
        "--singles", type=int, default=0, help="trials written again as their own files"
    )
    args = parser.parse_args()
    sys.path.insert(0, HERE)
    from benchmarks.store_scale import outcome, specs, write_store
    from harness.store.results import Store

    out = os.path.join(tempfile.mkdtemp(prefix="lrbench-store-reads-"), "store")
    write_store(out, args.trials, args.points, threads=8)
    Store(out).compact()
    if args.singles:  # a grown grid's new trials beside the part, before compaction
        import random

        rng = random.Random(1)
        extra = specs(args.trials + args.singles)[args.trials :]
        for spec in extra:
            Store(out).write_trial(outcome(spec, args.points, rng))
    print(
        f"cpus: {os.cpu_count()}; {args.trials} compacted trials + {args.singles} per-trial "
        f"files, {args.points} curve points each; median of {args.repeats}, alternating"
    )
    print(f"{'read':14}{'baseline s':>12}{'this s':>10}{'ratio':>8}")
    for read in READS:
        runs: dict[str, list[float]] = {"base": [], "this": []}
        rows: dict[str, int] = {}
        for _ in range(args.repeats):
            for label, src in (("base", args.baseline), ("this", HERE)):
                seconds, n = timed(src, out, read)
                runs[label].append(seconds)
                rows[label] = n
        assert rows["base"] == rows["this"], (read, rows)
        base, this = statistics.median(runs["base"]), statistics.median(runs["this"])
        print(f"{read:14}{base:12.3f}{this:10.3f}{this / base:7.2f}x")


if __name__ == "__main__":
    main()
