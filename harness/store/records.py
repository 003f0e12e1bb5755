"""What a trial and a range test produce: status, summary rows, curve points; and
the JSON records beside them: a results directory's manifest (``Manifest``, its
``RunEntry``s) and a nightly run's identity (``NightInfo``).

Each record is a frozen dataclass; the Parquet schemas (``harness.store.schemas``)
are derived from the row fields, so adding a column is one edit here.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, fields, replace
from datetime import datetime
from enum import Enum
from typing import TYPE_CHECKING, Any

from harness.grid.resolved import ResolvedGrid
from harness.grid.schedules import schedule_label
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


# -- the JSON records of a results directory and a nightly history


def _known(data: dict[str, Any], keys: tuple[str, ...]) -> dict[str, Any]:
    """The keys of ``data`` a record has fields for; the rest it keeps as they are."""
    return {k: data[k] for k in keys if k in data}


@dataclass(frozen=True)
class RunEntry:
    """One run of a sweep into its results directory (its start, or a resume), as
    the manifest's ``runs`` list records it. ``sweep_run_id`` is stored as
    ``run_id``; a nightly run has its own id (``NightInfo.run_id``), under which
    its sweep's runs are entries like this one."""

    sweep_run_id: str
    started_at: str | None = None
    source: str | None = None  # the grid file, as shown (no credentials)
    grid_digest: str | None = None
    finished_at: str | None = None  # set when the run ended (``Manifest.closed``)
    wall_s: float | None = None
    counts: dict[str, int] | None = None  # the store's trials by status at the end
    # where it ran: host, cpu, versions, address, trials, pending, the cluster's resources
    info: dict[str, Any] = field(default_factory=dict)

    _KEYS = ("started_at", "source", "grid_digest", "finished_at", "wall_s", "counts")

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> RunEntry:
        info = {k: v for k, v in data.items() if k != "run_id" and k not in cls._KEYS}
        return cls(str(data.get("run_id", "")), **_known(data, cls._KEYS), info=info)

    def to_json(self) -> dict[str, Any]:
        data = {"run_id": self.sweep_run_id, **self.info}
        data.update({k: getattr(self, k) for k in self._KEYS if getattr(self, k) is not None})
        return data


@dataclass(frozen=True)
class GridVersion:
    """A version of the grid a results directory has held (a grown grid adds one)."""

    digest: str
    added_at: str
    grid: dict[str, Any]  # ``ResolvedGrid.to_json``

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


MANIFEST_SOURCE = "manifest.json"  # the source of a grid read back from a manifest


@dataclass(frozen=True)
class Manifest:
    """A results directory's ``manifest.json``: the grid it holds (and each
    version of it that the directory has grown through), and one entry per run.
    Keys an older or newer lrbench wrote that this one does not know are kept
    (``extra``), so a rewrite loses nothing."""

    name: str
    grid_digest: str
    grid: dict[str, Any]  # the latest version's ``ResolvedGrid.to_json``
    created_at: str
    schema_version: int | None = None
    runs: tuple[RunEntry, ...] = ()
    grid_versions: tuple[GridVersion, ...] = ()  # none in a manifest older than growth
    extra: dict[str, Any] = field(default_factory=dict)

    _KEYS = ("name", "grid_digest", "grid", "created_at", "schema_version")

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Manifest:
        extra = {k: v for k, v in data.items() if k not in (*cls._KEYS, "runs", "grid_versions")}
        return cls(
            name=str(data.get("name", "")),
            grid_digest=str(data.get("grid_digest", "")),
            grid=data.get("grid") or {},
            created_at=str(data.get("created_at", "")),
            schema_version=data.get("schema_version"),
            runs=tuple(RunEntry.from_json(r) for r in data.get("runs", [])),
            grid_versions=tuple(GridVersion(**v) for v in data.get("grid_versions", [])),
            extra=extra,
        )

    def to_json(self) -> dict[str, Any]:
        data = {**self.extra, **{k: getattr(self, k) for k in self._KEYS}}
        if self.schema_version is None:
            data.pop("schema_version")
        data["runs"] = [r.to_json() for r in self.runs]
        if self.grid_versions:
            data["grid_versions"] = [v.to_json() for v in self.grid_versions]
        return data

    def versions(self) -> list[str]:
        """The digests of every version of the grid held here, oldest first."""
        return [v.digest for v in self.grid_versions] or [self.grid_digest]

    def opened(self, grid: dict[str, Any], digest: str, entry: RunEntry, at: str) -> Manifest:
        """This manifest with a run of the grid ``grid`` (``digest``) started at
        ``at`` recorded, and that grid as its latest version when it grows the
        one stored."""
        versions = self.grid_versions or (
            GridVersion(self.grid_digest, self.created_at, self.grid),
        )
        grown = replace(self, runs=(*self.runs, entry), grid_versions=versions)
        if digest in [v.digest for v in versions]:
            return grown
        versions = (*versions, GridVersion(digest, at, grid))
        return replace(grown, grid_digest=digest, grid=grid, grid_versions=versions)

    def closed(self, sweep_run_id: str, at: str, wall_s: float, counts: dict[str, int]) -> Manifest:
        """This manifest with the end of the run ``sweep_run_id`` recorded."""
        runs = tuple(
            replace(r, finished_at=at, wall_s=round(wall_s, 3), counts=counts)
            if r.sweep_run_id == sweep_run_id
            else r
            for r in self.runs
        )
        return replace(self, runs=runs)

    def resolved_grid(self) -> ResolvedGrid:
        """The grid stored here, as this lrbench reads it (``ResolvedGrid.from_json``)."""
        return ResolvedGrid.from_json(self.grid, source=MANIFEST_SOURCE)


@dataclass(frozen=True)
class NightInfo:
    """A nightly run's identity, stored as ``run.json`` in its results directory
    from its start until the night is committed: ``run_id`` names the night in
    the history (its file, ``lrbench nightly judge --run``)."""

    run_id: str  # its UTC start and a random suffix: sortable, unique
    date: str  # the UTC date it started: its partition
    started_at: str
    grid: str  # the grid's name
    grid_digest: str
    source: str  # the grid file, as shown (no credentials)
    extra: dict[str, Any] = field(default_factory=dict)

    _KEYS = ("run_id", "date", "started_at", "grid", "grid_digest", "source")

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> NightInfo:
        known = {k: str(data.get(k, "")) for k in cls._KEYS}
        return cls(**known, extra={k: v for k, v in data.items() if k not in cls._KEYS})

    def to_json(self) -> dict[str, Any]:
        return {**self.extra, **{k: getattr(self, k) for k in self._KEYS}}
