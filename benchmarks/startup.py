"""The CLI's start-up cost, measured side by side in one run.

Every command of ``lrbench`` starts by importing ``lrbench.cli``. The modules
behind the commands, and the heavy libraries under them, are held with
``harness.lazy.lazy``, so ``lrbench --help`` and a bad grid's one-line error
come back before NumPy, pandas, pyarrow, TensorFlow or Ray are loaded. This
script times, each in a fresh interpreter and alternated ``--repeats`` times:

- ``import lrbench.cli`` (what every command pays first);
- ``import lrbench.cli`` followed by pandas and pyarrow (what the start-up
  would cost if the CLI held its command modules eagerly: every command module
  reaches them);
- the whole ``lrbench --help`` and ``lrbench show`` of a grid with a typo (the
  one-line error path), as the console script runs them.

It prints the median of each, the ratio of the first two, and which heavy
libraries ``import lrbench.cli`` left loaded (none is the claim).

Usage: python benchmarks/startup.py [--repeats 15]
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
HEAVY = ("numpy", "pandas", "pyarrow", "tensorflow", "keras", "ray", "matplotlib")

LAZY = "import lrbench.cli"
EAGER = "import lrbench.cli, pandas, pyarrow, pyarrow.parquet"
LOADED = (
    f"import sys, lrbench.cli; print(','.join(m for m in {HEAVY!r} if m in sys.modules) or 'none')"
)


def _timed(argv: list[str], code: int) -> float:
    """Seconds ``argv`` took; it must exit with ``code`` (2: a bad grid's error)."""
    start = time.perf_counter()
    done = subprocess.run(argv, cwd=ROOT, capture_output=True, text=True)
    elapsed = time.perf_counter() - start
    if done.returncode != code:
        raise SystemExit(f"{' '.join(argv)} exited {done.returncode}, not {code}:\n{done.stderr}")
    return elapsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=15)
    args = parser.parse_args()
    script = str(Path(sys.executable).with_name("lrbench"))
    with tempfile.TemporaryDirectory() as tmp:
        bad = Path(tmp) / "typo.toml"
        bad.write_text('name = "typo"\nmodels = ["tiny_cnn"]\noptimizer = ["adam"]\nlr = [0.01]\n')
        cases = {  # name: (command, its exit code)
            "import lrbench.cli": ([sys.executable, "-c", LAZY], 0),
            "  + pandas, pyarrow": ([sys.executable, "-c", EAGER], 0),
            "lrbench --help": ([script, "--help"], 0),
            "lrbench show (grid typo)": ([script, "show", str(bad)], 2),
        }
        _timed(*cases["import lrbench.cli"])  # warm the file cache once
        times: dict[str, list[float]] = {name: [] for name in cases}
        for _ in range(args.repeats):  # alternated, so load hits every case alike
            for name, (argv, code) in cases.items():
                times[name].append(_timed(argv, code))
    loaded = subprocess.run(
        [sys.executable, "-c", LOADED], cwd=ROOT, capture_output=True, text=True, check=True
    ).stdout.strip()
    medians = {name: statistics.median(t) for name, t in times.items()}
    print(f"median of {args.repeats} fresh interpreters, alternated:")
    for name, median in medians.items():
        print(f"  {name:<28} {median:6.3f} s")
    ratio = medians["  + pandas, pyarrow"] / medians["import lrbench.cli"]
    print(f"start-up with pandas and pyarrow / as it is: {ratio:.1f}x")
    print(f"heavy libraries loaded by import lrbench.cli: {loaded}")


if __name__ == "__main__":
    main()
