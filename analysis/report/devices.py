"""Sweeps that ran on several devices (a heterogeneous cluster): pure
DataFrame functions that split timings by device and find the cells whose
times mix devices.

Time to target depends on the device; steps to target do not. A cell whose
trials ran on different devices has a median time that is neither device's,
so the report names those cells and shows each device's seconds per step.
"""

from __future__ import annotations

import pandas as pd

from analysis.cells import CELL
from analysis.labels import labelled
from harness.store.records import TrialStatus

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


def _known(trials: pd.DataFrame) -> pd.DataFrame:
    """Labelled trials whose device is recorded."""
    df = labelled(trials)
    return df[df["device"].fillna("") != ""]


def _mixed_device_sets(df: pd.DataFrame) -> pd.Series:
    """Per cell (indexed by ``cells.CELL``) whose reached trials ran on more
    than one device: the set of those devices."""
    reached = df[df["status"] == TrialStatus.REACHED.value]
    devices = reached.groupby(CELL, sort=False)["device"].agg(frozenset)
    return devices[devices.map(len) > 1]


def is_heterogeneous(trials: pd.DataFrame) -> bool:
    """True when some source's trials ran on more than one device."""
    known = _known(trials)
    return bool(len(known)) and int(known.groupby("source")["device"].nunique().max()) > 1


def mixed_cells(trials: pd.DataFrame) -> pd.DataFrame:
    """The cells (series and LR) whose reached trials ran on more than one
    device, with those devices: their median time to target mixes hardware."""
    rows = [
        {**dict(zip(CELL, key, strict=True)), "devices": "; ".join(sorted(devices))}
        for key, devices in _mixed_device_sets(_known(trials)).items()
    ]
    return pd.DataFrame(rows, columns=[*CELL, "devices"])


def device_table(trials: pd.DataFrame) -> pd.DataFrame:
    """Per source and device: the Ray nodes and trials it had, how many
    reached, the median seconds per training step and its ratio to the
    source's fastest device (the hardware factor), the median time to target
    of its reached trials, and how many of the source's mixed cells it is in."""
    df = _known(trials)
    mixed = _mixed_device_sets(df)
    mixed_source = mixed.index.get_level_values("source")
    rows = []
    for (source, device), group in df.groupby(["source", "device"], sort=False):
        nodes = group["node_id"].fillna("")
        reached = group["status"] == TrialStatus.REACHED.value
        rows.append(
            {
                "source": source,
                "device": device,
                "nodes": int(nodes[nodes != ""].nunique()),
                "trials": len(group),
                "reached": int(reached.sum()),
                "step_time_median_s": float(group["step_time_s"].median()),
                "time_median_s": float(group.loc[reached, "time_to_target_s"].median()),
                "mixed_cells": int(
                    sum(device in devices for devices in mixed[mixed_source == source])
                ),
            }
        )
    out = pd.DataFrame(rows, columns=[c for c in DEVICE_COLUMNS if c != "step_time_ratio"])
    fastest = out.groupby("source")["step_time_median_s"].transform("min")
    out.insert(6, "step_time_ratio", out["step_time_median_s"] / fastest)
    return out
