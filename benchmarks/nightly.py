"""How the nightly judgement scales with the length of the history.

Builds synthetic histories (no training) of the nightly grid's shape, 96 trials
a night, with a few percent of timing noise, and times, for each length:
committing one more night, reading the whole history back, judging the latest
night, and writing the report. Prints one row per length, and the ratio of the
longest history's times to the shortest's. ``uncached s`` judges the same night
with ``NightCells`` computing every set of nights anew, as the judgement did
before it kept them: the ratio is the cache's saving, side by side.

Usage: python benchmarks/nightly.py [--nights 30 90 365]
"""

from __future__ import annotations

import argparse
import json
import random
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


def night_trials(rng: random.Random, started):
    """One synthetic night of the nightly grid (every optimizer x LR x 2 seeds):
    the middle LRs reach the target, lower ones run out of budget, higher ones
    diverge."""
    import pandas as pd

    from harness.grid.parse import load_grid
    from harness.grid.resolved import ResolvedGrid
    from harness.store.records import TrialRecord, TrialStatus

    grid = ResolvedGrid.fixed(load_grid(ROOT / "grids" / "nightly.toml"))
    lrs = sorted({choice.lr for choice in grid.lrs})
    rows = []
    for spec in grid.expand():
        i = lrs.index(spec.lr)
        if 2 <= i <= 4:
            status = TrialStatus.REACHED
        else:
            status = TrialStatus.BUDGET if i < 2 else TrialStatus.DIVERGED
        time_s = (1.0 + i) * rng.uniform(0.95, 1.05)
        reached = status is TrialStatus.REACHED
        record = TrialRecord.from_spec(
            spec,
            status,
            time_to_target_s=time_s if reached else None,
            steps_to_target=100 * (1 + i) if reached else None,
            steps=100 * (1 + i),
            started_at=started.isoformat(),
            device="cpu: bench",
            n_params=3300,
        )
        rows.append(record.to_row())
    frame = pd.DataFrame(rows)
    frame["started_at"] = pd.to_datetime(frame["started_at"], utc=True)
    return frame


def commit(history, rng, day: int) -> float:
    import pandas as pd

    started = pd.Timestamp("2026-01-01T03:00:00Z") + pd.Timedelta(days=day)
    trials = night_trials(rng, started)
    night = {
        "run_started_at": started,
        "grid_digest": "bench",
        "revision": "abc",
        "complete": True,
        "env": json.dumps({"device": "cpu: bench", "versions": {"tensorflow": "2.21.0"}}),
    }
    t0 = time.perf_counter()
    history.append(f"{started:%Y-%m-%d}", f"{started:%Y%m%dT%H%M%SZ}-{day:06d}", trials, night, {})
    return time.perf_counter() - t0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--nights", type=int, nargs="+", default=[30, 90, 365])
    args = parser.parse_args()

    import matplotlib

    matplotlib.use("Agg")
    from analysis.nightly import judge as judge_module
    from analysis.nightly import render
    from analysis.nightly.judge import Rules, judge
    from analysis.nightly.noise import NightCells, night_cells
    from harness.store.history import History

    class Uncached(NightCells):
        def of(self, run_ids):
            rows = self.history[self.history["run_id"].isin(frozenset(run_ids))]
            return night_cells(rows, self.min_success)

    rules = Rules()
    rows = []
    with tempfile.TemporaryDirectory(prefix="lrbench-nightly-bench-") as tmp:
        for length in sorted(args.nights):
            history = History(str(Path(tmp) / f"h{length}"))
            rng = random.Random(length)
            for day in range(length - 1):
                commit(history, rng, day)
            commit_s = commit(history, rng, length - 1)
            t0 = time.perf_counter()
            frame = history.read()
            read_s = time.perf_counter() - t0
            t0 = time.perf_counter()
            judgement = judge(frame, rules)
            judge_s = time.perf_counter() - t0
            judge_module.NightCells = Uncached  # the same judgement, no set of nights kept
            t0 = time.perf_counter()
            uncached = judge(frame, rules)
            uncached_s = time.perf_counter() - t0
            judge_module.NightCells = NightCells
            assert uncached.findings.equals(judgement.findings)
            t0 = time.perf_counter()
            render.write(history, judgement, rules)
            report_s = time.perf_counter() - t0
            rows.append((length, len(frame), commit_s, read_s, judge_s, report_s, uncached_s))
    print(
        f"{'nights':>7} {'rows':>7} {'commit s':>9} {'read s':>8} {'judge s':>8} "
        f"{'report s':>9} {'uncached s':>11} {'cache':>6}"
    )
    for length, n, c, r, j, w, u in rows:
        print(
            f"{length:>7} {n:>7} {c:>9.3f} {r:>8.3f} {j:>8.3f} {w:>9.3f} {u:>11.3f} {u / j:>5.1f}x"
        )
    first, last = rows[0], rows[-1]
    growth = last[0] / first[0]
    print(
        f"{last[0]} vs {first[0]} nights ({growth:.0f}x the history): "
        f"read {last[3] / first[3]:.1f}x, judge {last[4] / first[4]:.1f}x, "
        f"report {last[5] / first[5]:.1f}x"
    )


if __name__ == "__main__":
    main()
