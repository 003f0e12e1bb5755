"""How many trials can share one GPU before each one slows down.

For each GPU fraction (``--fractions 1 0.5 0.25 0.125``) runs ``lrbench sweep``
on a grid of 1/fraction identical trials with ``gpus = fraction``, so that Ray
packs them all onto one GPU at once, each training a fixed amount of work (a
target it cannot reach, ``--epochs`` epochs). Prints, side by side: trials on
the GPU at once, the median seconds per training step, and the throughput of
all of them together (training examples a second), each as a ratio to one
trial alone. Packing pays while the aggregate ratio rises; it has gone too far
once the per-trial step time grows faster than the trial count.

Needs a machine with an NVIDIA GPU and lrbench[gpu]; exits with a message
elsewhere.

Usage: python benchmarks/gpu_packing.py [--model tiny_cnn] [--fractions 1 0.5 0.25]
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

GRID = """
name = "gpu-packing-{tag}"
datasets = ["mnist5k"]
models = [{{ name = "{model}", widths = [1] }}]
optimizers = ["adam"]
lr = [0.001]
seeds = {seeds}
batch_size = 100
[stop]
target = 1.01
budget_s = 600
max_epochs = {epochs}
[resources]
cpus = 1
gpus = {fraction}
"""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="tiny_cnn")
    parser.add_argument("--epochs", type=int, default=5)
    parser.add_argument("--fractions", type=float, nargs="+", default=[1, 0.5, 0.25, 0.125])
    args = parser.parse_args()
    if shutil.which("nvidia-smi") is None:
        sys.exit("no NVIDIA GPU here (nvidia-smi not found): run this on a GPU machine")

    import pandas as pd

    lrbench = str(Path(sys.executable).parent / "lrbench")
    rows = []
    with tempfile.TemporaryDirectory(prefix="lrbench-gpu-packing-") as tmp:
        for fraction in args.fractions:
            trials = max(1, round(1 / fraction))
            tag = f"{trials}x"
            grid = Path(tmp) / f"{tag}.toml"
            grid.write_text(
                GRID.format(
                    tag=tag, model=args.model, seeds=trials, epochs=args.epochs, fraction=fraction
                )
            )
            out = Path(tmp) / tag
            done = subprocess.run(
                [lrbench, "sweep", str(grid), "--out", str(out)], capture_output=True, text=True
            )
            if done.returncode != 0:
                sys.exit(done.stdout[-2000:] + done.stderr[-2000:])
            df = pd.read_parquet(out / "trials")
            if df["device"].str.startswith("cpu:").any():
                sys.exit(f"trials ran on {set(df['device'])}, not on a GPU")
            examples = (df["steps"] * df["batch_size"]).sum()
            rows.append(
                {
                    "trials on the GPU": trials,
                    "s / step (median)": df["step_time_s"].median(),
                    "examples/s (all)": examples / df["train_s"].max(),
                    "device": df["device"].iloc[0],
                }
            )
    table = pd.DataFrame(rows)
    table["step time vs 1"] = table["s / step (median)"] / table["s / step (median)"].iloc[0]
    table["throughput vs 1"] = table["examples/s (all)"] / table["examples/s (all)"].iloc[0]
    print(table.to_string(index=False, float_format=lambda v: f"{v:.3g}"))


if __name__ == "__main__":
    main()
