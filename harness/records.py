"""What a trial produces: its status, its summary row and its curve points."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field, fields
from enum import Enum
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from harness.grid import TrialSpec


class TrialStatus(Enum):
    """How a trial ended. Stored by name (the lower-case value)."""

    REACHED = "reached"  # hit the target accuracy
    BUDGET = "budget"  # ran out of time budget or epochs first
    DIVERGED = "diverged"  # loss turned NaN/Inf or exploded
    ERROR = "error"  # an exception; the message is kept

    def is_finished(self) -> bool:
        """True for an outcome a rerun keeps; an ``error`` trial is run again."""
        return self is not TrialStatus.ERROR

    def succeeded(self) -> bool:
        """True when the trial reached its target."""
        return self is TrialStatus.REACHED


@dataclass(frozen=True)
class CurvePoint:
    """One check of a running trial."""

    trial_id: str
    step: int
    epoch: float  # examples seen / training-set size
    examples: int
    elapsed_s: float  # timed training seconds since the first compiled step
    lr: float
    train_loss: float  # mean loss over the steps since the previous check
    train_acc: float  # the target metric (running or recent)
    running_acc: float
    recent_acc: float
    val_acc: float | None = None


@dataclass(frozen=True)
class TrialRecord:
    """One trial's summary row. ``to_row`` flattens it for the ``trials`` table."""

    trial_id: str
    sweep: str
    dataset: str
    train_size: int | None
    model: str
    width: float
    n_params: int | None
    optimizer: str
    optimizer_kwargs: dict[str, Any]
    model_kwargs: dict[str, Any]
    lr: float
    batch_size: int
    loss: str
    seed: int
    target_metric: str
    target_acc: float
    budget_s: float
    max_epochs: int
    status: TrialStatus
    lr_source: str = ""  # where the LR came from: "grid", or an earlier sweep's best
    schedule: str = "constant"  # the LR schedule's label; ``lr`` is its base rate
    time_to_target_s: float | None = None
    steps_to_target: int | None = None
    epochs_to_target: float | None = None
    examples_to_target: int | None = None
    steps: int = 0
    epochs: float = 0.0
    train_s: float = 0.0
    startup_s: float = 0.0
    val_s: float = 0.0
    wall_s: float = 0.0
    step_time_s: float | None = None  # median training seconds per step
    final_train_acc: float | None = None
    best_train_acc: float | None = None
    final_val_acc: float | None = None
    final_train_loss: float | None = None
    error: str | None = None
    traceback: str | None = None
    started_at: str = ""
    host: str = ""
    worker_pid: int | None = None
    node_id: str = ""  # the Ray node the trial ran on ("" outside Ray)
    node_ip: str = ""
    device: str = ""
    cpus: float = 1.0
    gpus: float = 0.0
    versions: dict[str, str] = field(default_factory=dict)

    @classmethod
    def from_spec(cls, spec: TrialSpec, status: TrialStatus, **measured: Any) -> TrialRecord:
        """A record carrying the spec's fields (those the record has), the status,
        and the measured fields."""
        shared = {
            f.name: getattr(spec, f.name)
            for f in fields(spec)
            if f.name in cls.__dataclass_fields__
        }
        shared["schedule"] = spec.schedule_label
        return cls(trial_id=spec.trial_id, status=status, **shared, **measured)

    def to_row(self) -> dict[str, Any]:
        """A flat row: enum by name, dicts as JSON strings."""
        row = asdict(self)
        row["status"] = self.status.value
        for key in ("optimizer_kwargs", "model_kwargs", "versions"):
            row[key] = json.dumps(row[key], sort_keys=True)
        return row


@dataclass(frozen=True)
class TrialOutcome:
    """A finished trial: its record and its curve."""

    record: TrialRecord
    curve: list[CurvePoint]

    def summary(self) -> dict[str, Any]:
        """The few numbers reported to Ray Tune (and shown by the progress line)."""
        r = self.record
        return {
            "trial_id": r.trial_id,
            "status": r.status.value,
            "time_to_target_s": r.time_to_target_s if r.time_to_target_s is not None else -1.0,
            "steps": r.steps,
            "wall_s": r.wall_s,
        }
