"""Export results to TensorBoard: one run per trial, for browsing every trial
interactively (the HParams dashboard's table and parallel coordinates, each
curve in the Scalars dashboard).

A run is ``LOGDIR/<source>/<trial_id>`` (the source label made safe for a path).
It holds the trial's setup and status as hparams, its outcome as ``result/*``
scalars (the HParams dashboard's metric columns) and its curve as ``curve/*``
scalars against the optimizer step. One experiment config at the root of
LOGDIR declares the hparams and metrics, so the dashboard shows every column.

TensorBoard has no text metric, so the status is written twice: as the
``status`` hparam (a text column to filter on) and as the ``result/status_code``
metric, the position of the status in ``harness.store.records.TrialStatus``
(``STATUS_CODES``). A value that is missing or not finite (a NaN time to
target, a diverged trial's infinite loss) is left out rather than written.

Exporting again into the same LOGDIR replaces each run it writes (and the root
config), so a re-export never duplicates a trial; runs it does not write are
left alone.
"""

from __future__ import annotations

import contextlib
import math
import os
import re
import shutil
from collections import defaultdict
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import pandas as pd

from harness.errors import LrbenchError
from harness.lazy import lazy
from harness.store.records import STATUSES, TrialStatus
from harness.trial.quiet import import_tensorflow_quietly

if TYPE_CHECKING:
    import tensorflow as tf
    from tensorboard.plugins.hparams import api as hp
    from tensorboard.plugins.scalar import summary_v2 as scalar_summary

    from analysis.load import Results
else:
    tf = lazy("tensorflow", before=import_tensorflow_quietly)
    hp = lazy("tensorboard.plugins.hparams.api")
    scalar_summary = lazy("tensorboard.plugins.scalar.summary_v2")

# the trials columns written as hparams, with their description in the dashboard
HPARAMS: dict[str, str] = {
    "source": "results directory (its label)",
    "dataset": "dataset",
    "train_size": "first N training examples (absent: all)",
    "model": "model family",
    "width": "width multiplier",
    "model_kwargs": "model keywords (JSON)",
    "optimizer": "optimizer",
    "optimizer_kwargs": "optimizer keywords (JSON)",
    "lr": "learning rate (a schedule's base rate)",
    "schedule": "LR schedule",
    "batch_size": "batch size",
    "loss": "loss",
    "seed": "seed",
    "status": "how the trial ended: reached, budget, diverged or error",
}
# the trials columns written as ``result/<column>`` scalars: the HParams metrics
RESULTS: dict[str, str] = {
    "time_to_target_s": "training seconds to the target (reached trials)",
    "steps_to_target": "optimizer steps to the target (reached trials)",
    "final_train_acc": "target metric at the last check",
    "best_train_acc": "highest target metric at any check",
    "final_val_acc": "validation accuracy at the stop",
    "pruned": "1 if the pruning rule ended the trial early",
    "status_code": "0 reached, 1 budget, 2 diverged, 3 error",
}
# the curves columns written as ``curve/<column>`` scalars against the step
CURVES = ("train_acc", "train_loss", "running_acc", "recent_acc", "val_acc", "lr")
STATUS_CODES: dict[str, int] = {status.value: i for i, status in enumerate(TrialStatus)}
EVENTS_PREFIX = "events.out.tfevents."


class ExportError(LrbenchError):
    """A TensorBoard logdir that cannot be written."""


@dataclass(frozen=True)
class TensorBoardExport:
    """What ``export_tensorboard`` wrote."""

    logdir: str
    runs: int  # runs written, one per trial
    replaced: int  # of those, runs that an earlier export had written
    sources: tuple[str, ...]


def safe_name(label: str) -> str:
    """A source label as one path component: runs of characters other than
    letters, digits, ``.``, ``_`` and ``-`` become ``_``; no leading dot."""
    return re.sub(r"[^\w.-]+", "_", label, flags=re.ASCII).strip("._") or "results"


def run_names(trials: pd.DataFrame) -> list[str]:
    """Each trial's run, ``<safe source>/<trial_id>``, in the table's order; two
    sources that would share a safe name are told apart by a suffix."""
    folders: dict[str, str] = {}
    for source in dict.fromkeys(trials["source"]):
        name, n = safe_name(source), 1
        while name in folders.values():
            n += 1
            name = f"{safe_name(source)}-{n}"
        folders[source] = name
    ids = map(safe_name, trials["trial_id"])  # hex digits already; never a path of its own
    return [f"{folders[s]}/{t}" for s, t in zip(trials["source"], ids, strict=True)]


def plain(value: Any) -> Any:
    """A table value as a Python ``bool``, ``int``, ``float`` or ``str``; ``None``
    for a missing or non-finite one."""
    if value is None:
        return None
    if hasattr(value, "item") and not isinstance(value, str):  # numpy scalars
        value = value.item()
    if isinstance(value, bool | int | str):
        return value
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    return None  # pd.NA, NaT


def trial_hparams(row: dict[str, Any]) -> dict[str, bool | int | float | str]:
    """A trial row's hparams (``HPARAMS``), leaving out the missing ones."""
    values = {name: plain(row.get(name)) for name in HPARAMS}
    return {name: v for name, v in values.items() if v is not None}


def trial_results(row: dict[str, Any]) -> dict[str, float]:
    """A trial row's ``result/*`` scalars (``RESULTS``), leaving out the missing ones."""
    values = {name: plain(row.get(name)) for name in RESULTS if name != "status_code"}
    values["status_code"] = STATUS_CODES.get(str(row.get("status")))
    return {f"result/{k}": float(v) for k, v in values.items() if v is not None}


def curve_scalars(curve: pd.DataFrame) -> dict[str, list[tuple[int, float]]]:
    """A trial's curve as ``curve/<column>`` -> (step, value) points, the missing
    and non-finite values left out (``val_acc`` exists only at epoch ends)."""
    out: dict[str, list[tuple[int, float]]] = {}
    curve = curve.sort_values("step")
    steps = [plain(s) for s in curve["step"]]
    for column in CURVES:
        if column not in curve:
            continue
        points = [
            (int(s), float(v))
            for s, v in zip(steps, map(plain, curve[column]), strict=True)
            if s is not None and v is not None
        ]
        if points:
            out[f"curve/{column}"] = points
    return out


def _domain(name: str, trials: pd.DataFrame) -> Any:
    """A discrete domain of the values a column takes (numbers as floats), or None;
    ``status`` takes every ``TrialStatus``."""
    if name == "status":
        return hp.Discrete(list(STATUSES))
    present = {v for v in map(plain, trials[name]) if v is not None} if name in trials else set()
    if not present or len({isinstance(v, str) for v in present}) > 1:
        return None
    if all(isinstance(v, str) for v in present):
        return hp.Discrete(sorted(present))
    return hp.Discrete(sorted({float(v) for v in present}))


def _prepare(logdir: str) -> None:
    if "://" in logdir:
        raise ExportError(f"{logdir}: a TensorBoard logdir must be a local directory")
    try:
        os.makedirs(logdir, exist_ok=True)
    except OSError as exc:
        raise ExportError(f"{logdir}: cannot create the logdir ({exc.strerror})") from None
    if not os.access(logdir, os.W_OK | os.X_OK):
        raise ExportError(f"{logdir}: the logdir is not writable")


def export_tensorboard(results: Results, logdir: str | os.PathLike[str]) -> TensorBoardExport:
    """Write one TensorBoard run per trial of ``results`` under ``logdir`` (its
    hparams, result metrics and curve) and the experiment config at its root,
    replacing runs and config an earlier export wrote there.

    Raises ``ExportError`` (one line) when ``logdir`` cannot be written.
    """
    logdir = os.fspath(logdir)
    _prepare(logdir)

    # Writing events needs no GPU, and TF would claim a visible one's memory from a
    # sweep running there. Once TF has started in this process (a notebook), it stays.
    with contextlib.suppress(RuntimeError):
        tf.config.set_visible_devices([], "GPU")
    trials = results.trials
    names = run_names(trials)
    curves = dict(tuple(results.curves.groupby(["source", "trial_id"], sort=False)))
    config = [  # an hparam no trial has (train_size when all used every example) is left out
        hp.HParam(n, _domain(n, trials), description=d)
        for n, d in HPARAMS.items()
        if n == "status" or (n in trials and trials[n].notna().any())
    ]
    metrics = [hp.Metric(f"result/{n}", display_name=n, description=d) for n, d in RESULTS.items()]
    replaced = 0
    try:
        for entry in os.listdir(logdir):  # the config an earlier export wrote
            if entry.startswith(EVENTS_PREFIX):
                os.remove(os.path.join(logdir, entry))
        writer = tf.summary.create_file_writer(logdir)
        try:
            with writer.as_default():
                hp.hparams_config(hparams=config, metrics=metrics)
        finally:
            writer.close()
        for name, row in zip(names, trials.to_dict("records"), strict=True):
            run_dir = os.path.join(logdir, *name.split("/"))
            if os.path.lexists(run_dir):
                shutil.rmtree(run_dir)
                replaced += 1
            os.makedirs(run_dir)
            curve = curves.get((row["source"], row["trial_id"]))
            _write_run(run_dir, name, row, curve)
    except (OSError, tf.errors.OpError) as exc:
        reason = getattr(exc, "strerror", None) or getattr(exc, "message", None) or exc
        raise ExportError(f"{logdir}: cannot write TensorBoard logs ({reason})") from None
    return TensorBoardExport(logdir, len(names), replaced, tuple(results.sources))


def _write_run(run_dir: str, name: str, row: dict[str, Any], curve: pd.DataFrame | None) -> None:
    """One trial's run: hparams, result metrics at its last step, its curve."""
    started = row.get("started_at")
    start_s = None if started is None or pd.isna(started) else started.timestamp()
    last_step = plain(row.get("steps")) or 0
    by_step: dict[int, list[bytes]] = defaultdict(list)
    for tag, value in trial_results(row).items():
        by_step[last_step].append(scalar_summary.scalar_pb(tag, value).SerializeToString())
    for tag, points in (curve_scalars(curve) if curve is not None else {}).items():
        for step, value in points:
            by_step[step].append(scalar_summary.scalar_pb(tag, value).SerializeToString())
    writer = tf.summary.create_file_writer(run_dir)
    try:
        with writer.as_default():
            hp.hparams(trial_hparams(row), trial_id=name, start_time_secs=start_s)
            # one write per step, not per point: an eager tf.summary.scalar costs
            # about 0.6 ms, which is minutes for a sweep of a few hundred trials
            for step in sorted(by_step):
                tf.summary.experimental.write_raw_pb(by_step[step], step=step)
    finally:
        writer.close()
