"""The vocabulary of the analysis: the trial statuses, the grid axes that
split a valley into series, how series are named and ordered, and the short
text of learning rates and setup values.

A **series** is one optimizer's valley: the trials of one results directory
(``source``) and one optimizer, split further by any other grid axis that
varies within that optimizer (width, loss, batch size, ...; the ``variant``).
"""

from __future__ import annotations

import json
import math
from typing import Any

import pandas as pd

from harness.grid.specs import REFERENCE_OPTIMIZERS, parse_kwargs

# Grid axes that, when they vary within one optimizer of one sweep, split its
# valley into several series.
AXES = (
    "dataset",
    "train_size",
    "model",
    "width",
    "model_kwargs",
    "optimizer_kwargs",
    "batch_size",
    "loss",
    "schedule",
    "target_metric",
    "target_acc",
    "budget_s",
    "max_epochs",
)
OPTIMIZER_ORDER = REFERENCE_OPTIMIZERS


def value_text(column: str, value: Any, keys: set[str] | None = None) -> str:
    """``column=value`` text; for a ``*_kwargs`` column, its ``key=value`` items
    (only ``keys``, when given: the ones that vary)."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return f"{column}=all" if column == "train_size" else f"{column}=none"
    if column.endswith("_kwargs"):
        items = parse_kwargs(value)
        if keys is not None:
            items = {k: items.get(k, "default") for k in keys}
        return ", ".join(f"{k}={v}" for k, v in sorted(items.items())) or f"{column}={{}}"
    if isinstance(value, float):
        return f"{column}={value:g}"
    return f"{column}={value}"


def fmt_lr(lr: float) -> str:
    """A learning rate as short text: 1e-5, 3e-4, 0.003, 0.3, 10, 100, 1e4."""
    if 1e-3 <= abs(lr) < 1e4 or lr == 0:
        return f"{float(f'{lr:.2g}'):g}"
    mantissa, exponent = f"{lr:.1e}".split("e")
    mantissa = mantissa.rstrip("0").rstrip(".")
    return f"{mantissa}e{int(exponent)}"


def setup_labels(df: pd.DataFrame, exclude: tuple[str, ...] = ()) -> pd.Series:
    """Per row, the grid axes (``AXES`` less ``exclude``) that vary within its
    source and optimizer, as ``key=value`` text (``""`` where none vary)."""
    labels = pd.Series("", index=df.index, dtype=object)
    for _, group in df.groupby(["source", "optimizer"], sort=False):
        varying = [
            c
            for c in AXES
            if c not in exclude
            and c in group.columns
            and group[c].astype(str).nunique(dropna=False) > 1
        ]
        if varying:
            keys = {c: _varying_keys(group[c]) for c in varying if c.endswith("_kwargs")}
            labels[group.index] = [
                "; ".join(value_text(c, row[c], keys.get(c)) for c in varying)
                for _, row in group[varying].iterrows()
            ]
    return labels


def _varying_keys(column: pd.Series) -> set[str]:
    """The keys whose values differ across a column of keyword dicts."""
    dicts = [parse_kwargs(v) for v in column]
    names = set().union(*dicts)
    return {k for k in names if len({json.dumps(d.get(k)) for d in dicts}) > 1}


def optimizer_rank(name: str) -> tuple[int, str]:
    """Sort key: the reference experiment's optimizers first, in its order."""
    order = {n: i for i, n in enumerate(OPTIMIZER_ORDER)}
    return (order.get(name, len(order)), name)


def label_series(trials: pd.DataFrame) -> pd.DataFrame:
    """A copy of ``trials`` with ``source`` (the sweep name if absent), ``variant``
    and ``series`` columns, sorted by source, optimizer order, variant and LR."""
    df = trials.copy()
    if "source" not in df.columns:
        df.insert(0, "source", df["sweep"])
    df["variant"] = setup_labels(df)
    df["series"] = [
        f"{opt} ({var})" if var else opt
        for opt, var in zip(df["optimizer"], df["variant"], strict=True)
    ]
    sources = list(dict.fromkeys(df["source"]))
    df["_source_rank"] = df["source"].map({s: i for i, s in enumerate(sources)})
    df["_opt_rank"] = df["optimizer"].map(optimizer_rank)
    df = df.sort_values(["_source_rank", "_opt_rank", "variant", "lr", "seed"], kind="stable")
    return pd.DataFrame(df.drop(columns=["_source_rank", "_opt_rank"])).reset_index(drop=True)


def labelled(trials: pd.DataFrame) -> pd.DataFrame:
    """``trials`` as ``label_series`` returns them (unchanged if already labelled)."""
    return trials if "series" in trials.columns else label_series(trials)
