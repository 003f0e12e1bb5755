"""Spec dataclasses: what a grid, a trial and a range test are made of.

The leaf of the package: it imports nothing of lrbench, so every stage (grid
parsing, trials, the sweep, the store, analysis) shares these types without
an import circle. ``harness.grid.parse`` reads a TOML file into a ``GridSpec``,
its ``lr`` setting one ``LrSetting``; ``lrbench.compose`` resolves it into a
``harness.grid.resolved.ResolvedGrid``, whose ``expand`` gives the
``TrialSpec``s; a trial's hash is its id.
"""

from __future__ import annotations

import hashlib
import json
import math
from dataclasses import asdict, dataclass, field, fields
from typing import Any

CONSTANT_SCHEDULE: dict[str, Any] = {"name": "constant"}
TARGET_METRICS = ("recent", "running", "val")  # StopRule.metric


def kwargs_json(kwargs: dict[str, Any] | None) -> str:
    """Keyword arguments as the canonical JSON text every table stores."""
    return json.dumps(dict(kwargs or {}), sort_keys=True)


def parse_kwargs(value: Any) -> dict[str, Any]:
    """Stored keyword arguments (``kwargs_json`` text, a dict or None) as a dict."""
    return json.loads(value) if isinstance(value, str) else dict(value or {})


def digest(data: Any, length: int = 16) -> str:
    """A stable hash of JSON-able data (keys sorted): trial, range-test and grid ids."""
    canonical = json.dumps(data, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(canonical.encode()).hexdigest()[:length]


def is_constant(schedule: dict[str, Any] | None) -> bool:
    """True for no schedule or the constant one."""
    return not schedule or schedule.get("name") == "constant"


MAX_TRIALS = 100_000  # the default limit on a grid's trial count (--max-trials)

# Every optimizer a grid may name -> its Keras class. The first six are the
# reference experiment's, in its order; ``gd`` and ``momentum`` are SGD.
OPTIMIZER_CLASSES = {
    "gd": "SGD",
    "momentum": "SGD",
    "adam": "Adam",
    "adagrad": "Adagrad",
    "adadelta": "Adadelta",
    "rmsprop": "RMSprop",
    "sgd": "SGD",
    "adamw": "AdamW",
    "adamax": "Adamax",
    "nadam": "Nadam",
    "ftrl": "Ftrl",
    "lion": "Lion",
    "lamb": "Lamb",
    "adafactor": "Adafactor",
    "muon": "Muon",
}
# Keywords an optimizer gets unless the grid gives them
OPTIMIZER_DEFAULTS: dict[str, dict[str, Any]] = {
    "gd": {"momentum": 0.0},
    "momentum": {"momentum": 0.9},
}
OPTIMIZERS = tuple(OPTIMIZER_CLASSES)
REFERENCE_OPTIMIZERS = OPTIMIZERS[:6]


def round_sig(x: float, digits: int = 6) -> float:
    """``x`` rounded to ``digits`` significant digits."""
    return float(f"{x:.{digits}g}")


def log_spaced(start: float, stop: float, num: int) -> tuple[float, ...]:
    """``num`` log-spaced values from ``start`` to ``stop``, endpoints included.

    Values are rounded to 6 significant digits so that they hash, print and
    compare the same on every machine.
    """
    if num == 1:
        return (round_sig(start),)
    a, b = math.log10(start), math.log10(stop)
    return tuple(round_sig(10 ** (a + (b - a) * i / (num - 1))) for i in range(num))


@dataclass(frozen=True)
class Setup:
    """What is trained, on what, with which optimizer: the fields a trial, a
    range test and their stored rows share (the LR and the stop rule aside)."""

    sweep: str  # the grid's name (not part of any id)
    dataset: str
    train_size: int | None  # keep only the first N training examples
    model: str
    width: float
    model_kwargs: dict[str, Any]
    optimizer: str
    optimizer_kwargs: dict[str, Any]
    batch_size: int
    loss: str
    seed: int
    # ``module:function`` of a model given by reference; "" for a built-in model
    # (its builder is registered under its name). Left out of ids when "", so
    # built-in trials keep the ids they had before models could be given so.
    builder: str = field(default="", kw_only=True)

    def setup(self) -> Setup:
        """This object's ``Setup`` fields alone (for a subclass: without its own)."""
        return Setup(**{f.name: getattr(self, f.name) for f in fields(Setup)})


SETUP_FIELDS = tuple(f.name for f in fields(Setup))


def id_config(data: dict[str, Any]) -> dict[str, Any]:
    """``data`` without the fields that ids and digests leave out at their
    default (fields added after ids were first stored: a built-in model's empty
    ``builder``), so that older ids and digests still match."""
    return {k: v for k, v in data.items() if not (k == "builder" and not v)}


# The setup fields that decide what a run trains, less its seed: a range test
# and a grid trial with equal values are the same setup, and trials with equal
# values can share a compiled model (``harness.trial.reuse``).
TRAINING_FIELDS = tuple(f for f in SETUP_FIELDS if f not in ("sweep", "seed"))


@dataclass(frozen=True)
class DatasetSpec:
    """One value of the dataset axis: a built-in dataset by name, or a user's
    dataset from a ``loader`` (``module:function``) or an ``.npz`` ``path``."""

    name: str
    train_size: int | None = None  # keep only the first N training examples
    loader: str | None = None  # module:function returning (x_train, y_train), (x_val, y_val)
    path: str | None = None  # an .npz file with x_train, y_train and x_val/y_val or x_test/y_test
    num_classes: int | None = None  # default: from the labels

    @property
    def builtin(self) -> bool:
        """True for a dataset lrbench ships a loader for (no ``loader`` or ``path``)."""
        return self.loader is None and self.path is None


@dataclass(frozen=True)
class ModelSpec:
    """One model family with its width multipliers and fixed keyword arguments;
    ``builder`` is a user's ``module:function`` (None: a built-in model)."""

    name: str
    widths: tuple[float, ...] = (1.0,)
    kwargs: dict[str, Any] = field(default_factory=dict)
    builder: str | None = None


@dataclass(frozen=True)
class OptimizerSpec:
    """One optimizer with its fixed keyword arguments (the LR is swept)."""

    name: str
    kwargs: dict[str, Any] = field(default_factory=dict)

    @property
    def label(self) -> str:
        """``name``, or ``name {kwargs}`` when it has fixed keywords."""
        return self.name + (f" {kwargs_json(self.kwargs)}" if self.kwargs else "")


@dataclass(frozen=True)
class StopRule:
    """When a trial stops: target reached, budget spent, or diverged."""

    target: float = 0.97
    metric: str = "recent"  # "recent": last `window` steps; "running": since step 0
    window: int = 50  # steps, for the "recent" metric
    # steps between validations for the "val" metric (0: the check interval);
    # in ids only when set, as ids were before the "val" metric
    val_every: int = 0
    budget_s: float = 120.0
    max_epochs: int = 100
    check_every: int = 0  # steps between checks; 0 picks >= 10 checks an epoch
    diverge_factor: float = 5.0  # loss above this times the first step's loss diverges
    # a pruning rule (harness.rules.pruning.PRUNE_RULES) or None (off, the default; see
    # docs/grids.md for why): how a trial's run is shortened, not what it is, so
    # it is in neither trial ids nor grid digests
    prune: str | None = None

    def id_fields(self) -> dict[str, Any]:
        """The rule under the names trial ids (and trial rows) know its fields by."""
        return {
            STOP_ID_NAMES.get(f.name, f.name): getattr(self, f.name)
            for f in fields(self)
            if f.name not in NOT_IN_IDS
            and not (f.name in UNSET_NOT_IN_IDS and not getattr(self, f.name))
        }

    def to_json(self) -> dict[str, Any]:
        """The rule as grids store it (``ResolvedGrid.to_json``): unset later fields left out."""
        data = asdict(self)
        for name in UNSET_NOT_IN_IDS:
            if not data[name]:
                data.pop(name)
        return data


# StopRule fields that trial ids (and the trials table) know by another name
STOP_ID_NAMES = {"target": "target_acc", "metric": "target_metric"}
NOT_IN_IDS = ("prune",)  # StopRule fields outside trial ids and grid digests
UNSET_NOT_IN_IDS = ("val_every",)  # StopRule fields in ids and digests only when set


@dataclass(frozen=True)
class Resources:
    """What one trial asks Ray for."""

    cpus: float = 1.0
    gpus: float = 0.0


BEST_LR_RULE = "fastest median time to target; ties: fewer steps, then the lower LR"


@dataclass(frozen=True)
class Fixed:
    """``lr = [...]`` or ``lr = { start, stop, num }``: the same learning rates
    for every optimizer."""

    lrs: tuple[float, ...]  # sorted, each once

    @property
    def per_optimizer(self) -> int:
        """How many LRs each optimizer runs."""
        return len(self.lrs)


@dataclass(frozen=True)
class FromBest:
    """``lr = { best = DIR }``: each optimizer's best learning rates in an earlier
    sweep: the fastest median time to target among its cells that succeed (ties:
    fewer steps, then the lower LR)."""

    # the earlier sweep's results directory (relative to the working directory),
    # a URI's credentials hidden: what is shown and stored (``ResolvedGrid.to_json``)
    results: str
    top_k: int = 1  # how many LRs per optimizer, fastest first
    min_success: float = 0.5  # share of a cell's seeds that must reach the target
    # DIR as the grid gives it, credentials included: only read (``location``),
    # never shown or stored, nor part of equality, so a rotated key is the same grid
    given: str = field(default="", compare=False, repr=False, kw_only=True)

    @property
    def location(self) -> str:
        """Where to read the earlier sweep: DIR as given, credentials included."""
        return self.given or self.results

    @property
    def per_optimizer(self) -> int:
        """How many LRs each optimizer runs at most (one with fewer that
        succeeded there runs fewer, one with none is skipped)."""
        return self.top_k


# The range-test suggestion rules (``analysis.finder.suggest`` defines them).
FINDER_RULES = ("steepest", "min/10", "longest-descent", "fastai-valley")
# Rule names no longer taken, and what to write instead.
RETIRED_RULES = {
    "valley": "lrbench's valley is now 'longest-descent'; fastai's valley is 'fastai-valley'"
}


@dataclass(frozen=True)
class FromFinder:
    """``lr = { finder = DIR, rule, decades, num }``: each optimizer's own ladder of
    ``num`` log-spaced LRs spanning ``decades``, centred (on the log scale) on
    what ``rule`` suggests from its LR range test stored in ``DIR``."""

    # where ``lrbench find-lr`` stored the range tests (relative to the cwd), a
    # URI's credentials hidden: what is shown and stored (``ResolvedGrid.to_json``)
    results: str
    rule: str  # one of FINDER_RULES
    decades: float = 1.5  # the ladder's whole width, half of it on each side
    num: int = 9  # LRs per optimizer; an odd count runs the suggestion itself
    # DIR as the grid gives it, credentials included: only read (``location``)
    given: str = field(default="", compare=False, repr=False, kw_only=True)

    @property
    def location(self) -> str:
        """Where to read the range tests: DIR as given, credentials included."""
        return self.given or self.results

    @property
    def per_optimizer(self) -> int:
        """How many LRs each optimizer runs: its ladder's."""
        return self.num

    def ladder(self, suggested: float) -> tuple[float, ...]:
        """The LRs for a suggestion: from ``suggested / 10**(decades/2)`` to
        ``suggested * 10**(decades/2)``, rounded as ``log_spaced`` rounds."""
        if self.num == 1:
            return (round_sig(suggested),)
        half = 10 ** (self.decades / 2)
        return log_spaced(suggested / half, suggested * half, self.num)


# A grid file's ``lr`` setting: its own LRs, or where to choose them from.
LrSetting = Fixed | FromBest | FromFinder


@dataclass(frozen=True)
class TrialSpec(Setup):
    """Everything one trial needs; its hash is the trial id."""

    lr: float
    stop: StopRule
    schedule: dict[str, Any] = field(default_factory=lambda: dict(CONSTANT_SCHEDULE))
    lr_source: str = "grid"  # provenance only: not part of the trial id

    @property
    def trial_id(self) -> str:
        """A stable id: the hash of the canonical config (sweep name and LR
        provenance excluded; a constant schedule left out, so ids from before the
        schedule axis still match)."""
        config = id_config({k: getattr(self, k) for k in SETUP_FIELDS if k != "sweep"})
        config.update(lr=self.lr, **self.stop.id_fields())
        if not is_constant(self.schedule):
            config["schedule"] = self.schedule
        return digest(config)

    def to_config(self) -> dict[str, Any]:
        """A plain dict that ``from_config`` turns back into this spec."""
        return asdict(self)

    @property
    def model_ref(self) -> ModelRef:
        """How to build this trial's model."""
        return ModelRef(self.model, self.builder, self.width, self.model_kwargs)

    @classmethod
    def from_config(cls, config: dict[str, Any]) -> TrialSpec:
        """Rebuild a spec from ``to_config``'s dict."""
        return cls(**{**config, "stop": StopRule(**config["stop"])})


@dataclass(frozen=True)
class GridSpec:
    """A validated grid file: what it declares. ``lr`` may name where the LRs
    come from rather than give them (``lrbench.compose`` resolves it)."""

    name: str
    source: str
    description: str = ""
    data_dir: str | None = None
    datasets: tuple[DatasetSpec, ...] = ()
    models: tuple[ModelSpec, ...] = ()
    optimizers: tuple[OptimizerSpec, ...] = ()
    lr: LrSetting = Fixed(())
    batch_sizes: tuple[int, ...] = (100,)
    losses: tuple[str, ...] = ("crossentropy",)
    schedules: tuple[dict[str, Any], ...] = (CONSTANT_SCHEDULE,)
    seeds: tuple[int, ...] = (0,)
    stop: StopRule = StopRule()
    resources: Resources = Resources()

    def setup(
        self,
        ds: DatasetSpec,
        model: ModelSpec,
        width: float,
        opt: OptimizerSpec,
        batch_size: int,
        loss: str,
        seed: int,
    ) -> Setup:
        """The ``Setup`` of one value of each axis (the LR aside)."""
        return Setup(
            sweep=self.name,
            dataset=ds.name,
            train_size=ds.train_size,
            model=model.name,
            width=width,
            model_kwargs=dict(model.kwargs),
            builder=model.builder or "",
            optimizer=opt.name,
            optimizer_kwargs=dict(opt.kwargs),
            batch_size=batch_size,
            loss=loss,
            seed=seed,
        )

    def setups(self, optimizers: tuple[OptimizerSpec, ...], seed: int) -> list[Setup]:
        """One setup per dataset, model, width, loss, batch size and optimizer
        (of ``optimizers``) at one seed: what one range test each covers."""
        return [
            self.setup(ds, model, width, opt, bs, loss, seed)
            for ds in self.datasets
            for model in self.models
            for width in model.widths
            for loss in self.losses
            for bs in self.batch_sizes
            for opt in optimizers
        ]

    def trial_count(self) -> int:
        """How many trials the grid gives at most, counted without resolving its
        LRs or building its trials (``lr = { best }`` counts ``top_k`` LRs per
        optimizer, ``lr = { finder }`` its ladder's ``num``)."""
        return (
            len(self.datasets)
            * sum(len(m.widths) for m in self.models)
            * self.lr.per_optimizer
            * len(self.optimizers)
            * len(self.batch_sizes)
            * len(self.losses)
            * len(self.schedules)
            * len(self.seeds)
        )


@dataclass(frozen=True)
class ModelRef:
    """What builds one model: a built-in name or a user's builder, at a width."""

    name: str
    builder: str  # "" for a built-in model
    width: float
    kwargs: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class FinderParams:
    """How an LR range test ramps the LR and when it stops."""

    start_lr: float = 1e-7
    end_lr: float = 10.0
    num_steps: int = 300
    beta: float = 0.98  # EMA weight of the past in the smoothed loss
    stop_factor: float = 4.0  # stop once the smoothed loss passes this times its best

    def problems(self) -> list[tuple[str, str]]:
        """(field, what is wrong) for each value that cannot work; empty when all can."""
        checks = [
            ("start_lr", self.start_lr > 0, f"must be > 0, got {self.start_lr:g}"),
            (
                "end_lr",
                self.end_lr > self.start_lr,
                f"must be above the start LR ({self.start_lr:g}), got {self.end_lr:g}",
            ),
            ("num_steps", self.num_steps >= 10, f"must be >= 10, got {self.num_steps}"),
            ("beta", 0 <= self.beta < 1, f"must be in [0, 1), got {self.beta:g}"),
            ("stop_factor", self.stop_factor > 1, f"must be > 1, got {self.stop_factor:g}"),
        ]
        return [(name, message) for name, ok, message in checks if not ok]

    def lr_at(self, step: int) -> float:
        """The LR of update ``step`` (0-based): ``start * (end / start) ** (step / (N - 1))``."""
        return self.start_lr * (self.end_lr / self.start_lr) ** (step / (self.num_steps - 1))


@dataclass(frozen=True)
class FinderSpec(Setup):
    """One range test: a setup of a grid (its seed included), and the ramp."""

    params: FinderParams = field(default_factory=FinderParams)

    @property
    def finder_id(self) -> str:
        """A stable id: the hash of everything but the grid's name."""
        config = id_config({k: v for k, v in asdict(self).items() if k != "sweep"})
        return digest(config)

    @property
    def model_ref(self) -> ModelRef:
        """How to build this range test's model."""
        return ModelRef(self.model, self.builder, self.width, self.model_kwargs)

    @property
    def label(self) -> str:
        """``optimizer {kwargs}`` and the setup where it is not the default."""
        text = self.optimizer
        if self.optimizer_kwargs:
            text += " " + ", ".join(f"{k}={v}" for k, v in sorted(self.optimizer_kwargs.items()))
        return text
