"""What a trial and a range test produce: status, summary rows, curve points.

Each record is a frozen dataclass; the Parquet schemas (``harness.store.schemas``)
are derived from these fields, so adding a field is one edit here.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, fields
from datetime import datetime
from enum import Enum
from typing import TYPE_CHECKING, Any

from harness.grid.specs import SETUP_FIELDS, FinderSpec, Setup, kwargs_json

if TYPE_CHECKING:
    from harness.grid.specs import TrialSpec


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


STATUSES = tuple(s.value for s in TrialStatus)


def to_columns(values: dict[str, Any]) -> dict[str, Any]:
    """Values as the tables store them: enums by value, dicts as canonical JSON,
    ISO timestamps (``started_at``) as datetimes."""
    out = {}
    for key, value in values.items():
        if isinstance(value, Enum):
            value = value.value
        elif isinstance(value, dict):
            value = kwargs_json(value)
        elif key.endswith("started_at") and isinstance(value, str):
            value = datetime.fromisoformat(value) if value else None
        out[key] = value
    return out


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
class TrialRecord(Setup):
    """One trial's summary row: its setup, then what it measured. ``to_row``
    flattens it for the ``trials`` table."""

    trial_id: str
    lr: float
    target_metric: str
    target_acc: float
    budget_s: float
    max_epochs: int
    status: TrialStatus
    n_params: int | None = None
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
    reused: bool = False  # trained a model compiled by an earlier trial (harness.trial.reuse)
    pruned: bool = False  # stopped early by the pruning rule (status budget)
    # where the pruning rule stopped it: its training seconds and step then (for
    # a rechecked trial, where its first, pruned run stopped)
    pruned_at_s: float | None = None
    pruned_at_step: int | None = None
    # pruned first, then run again in full by the frontier guard (next to a
    # reached cell: harness.rules.frontier); the row is the full run's
    rechecked: bool = False
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
    # a hash of the prepared dataset the trial read (``Dataset.fingerprint``): it
    # changes with the data files (``--data-dir``) or their preparation
    data_fingerprint: str = ""
    input_shape: str = ""  # one example's shape, as JSON ("[28, 28, 1]")
    num_classes: int | None = None
    # a hash of a user's builder module (``harness.userref.fingerprint``); "" for
    # a built-in model, whose code is lrbench's own (``versions``)
    builder_fingerprint: str = ""

    @classmethod
    def from_spec(cls, spec: TrialSpec, status: TrialStatus, **measured: Any) -> TrialRecord:
        """A record of ``spec``'s setup, LR, stop rule and schedule, with the
        status and the measured fields."""
        from harness.grid.schedules import schedule_label

        stop = spec.stop
        return cls(
            **{name: getattr(spec, name) for name in SETUP_FIELDS},
            trial_id=spec.trial_id,
            lr=spec.lr,
            target_metric=stop.metric,
            target_acc=stop.target,
            budget_s=stop.budget_s,
            max_epochs=stop.max_epochs,
            lr_source=spec.lr_source,
            schedule=schedule_label(spec.schedule),
            status=status,
            **measured,
        )

    def to_row(self) -> dict[str, Any]:
        """A flat row of the ``trials`` table (``to_columns``)."""
        return to_columns(asdict(self))


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
            "pruned": r.pruned,
            "pruned_at_s": r.pruned_at_s if r.pruned_at_s is not None else -1.0,
            "pruned_at_step": r.pruned_at_step if r.pruned_at_step is not None else -1,
        }


@dataclass(frozen=True)
class FinderPoint:
    """One update of a range test."""

    step: int  # 1-based update count
    lr: float  # the LR this update used
    batch_loss: float  # the loss of this update's batch
    smoothed_loss: float  # bias-corrected EMA of the batch losses so far


@dataclass(frozen=True)
class FinderOutcome:
    """A finished range test: its spec, its curve, and why it stopped."""

    spec: FinderSpec
    points: list[FinderPoint]
    stop_reason: str  # "end" (ramp done), "diverged" (passed stop_factor x best), "nan"
    n_params: int
    started_at: str
    wall_s: float
    device: str = ""
    host: str = ""
    versions: dict[str, str] = field(default_factory=dict)

    def rows(self) -> list[dict[str, Any]]:
        """One flat row per point, the run's fields repeated (the ``finder`` table)."""
        run = {
            "finder_id": self.spec.finder_id,
            **asdict(self.spec.setup()),
            **asdict(self.spec.params),
            **{f.name: getattr(self, f.name) for f in fields(self) if f.name not in OUTCOME_PARTS},
        }
        return [to_columns({**run, **asdict(p)}) for p in self.points]


OUTCOME_PARTS = ("spec", "points")  # FinderOutcome fields that are not columns
