"""Sweeps that ran on several devices (a heterogeneous cluster): pure
DataFrame functions that split timings by device and find the cells whose
times mix devices.

Time to target depends on the device; steps to target do not. A cell whose
trials ran on different devices has a median time that is neither device's,
so the report names those cells and shows each device's seconds per step.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from analysis import tables as T

if TYPE_CHECKING:
    import pandas as pd

DEVICE_COLUMNS = [
    "source",
    "device",
    "nodes",
    "trials",
    "reached",
    "step_time_median_s",
    "step_time_ratio",
    "time_median_s",
    "mixed_cells",
]


def is_heterogeneous(trials: pd.DataFrame) -> bool:
    """True when some source's trials ran on more than one device."""
    df = T._labelled(trials)
    known = df[df["device"].fillna("") != ""]
    return bool(len(known)) and int(known.groupby("source")["device"].nunique().max()) > 1


def mixed_cells(trials: pd.DataFrame) -> pd.DataFrame:
    """The cells (series and LR) whose reached trials ran on more than one
    device, with those devices: their median time to target mixes hardware."""
    import pandas as pd

    df = T._labelled(trials)
    reached = df[(df["status"] == "reached") & (df["device"].fillna("") != "")]
    rows = [
        {**dict(zip(T.CELL, key, strict=True)), "devices": "; ".join(sorted(set(g["device"])))}
        for key, g in reached.groupby(T.CELL, sort=False)
        if g["device"].nunique() > 1
    ]
    return pd.DataFrame(rows, columns=[*T.CELL, "devices"])


def device_table(trials: pd.DataFrame) -> pd.DataFrame:
    """Per source and device: the Ray nodes and trials it had, how many
    reached, the median seconds per training step and its ratio to the
    source's fastest device (the hardware factor), the median time to target
    of its reached trials, and how many of the source's mixed cells it is in."""
    import pandas as pd

    df = T._labelled(trials)
    df = df[df["device"].fillna("") != ""]
    mixed = mixed_cells(df)
    rows = []
    for (source, device), group in df.groupby(["source", "device"], sort=False):
        nodes = group["node_id"].fillna("") if "node_id" in group else pd.Series(dtype=str)
        in_mixed = mixed[
            (mixed["source"] == source) & mixed["devices"].str.contains(device, regex=False)
        ]
        rows.append(
            {
                "source": source,
                "device": device,
                "nodes": int(nodes[nodes != ""].nunique()),
                "trials": len(group),
                "reached": int((group["status"] == "reached").sum()),
                "step_time_median_s": float(group["step_time_s"].median()),
                "time_median_s": float(
                    group.loc[group["status"] == "reached", "time_to_target_s"].median()
                ),
                "mixed_cells": len(in_mixed),
            }
        )
    out = pd.DataFrame(rows, columns=[c for c in DEVICE_COLUMNS if c != "step_time_ratio"])
    fastest = out.groupby("source")["step_time_median_s"].transform("min")
    out.insert(6, "step_time_ratio", out["step_time_median_s"] / fastest)
    return out
