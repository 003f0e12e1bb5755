"""How a valley moves between setups of one optimizer (loss, output
activation, LR schedule): pure functions on labelled trials."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd

from analysis.cells import MIN_SUCCESS, cells
from analysis.labels import labelled, setup_labels


def _default_score(row: pd.Series) -> int:
    """How many of a series' setup values are the usual defaults (cross-entropy,
    constant LR, softmax output): the reference series has the most."""
    score = int(row.get("loss") == "crossentropy") + int(row.get("schedule") == "constant")
    kwargs = row.get("model_kwargs")
    if isinstance(kwargs, str):
        kwargs = json.loads(kwargs or "{}")
    return score + int((kwargs or {}).get("output_activation", "softmax") == "softmax")


def valley_shifts(
    trials: pd.DataFrame, table: pd.DataFrame, curves: pd.DataFrame | None = None
) -> pd.DataFrame:
    """Where an optimizer ran several setups (loss, schedule, output activation,
    ...) in one source: each series against the optimizer's reference series,
    the one closest to the defaults (cross-entropy, constant LR, softmax; the
    first of equals). ``best_shift_decades`` is ``log10(best LR / reference best
    LR)``; ``width_change_decades`` is the band's width minus the reference's;
    ``low_shift``/``high_shift`` move the band's edges, in decades. With
    ``curves``, ``initial_loss`` is the median loss at the first check (the loss
    scale). ``table`` is ``optimizer_table``'s."""
    df = labelled(trials)
    first = df.drop_duplicates(["source", "series"]).set_index(["source", "series"])
    if curves is not None and len(curves):
        on = ["source", "trial_id"] if "source" in curves.columns else ["trial_id"]
        start = curves.sort_values("step").drop_duplicates(on)[[*on, "train_loss"]]
        loss0 = df.merge(start, on=on).groupby(["source", "series"])["train_loss"].median()
    else:
        loss0 = pd.Series(dtype="float64")
    rows = []
    for (source, optimizer), group in table.groupby(["source", "optimizer"], sort=False):
        if len(group) < 2:
            continue
        scores = [_default_score(first.loc[(source, s)]) for s in group["series"]]
        ref = group.iloc[int(np.argmax(scores))]
        reference_first = [int(np.argmax(scores))] + [
            i for i in range(len(group)) if i != int(np.argmax(scores))
        ]
        for _, row in group.iloc[reference_first].iterrows():
            rows.append(
                {
                    "source": source,
                    "optimizer": optimizer,
                    "series": row["series"],
                    "reference": ref["series"],
                    "is_reference": row["series"] == ref["series"],
                    "best_lr": row["best_lr"],
                    "best_time_s": row["best_time_s"],
                    "best_shift_decades": np.log10(row["best_lr"] / ref["best_lr"]),
                    "lr_low": row["lr_low"],
                    "lr_high": row["lr_high"],
                    "decades": row["decades"],
                    "width_change_decades": row["decades"] - ref["decades"],
                    "low_shift_decades": np.log10(row["lr_low"] / ref["lr_low"]),
                    "high_shift_decades": np.log10(row["lr_high"] / ref["lr_high"]),
                    "initial_loss": loss0.get((source, row["series"]), np.nan),
                }
            )
    return pd.DataFrame(
        rows,
        columns=[
            "source",
            "optimizer",
            "series",
            "reference",
            "is_reference",
            "best_lr",
            "best_time_s",
            "best_shift_decades",
            "lr_low",
            "lr_high",
            "decades",
            "width_change_decades",
            "low_shift_decades",
            "high_shift_decades",
            "initial_loss",
        ],
    )


def facet_cells(trials: pd.DataFrame, facet: str, min_success: float = MIN_SUCCESS) -> pd.DataFrame:
    """``cells`` with a ``facet`` column (the value of the grid axis ``facet``,
    prefixed with the source when there are several) and a ``line`` column (the
    series named without that axis), for valley plots faceted by one axis."""
    df = labelled(trials).copy()
    rest = setup_labels(df, exclude=(facet,))
    df["line"] = [f"{o} ({v})" if v else o for o, v in zip(df["optimizer"], rest, strict=True)]
    several = df["source"].nunique() > 1
    df["facet"] = [
        f"{src}: {value}" if several else str(value)
        for src, value in zip(df["source"], df[facet], strict=True)
    ]
    c = cells(df, min_success)
    names = df.drop_duplicates(["source", "series"])[["source", "series", "facet", "line"]]
    return c.merge(names, on=["source", "series"], how="left")
