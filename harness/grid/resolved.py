"""A resolved grid: a ``GridSpec`` with each optimizer's learning rates, and
where they came from.

A grid file's ``lr`` setting gives its LRs (``Fixed``) or names where to choose
them (``FromBest``: an earlier sweep; ``FromFinder``: range tests).
``lrbench.compose`` reads those results and builds a ``ResolvedGrid`` through
its named constructors, the one place that knows how each kind becomes LRs. The
resolved grid is what the sweep runs, ``lrbench show`` prints, the store keeps
(``to_json``, ``digest``) and a stored grid reads back as (``from_json``).
"""

from __future__ import annotations

import itertools
from collections.abc import Iterable
from dataclasses import asdict, dataclass, fields
from typing import Any

from harness.grid.specs import (
    BEST_LR_RULE,
    CONSTANT_SCHEDULE,
    NOT_IN_IDS,
    DatasetSpec,
    Fixed,
    FromBest,
    FromFinder,
    GridSpec,
    LrSetting,
    ModelSpec,
    OptimizerSpec,
    Resources,
    StopRule,
    TrialSpec,
    is_constant,
)
from harness.grid.specs import digest as json_digest


@dataclass(frozen=True)
class ChosenLr:
    """One learning rate taken from an earlier sweep for one optimizer."""

    optimizer: str
    optimizer_kwargs: dict[str, Any]
    lr: float
    rank: int  # 1 = the best
    time_s: float  # its median time to target there
    steps: float  # its median steps to target there
    success_rate: float

    def matches(self, opt: OptimizerSpec) -> bool:
        """True when this LR was chosen for ``opt`` (same name and keywords)."""
        return self.optimizer == opt.name and self.optimizer_kwargs == dict(opt.kwargs)


@dataclass(frozen=True)
class SuggestedLr:
    """One optimizer's ladder under ``lr = { finder = DIR }``, and the suggestion
    it is centred on."""

    optimizer: str
    optimizer_kwargs: dict[str, Any]
    rule: str
    suggested_lr: float  # what the rule read off the range test (unrounded)
    finder_id: str  # the range test it came from
    lrs: tuple[float, ...]

    def matches(self, opt: OptimizerSpec) -> bool:
        """True when this ladder is ``opt``'s (same name and keywords)."""
        return self.optimizer == opt.name and self.optimizer_kwargs == dict(opt.kwargs)


STORED_SKIP = "stored"  # Skipped.reason of one read back from JSON (``Skipped.stored``)


@dataclass(frozen=True)
class Skipped:
    """An optimizer of a ``lr = { best = DIR }`` grid that gets no LR, and why."""

    optimizer: str  # its label (name and fixed keywords)
    # "absent": the earlier sweep never ran it; "no_success": none of its cells succeeded
    reason: str
    results: str  # the earlier sweep's results directory
    trials: int = 0  # its trials there
    reached: int = 0  # of which reached the target
    min_success: float = 0.5

    @classmethod
    def stored(cls, text: str) -> Skipped:
        """A skip read back from a stored grid, which keeps only its line."""
        return cls(optimizer=text, reason=STORED_SKIP, results="")

    @property
    def text(self) -> str:
        """One line for the console: which optimizer, and why it is skipped."""
        if self.reason == STORED_SKIP:
            return self.optimizer
        if self.reason == "absent":
            return f"{self.optimizer}: not in {self.results}"
        if self.reached == 0:
            return (
                f"{self.optimizer}: none of its {self.trials} trials in {self.results} "
                "reached the target"
            )
        return (
            f"{self.optimizer}: no LR in {self.results} reached the target in "
            f"{self.min_success:.0%} of its seeds"
        )


@dataclass(frozen=True)
class LrChoice:
    """One learning rate of one optimizer, and where it came from: ``grid``, or
    the results directory it was chosen from (named by ``results``, its
    credentials hidden) and how. Stored in every trial row as ``lr_source``."""

    optimizer: OptimizerSpec
    lr: float
    source: str


def _kind(lr: LrSetting) -> str:
    """How a grid file writes ``lr``'s kind, for an error."""
    match lr:
        case Fixed():
            return "lr = [...]"
        case FromBest():
            return "lr = { best = DIR }"
        case FromFinder():
            return "lr = { finder = DIR }"


def _mismatch(constructor: str, spec: GridSpec, wanted: str) -> TypeError:
    return TypeError(
        f"ResolvedGrid.{constructor} takes a grid with {wanted}; "
        f"{spec.source or spec.name} has {_kind(spec.lr)}"
    )


@dataclass(frozen=True)
class ResolvedGrid:
    """A grid with its learning rates: what runs, is shown and is stored.

    ``lrs`` is each optimizer's LRs in the grid's optimizer order; ``chosen``
    and ``skipped`` are what ``lr = { best }`` found in the earlier sweep,
    ``suggested`` the ladders ``lr = { finder }`` built from range tests. Build
    one with ``fixed``, ``from_best`` or ``from_finder``."""

    spec: GridSpec
    lrs: tuple[LrChoice, ...]
    chosen: tuple[ChosenLr, ...] = ()
    suggested: tuple[SuggestedLr, ...] = ()
    skipped: tuple[Skipped, ...] = ()

    @classmethod
    def fixed(cls, spec: GridSpec) -> ResolvedGrid:
        """A grid that gives its own LRs: every optimizer runs each of them."""
        if not isinstance(spec.lr, Fixed):
            raise _mismatch("fixed", spec, "lr = [...]")
        lrs = tuple(LrChoice(opt, lr, "grid") for opt in spec.optimizers for lr in spec.lr.lrs)
        return cls(spec, lrs)

    @classmethod
    def from_best(
        cls, spec: GridSpec, chosen: Iterable[ChosenLr], skipped: Iterable[Skipped] = ()
    ) -> ResolvedGrid:
        """A ``lr = { best = DIR }`` grid with the LRs chosen from the earlier
        sweep (an optimizer in ``skipped`` has none)."""
        best = spec.lr
        if not isinstance(best, FromBest):
            raise _mismatch("from_best", spec, "lr = { best = DIR }")
        chosen = tuple(chosen)
        lrs = tuple(
            LrChoice(
                opt,
                c.lr,
                f"{best.results} best {c.rank}/{best.top_k} "
                f"({c.time_s:.3g} s, {c.steps:.0f} steps)",
            )
            for opt in spec.optimizers
            for c in chosen
            if c.matches(opt)
        )
        return cls(spec, lrs, chosen=chosen, skipped=tuple(skipped))

    @classmethod
    def from_finder(cls, spec: GridSpec, suggested: Iterable[SuggestedLr]) -> ResolvedGrid:
        """A ``lr = { finder = DIR }`` grid with each optimizer's ladder around
        its range test's suggestion."""
        finder = spec.lr
        if not isinstance(finder, FromFinder):
            raise _mismatch("from_finder", spec, "lr = { finder = DIR }")
        suggested = tuple(suggested)
        lrs = tuple(
            LrChoice(opt, lr, f"{finder.results} finder {s.rule} (suggested {s.suggested_lr:.3g})")
            for opt in spec.optimizers
            for s in suggested
            if s.matches(opt)
            for lr in s.lrs
        )
        return cls(spec, lrs, suggested=suggested)

    def expand(self) -> list[TrialSpec]:
        """Every trial of the grid, in a fixed order, each once."""
        spec = self.spec
        trials: dict[str, TrialSpec] = {}
        for ds, model, choice, bs, loss, schedule, seed in itertools.product(
            spec.datasets,
            spec.models,
            self.lrs,
            spec.batch_sizes,
            spec.losses,
            spec.schedules,
            spec.seeds,
        ):
            for width in model.widths:
                setup = spec.setup(ds, model, width, choice.optimizer, bs, loss, seed)
                trial = TrialSpec(
                    **asdict(setup),
                    lr=choice.lr,
                    stop=spec.stop,
                    schedule=dict(schedule),
                    lr_source=choice.source,
                )
                trials.setdefault(trial.trial_id, trial)
        return list(trials.values())

    def to_json(self) -> dict[str, Any]:
        """The grid as plain JSON-able data (what the manifest, Parquet metadata and
        the nightly history store), with no credentials: the URIs of ``lr.best``
        and ``lr.finder`` as ``results`` shows them (``harness.grid.parse`` hides their
        secrets; ``data_dir`` and dataset paths are local). Its keys are those
        grids have always been stored under: ``lrs`` the grid's own LRs,
        ``best_lr``, ``chosen_lrs`` and ``skipped`` what ``lr = { best }``
        chose, ``finder_lr`` and ``suggested_lrs`` (only in a finder grid's JSON,
        so that other grids keep the JSON and digest they had) its ladders."""
        spec = self.spec
        declared = asdict(spec)
        best = finder = None
        lrs: tuple[float, ...] = ()
        match spec.lr:
            case Fixed():
                lrs = spec.lr.lrs
            case FromBest():  # grids have always been hashed with the rule's text
                best = {**_public(spec.lr), "rule": BEST_LR_RULE}
            case FromFinder():
                finder = _public(spec.lr)
        data: dict[str, Any] = {
            "name": spec.name,
            "description": spec.description,
            "data_dir": spec.data_dir,
            # fields added after grids were first stored, left out when unset so
            # that a grid without them keeps its JSON and digest
            "datasets": [_drop_none(d, DatasetSpec) for d in declared["datasets"]],
            "models": [_drop_none(m, ModelSpec) for m in declared["models"]],
            "optimizers": declared["optimizers"],
            "lrs": lrs,
            "best_lr": best,
            "chosen_lrs": tuple(asdict(c) for c in self.chosen),
            "skipped": [s.text for s in self.skipped],
            "finder_lr": finder,
            "suggested_lrs": tuple(asdict(s) for s in self.suggested),
            **{k: declared[k] for k in ("batch_sizes", "losses", "schedules", "seeds")},
            "stop": spec.stop.to_json(),
            "resources": declared["resources"],
        }
        if finder is None:
            data.pop("finder_lr")
            data.pop("suggested_lrs")
        return data

    @classmethod
    def from_json(cls, data: dict[str, Any], source: str = "") -> ResolvedGrid:
        """The grid ``to_json`` stored (in a manifest, a Parquet file's metadata or
        a nightly history), from any lrbench version: a field it lacks takes its
        default, a key this lrbench does not know is left out, a skipped
        optimizer keeps only its line (``Skipped.stored``). The same grid
        again: the same JSON, digest and trials. ``source`` names where it was
        read (a stored grid has lost its file's path)."""
        best, finder = data.get("best_lr"), data.get("finder_lr")
        lr: LrSetting = Fixed(tuple(data.get("lrs", ())))
        if best:
            lr = FromBest(**_known(FromBest, best))
        elif finder:
            lr = FromFinder(**_known(FromFinder, finder))
        scalars: dict[str, Any] = {"name": "", "source": source}
        scalars.update({k: data[k] for k in ("name", "description", "data_dir") if k in data})
        spec = GridSpec(
            **scalars,
            datasets=tuple(DatasetSpec(**_known(DatasetSpec, d)) for d in data.get("datasets", [])),
            models=tuple(_tupled(ModelSpec, m, "widths") for m in data.get("models", [])),
            optimizers=tuple(
                OptimizerSpec(**_known(OptimizerSpec, o)) for o in data.get("optimizers", [])
            ),
            lr=lr,
            batch_sizes=tuple(data.get("batch_sizes", (100,))),
            losses=tuple(data.get("losses", ("crossentropy",))),
            schedules=tuple(dict(s) for s in data.get("schedules", (CONSTANT_SCHEDULE,))),
            seeds=tuple(data.get("seeds", (0,))),
            stop=StopRule(**_known(StopRule, data.get("stop") or {})),
            resources=Resources(**_known(Resources, data.get("resources") or {})),
        )
        match lr:
            case Fixed():
                return cls.fixed(spec)
            case FromBest():
                return cls.from_best(
                    spec,
                    (ChosenLr(**_known(ChosenLr, c)) for c in data.get("chosen_lrs", [])),
                    (Skipped.stored(text) for text in data.get("skipped", [])),
                )
            case FromFinder():
                return cls.from_finder(
                    spec, (_tupled(SuggestedLr, s, "lrs") for s in data.get("suggested_lrs", []))
                )

    @property
    def digest(self) -> str:
        """Hash of what decides the trials; the same grid has the same digest anywhere."""
        data = self.to_json()
        for key in ("description", "data_dir", "resources"):
            data.pop(key)
        for key in NOT_IN_IDS:
            data["stop"].pop(key)
        if all(is_constant(s) for s in self.spec.schedules):  # as before the schedule axis
            data.pop("schedules")
        return json_digest(data)


def _public(lr: FromBest | FromFinder) -> dict[str, Any]:
    """``lr.best`` or ``lr.finder`` as stored: without the DIR as given (``given``)."""
    data = asdict(lr)
    data.pop("given")
    return data


def _known(kind: type, value: dict[str, Any]) -> dict[str, Any]:
    """``value`` without the keys ``kind`` has no field for."""
    names = {f.name for f in fields(kind)}
    return {k: v for k, v in value.items() if k in names}


def _tupled(kind: type, value: dict[str, Any], *keys: str) -> Any:
    """A ``kind`` from ``value``'s known keys, the lists under ``keys`` as tuples."""
    given = _known(kind, value)
    return kind(**{**given, **{k: tuple(given[k]) for k in keys if k in given}})


def _drop_none(data: dict[str, Any], cls: type) -> dict[str, Any]:
    """``data`` (a ``cls`` as a dict) without the optional fields left unset."""
    optional = OPTIONAL_FIELDS[cls]
    return {k: v for k, v in data.items() if not (k in optional and v is None)}


OPTIONAL_FIELDS: dict[type, tuple[str, ...]] = {
    DatasetSpec: ("loader", "path", "num_classes"),
    ModelSpec: ("builder",),
}
