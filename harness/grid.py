"""Grid files: read a TOML grid, validate it, and expand it into trial specs.

Nothing here imports TensorFlow or Ray, so a bad grid file is reported in well
under a second. See ``docs/grids.md`` for the format.
"""

from __future__ import annotations

import hashlib
import itertools
import json
import math
import tomllib
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

from harness.errors import GridError
from harness.schedules import CONSTANT, is_constant, parse_schedule, schedule_label

DATASETS = ("mnist", "fashion_mnist", "mnist5k")
MODELS: dict[str, tuple[str, ...]] = {
    # model name -> the keyword arguments it accepts
    "tutorial_cnn": (),
    "tiny_cnn": (),
    "keras_cnn": (),
    "mlp": ("hidden", "hidden_activation", "output_activation"),
}
# The six optimizers of the reference experiment, then any other Keras optimizer by name.
NAMED_OPTIMIZERS = ("gd", "momentum", "adam", "adagrad", "adadelta", "rmsprop")
KERAS_OPTIMIZERS = (
    "sgd",
    "adamw",
    "adamax",
    "nadam",
    "ftrl",
    "lion",
    "lamb",
    "adafactor",
    "muon",
)
OPTIMIZERS = NAMED_OPTIMIZERS + KERAS_OPTIMIZERS
LOSSES = ("crossentropy", "mse")
TARGET_METRICS = ("recent", "running")
ACTIVATIONS = ("relu", "sigmoid", "tanh", "elu", "gelu", "selu", "softplus", "linear")
OUTPUT_ACTIVATIONS = ("softmax", "sigmoid", "linear")

_TOP_KEYS = (
    "name",
    "description",
    "data_dir",
    "datasets",
    "models",
    "optimizers",
    "lr",
    "batch_size",
    "loss",
    "schedule",
    "seeds",
    "stop",
    "resources",
)


@dataclass(frozen=True)
class DatasetSpec:
    """One value of the dataset axis."""

    name: str
    train_size: int | None = None  # keep only the first N training examples


@dataclass(frozen=True)
class ModelSpec:
    """One model family with its width multipliers and fixed keyword arguments."""

    name: str
    widths: tuple[float, ...] = (1.0,)
    kwargs: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class OptimizerSpec:
    """One optimizer with its fixed keyword arguments (the LR is swept)."""

    name: str
    kwargs: dict[str, Any] = field(default_factory=dict)

    @property
    def label(self) -> str:
        """``name``, or ``name {kwargs}`` when it has fixed keywords."""
        return self.name + (f" {json.dumps(self.kwargs, sort_keys=True)}" if self.kwargs else "")


@dataclass(frozen=True)
class BestLr:
    """``lr = { best = DIR }``: each optimizer's best learning rates in an earlier sweep."""

    results: str  # the earlier sweep's results directory (relative to the working directory)
    top_k: int = 1  # how many LRs per optimizer, fastest first
    min_success: float = 0.5  # share of a cell's seeds that must reach the target
    rule: str = "fastest median time to target; ties: fewer steps, then the lower LR"


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
class StopRule:
    """When a trial stops: target reached, budget spent, or diverged."""

    target: float = 0.97
    metric: str = "recent"  # "recent": last `window` steps; "running": since step 0
    window: int = 50  # steps, for the "recent" metric
    budget_s: float = 120.0
    max_epochs: int = 100
    check_every: int = 0  # steps between checks; 0 picks >= 10 checks an epoch
    diverge_factor: float = 5.0  # loss above this times the first step's loss diverges


@dataclass(frozen=True)
class Resources:
    """What one trial asks Ray for."""

    cpus: float = 1.0
    gpus: float = 0.0


@dataclass(frozen=True)
class TrialSpec:
    """Everything one trial needs; its hash is the trial id."""

    sweep: str
    dataset: str
    train_size: int | None
    model: str
    width: float
    model_kwargs: dict[str, Any]
    optimizer: str
    optimizer_kwargs: dict[str, Any]
    lr: float
    batch_size: int
    loss: str
    seed: int
    target_metric: str
    target_acc: float
    window: int
    budget_s: float
    max_epochs: int
    check_every: int
    diverge_factor: float
    schedule: dict[str, Any] = field(default_factory=lambda: dict(CONSTANT))
    lr_source: str = "grid"  # provenance only: not part of the trial id

    @property
    def trial_id(self) -> str:
        """A stable id: the hash of the canonical config (sweep name and LR
        provenance excluded; a constant schedule left out, so ids from before the
        schedule axis still match)."""
        config = {k: v for k, v in asdict(self).items() if k not in ("sweep", "lr_source")}
        if is_constant(config["schedule"]):
            del config["schedule"]
        return _digest(config)[:16]

    @property
    def schedule_label(self) -> str:
        """The schedule as short text (``constant``, ``step(epochs=1)``)."""
        return schedule_label(self.schedule)

    def to_config(self) -> dict[str, Any]:
        """A plain dict that ``from_config`` turns back into this spec."""
        return asdict(self)

    @classmethod
    def from_config(cls, config: dict[str, Any]) -> TrialSpec:
        """Rebuild a spec from ``to_config``'s dict."""
        return cls(**config)


@dataclass(frozen=True)
class GridSpec:
    """A validated grid file."""

    name: str
    source: str
    description: str = ""
    data_dir: str | None = None
    datasets: tuple[DatasetSpec, ...] = ()
    models: tuple[ModelSpec, ...] = ()
    optimizers: tuple[OptimizerSpec, ...] = ()
    lrs: tuple[float, ...] = ()
    best_lr: BestLr | None = None  # set: the LRs come from an earlier sweep
    chosen_lrs: tuple[ChosenLr, ...] = ()  # filled by load_grid from best_lr
    skipped: tuple[str, ...] = ()  # optimizers best_lr found no LR for, and why
    batch_sizes: tuple[int, ...] = (100,)
    losses: tuple[str, ...] = ("crossentropy",)
    schedules: tuple[dict[str, Any], ...] = (CONSTANT,)
    seeds: tuple[int, ...] = (0,)
    stop: StopRule = StopRule()
    resources: Resources = Resources()

    def expand(self) -> list[TrialSpec]:
        """Every trial of the grid, in a fixed order, each once."""
        trials: dict[str, TrialSpec] = {}
        for ds, model, (opt, lr, lr_source), bs, loss, schedule, seed in itertools.product(
            self.datasets,
            self.models,
            self.optimizer_lrs(),
            self.batch_sizes,
            self.losses,
            self.schedules,
            self.seeds,
        ):
            for width in model.widths:
                spec = TrialSpec(
                    sweep=self.name,
                    dataset=ds.name,
                    train_size=ds.train_size,
                    model=model.name,
                    width=width,
                    model_kwargs=dict(model.kwargs),
                    optimizer=opt.name,
                    optimizer_kwargs=dict(opt.kwargs),
                    lr=lr,
                    batch_size=bs,
                    loss=loss,
                    seed=seed,
                    target_metric=self.stop.metric,
                    target_acc=self.stop.target,
                    window=self.stop.window,
                    budget_s=self.stop.budget_s,
                    max_epochs=self.stop.max_epochs,
                    check_every=self.stop.check_every,
                    diverge_factor=self.stop.diverge_factor,
                    schedule=dict(schedule),
                    lr_source=lr_source,
                )
                trials.setdefault(spec.trial_id, spec)
        return list(trials.values())

    def optimizer_lrs(self) -> list[tuple[OptimizerSpec, float, str]]:
        """(optimizer, LR, where the LR came from) for every optimizer and its LRs:
        the ``lr`` axis, or the LRs chosen from an earlier sweep."""
        if self.best_lr is None:
            return [(opt, lr, "grid") for opt in self.optimizers for lr in self.lrs]
        best = self.best_lr
        return [
            (
                opt,
                c.lr,
                f"{best.results} best {c.rank}/{best.top_k} "
                f"({c.time_s:.3g} s, {c.steps:.0f} steps)",
            )
            for opt in self.optimizers
            for c in self.chosen_lrs
            if c.matches(opt)
        ]

    def to_json(self) -> dict[str, Any]:
        """The grid as plain JSON-able data (what the manifest stores)."""
        data = asdict(self)
        data.pop("source")
        return data

    @property
    def digest(self) -> str:
        """Hash of what decides the trials; the same grid has the same digest anywhere."""
        data = self.to_json()
        for key in ("description", "data_dir", "resources"):
            data.pop(key)
        if all(is_constant(s) for s in self.schedules):  # as before the schedule axis
            data.pop("schedules")
        return _digest(data)[:16]


def _digest(data: Any) -> str:
    canonical = json.dumps(data, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(canonical.encode()).hexdigest()


def log_spaced(start: float, stop: float, num: int) -> tuple[float, ...]:
    """``num`` log-spaced values from ``start`` to ``stop``, endpoints included.

    Values are rounded to 6 significant digits so that they hash, print and
    compare the same on every machine.
    """
    if num == 1:
        return (_round_sig(start),)
    a, b = math.log10(start), math.log10(stop)
    return tuple(_round_sig(10 ** (a + (b - a) * i / (num - 1))) for i in range(num))


def _round_sig(x: float, digits: int = 6) -> float:
    return float(f"{x:.{digits}g}")


# ---------------------------------------------------------------- reading ---


class _Table:
    """A TOML table being validated: typed access, and unknown keys reported."""

    def __init__(self, source: str, path: str, data: Any, allowed: tuple[str, ...]):
        self.source, self.path, self.allowed = source, path, allowed
        if not isinstance(data, dict):
            raise GridError(source, path or "(top level)", f"must be a table, got {data!r}")
        self.data = data
        unknown = sorted(set(data) - set(allowed))
        if unknown:
            raise GridError(
                source,
                self.key(unknown[0]),
                f"unknown key; allowed: {', '.join(allowed)}",
            )

    def key(self, name: str) -> str:
        return f"{self.path}.{name}" if self.path else name

    def error(self, name: str, message: str) -> GridError:
        return GridError(self.source, self.key(name), message)

    def get(self, name: str, default: Any = None) -> Any:
        return self.data.get(name, default)

    def number(
        self,
        name: str,
        default: float,
        *,
        minimum: float | None = None,
        positive: bool = False,
        integer: bool = False,
    ) -> Any:
        value = self.data.get(name, default)
        kinds: tuple[type, ...] = (int,) if integer else (int, float)
        if isinstance(value, bool) or not isinstance(value, kinds):
            kind = "an integer" if integer else "a number"
            raise self.error(name, f"must be {kind}, got {value!r}")
        if positive and not value > 0:
            raise self.error(name, f"must be > 0, got {value!r}")
        if minimum is not None and value < minimum:
            raise self.error(name, f"must be >= {minimum}, got {value!r}")
        return value if integer else float(value)

    def string(self, name: str, default: str | None, choices: tuple[str, ...] = ()) -> Any:
        value = self.data.get(name, default)
        if value is None:
            return None
        if not isinstance(value, str):
            raise self.error(name, f"must be a string, got {value!r}")
        if choices and value not in choices:
            raise self.error(name, f"unknown value {value!r}; allowed: {', '.join(choices)}")
        return value


def _as_list(table: _Table, name: str, default: Any) -> list[Any]:
    value = table.get(name, default)
    values = value if isinstance(value, list) else [value]
    if not values:
        raise table.error(name, "must not be empty")
    return values


def _entry(table: _Table, name: str, index: int, value: Any, allowed: tuple[str, ...]) -> _Table:
    """An axis entry given as a bare name or as a table with a ``name`` key."""
    path = f"{table.key(name)}[{index}]"
    if isinstance(value, str):
        value = {"name": value}
    entry = _Table(table.source, path, value, allowed)
    if not isinstance(entry.get("name"), str):
        raise GridError(table.source, f"{path}.name", "is required and must be a string")
    return entry


def _kwargs(entry: _Table, allowed: tuple[str, ...] | None) -> dict[str, Any]:
    kwargs = entry.get("kwargs", {})
    if not isinstance(kwargs, dict):
        raise entry.error("kwargs", f"must be a table, got {kwargs!r}")
    if allowed is not None:
        for key in kwargs:
            if key not in allowed:
                what = ", ".join(allowed) if allowed else "none"
                raise entry.error(f"kwargs.{key}", f"unknown keyword; allowed: {what}")
    return dict(sorted(kwargs.items()))


def _datasets(top: _Table) -> tuple[DatasetSpec, ...]:
    specs = []
    for i, value in enumerate(_as_list(top, "datasets", "mnist5k")):
        entry = _entry(top, "datasets", i, value, ("name", "train_size"))
        name = entry.string("name", None, DATASETS)
        train_size = entry.get("train_size")
        if train_size is not None:
            train_size = entry.number("train_size", 0, positive=True, integer=True)
        specs.append(DatasetSpec(name=name, train_size=train_size))
    return tuple(specs)


def _models(top: _Table) -> tuple[ModelSpec, ...]:
    if "models" not in top.data:
        raise top.error("models", f"is required; models: {', '.join(MODELS)}")
    specs = []
    for i, value in enumerate(_as_list(top, "models", None)):
        entry = _entry(top, "models", i, value, ("name", "widths", "kwargs"))
        name = entry.string("name", None, tuple(MODELS))
        widths = _as_list(entry, "widths", 1)
        for w in widths:
            if isinstance(w, bool) or not isinstance(w, (int, float)) or not w > 0:
                raise entry.error("widths", f"must be positive numbers, got {w!r}")
        kwargs = _kwargs(entry, MODELS[name])
        for key, choices in (
            ("hidden_activation", ACTIVATIONS),
            ("output_activation", OUTPUT_ACTIVATIONS),
        ):
            if key in kwargs and kwargs[key] not in choices:
                raise entry.error(
                    f"kwargs.{key}", f"unknown value {kwargs[key]!r}; allowed: {', '.join(choices)}"
                )
        if "hidden" in kwargs and (not isinstance(kwargs["hidden"], int) or kwargs["hidden"] < 1):
            raise entry.error(
                "kwargs.hidden", f"must be a positive integer, got {kwargs['hidden']!r}"
            )
        specs.append(ModelSpec(name=name, widths=tuple(float(w) for w in widths), kwargs=kwargs))
    return tuple(specs)


def _optimizers(top: _Table) -> tuple[OptimizerSpec, ...]:
    if "optimizers" not in top.data:
        raise top.error("optimizers", f"is required; optimizers: {', '.join(OPTIMIZERS)}")
    specs = []
    for i, value in enumerate(_as_list(top, "optimizers", None)):
        entry = _entry(top, "optimizers", i, value, ("name", "kwargs"))
        name = entry.string("name", None)
        if name.lower() not in OPTIMIZERS:
            raise entry.error(
                "name", f"unknown optimizer {name!r}; allowed: {', '.join(OPTIMIZERS)}"
            )
        # Keyword names are checked against the Keras class when the sweep starts.
        kwargs = _kwargs(entry, None)
        if "learning_rate" in kwargs:
            raise entry.error("kwargs.learning_rate", "is swept by the lr axis; remove it here")
        specs.append(OptimizerSpec(name=name.lower(), kwargs=kwargs))
    return tuple(specs)


def _best_lr(top: _Table, value: dict[str, Any]) -> BestLr:
    table = _Table(top.source, "lr", value, ("best", "top_k", "min_success"))
    results = table.string("best", None)
    if not results:
        raise table.error("best", "must name an earlier sweep's results directory")
    min_success = table.number("min_success", 0.5, positive=True)
    if min_success > 1:
        raise table.error("min_success", f"must be in (0, 1], got {min_success:g}")
    return BestLr(
        results=results,
        top_k=table.number("top_k", 1, positive=True, integer=True),
        min_success=min_success,
    )


def _lrs(top: _Table) -> tuple[float, ...]:
    if "lr" not in top.data:
        raise top.error(
            "lr", "is required: a list of learning rates, {start, stop, num} or {best = DIR}"
        )
    value = top.get("lr")
    if isinstance(value, dict) and "best" in value:
        return ()
    if isinstance(value, dict):
        table = _Table(top.source, "lr", value, ("start", "stop", "num"))
        for key in ("start", "stop", "num"):
            if key not in value:
                raise table.error(key, "is required for a log-spaced lr axis")
        start = table.number("start", 0, positive=True)
        stop = table.number("stop", 0, positive=True)
        num = table.number("num", 0, positive=True, integer=True)
        lrs = log_spaced(start, stop, num)
    else:
        values = value if isinstance(value, list) else [value]
        if not values:
            raise top.error("lr", "is empty; give at least one learning rate")
        for v in values:
            if isinstance(v, bool) or not isinstance(v, (int, float)) or not v > 0:
                raise top.error("lr", f"learning rates must be positive numbers, got {v!r}")
        lrs = tuple(float(v) for v in values)
    return tuple(sorted(set(lrs)))


def _schedules(top: _Table) -> tuple[dict[str, Any], ...]:
    values = _as_list(top, "schedule", "constant")
    parsed = [parse_schedule(v, top.source, f"schedule[{i}]") for i, v in enumerate(values)]
    unique = {schedule_label(s): s for s in parsed}
    return tuple(unique.values())


def _ints(top: _Table, name: str, default: Any, *, minimum: int) -> tuple[int, ...]:
    values = _as_list(top, name, default)
    for v in values:
        if isinstance(v, bool) or not isinstance(v, int) or v < minimum:
            raise top.error(name, f"must be integers >= {minimum}, got {v!r}")
    return tuple(dict.fromkeys(values))


def _stop(top: _Table) -> StopRule:
    table = _Table(top.source, "stop", top.get("stop", {}), tuple(StopRule.__dataclass_fields__))
    d = StopRule()
    target = table.number("target", d.target)
    if not 0 < target <= 1:
        raise table.error("target", f"must be in (0, 1], got {target!r}")
    return StopRule(
        target=target,
        metric=table.string("metric", d.metric, TARGET_METRICS),
        window=table.number("window", d.window, positive=True, integer=True),
        budget_s=table.number("budget_s", d.budget_s, positive=True),
        max_epochs=table.number("max_epochs", d.max_epochs, positive=True, integer=True),
        check_every=table.number("check_every", d.check_every, minimum=0, integer=True),
        diverge_factor=table.number("diverge_factor", d.diverge_factor, minimum=1.0),
    )


def _resources(top: _Table) -> Resources:
    table = _Table(top.source, "resources", top.get("resources", {}), ("cpus", "gpus"))
    return Resources(
        cpus=table.number("cpus", 1.0, positive=True),
        gpus=table.number("gpus", 0.0, minimum=0.0),
    )


def parse_grid(data: dict[str, Any], source: str, default_name: str = "grid") -> GridSpec:
    """Validate a grid given as a dict (the parsed TOML); ``source`` names it in errors."""
    top = _Table(source, "", data, _TOP_KEYS)
    seeds_value = top.get("seeds", [0])
    if isinstance(seeds_value, int) and not isinstance(seeds_value, bool):
        if seeds_value < 1:
            raise top.error("seeds", f"a repeat count must be >= 1, got {seeds_value}")
        seeds: tuple[int, ...] = tuple(range(seeds_value))
    else:
        seeds = _ints(top, "seeds", [0], minimum=0)
    losses = _as_list(top, "loss", "crossentropy")
    for loss in losses:
        if loss not in LOSSES:
            raise top.error("loss", f"unknown loss {loss!r}; allowed: {', '.join(LOSSES)}")
    data_dir = top.string("data_dir", None)
    lr_value = top.get("lr")
    best = isinstance(lr_value, dict) and "best" in lr_value
    return GridSpec(
        name=top.string("name", default_name),
        source=source,
        description=top.string("description", ""),
        data_dir=data_dir,
        datasets=_datasets(top),
        models=_models(top),
        optimizers=_optimizers(top),
        lrs=_lrs(top),
        best_lr=_best_lr(top, lr_value) if best else None,
        batch_sizes=_ints(top, "batch_size", 100, minimum=1),
        losses=tuple(dict.fromkeys(losses)),
        schedules=_schedules(top),
        seeds=seeds,
        stop=_stop(top),
        resources=_resources(top),
    )


def load_grid(path: str | Path) -> GridSpec:
    """Read and validate a grid file."""
    path = Path(path)
    source = str(path)
    try:
        text = path.read_text()
    except OSError as exc:
        raise GridError(source, "", f"cannot read grid file ({exc.strerror or exc})") from None
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise GridError(source, "", f"not valid TOML: {exc}") from None
    grid = parse_grid(data, source, default_name=path.stem)
    if grid.data_dir is not None and not Path(grid.data_dir).is_absolute():
        # A relative data_dir is relative to the grid file, not to the caller's cwd.
        grid = replace(grid, data_dir=str((path.parent / grid.data_dir).resolve()))
    if grid.best_lr is not None:
        from harness.bestlr import resolve_best_lrs

        grid = resolve_best_lrs(grid)
    return grid


# ---------------------------------------------------------------- planning ---

STARTUP_ESTIMATE_S = 1.0  # model build + first compiled step, per trial on a reused worker


def _duration(seconds: float) -> str:
    seconds = int(round(seconds))
    h, rest = divmod(seconds, 3600)
    m, s = divmod(rest, 60)
    return f"{h}h {m:02d}m" if h else (f"{m}m {s:02d}s" if m else f"{s}s")


def plan(grid: GridSpec, cpus: float, gpus: float = 0.0) -> list[str]:
    """Lines describing the expanded grid and its worst-case time on the given resources.

    Worst case: every trial runs its whole time budget, plus a startup estimate,
    with as many trials at once as the resources allow.
    """
    trials = grid.expand()
    res = grid.resources
    slots = int(cpus // res.cpus)
    if res.gpus > 0:
        slots = min(slots, int(gpus // res.gpus))

    def fmt(values: tuple[Any, ...]) -> str:
        return ", ".join(f"{v:g}" if isinstance(v, float) else str(v) for v in values)

    lrs = grid.lrs
    lr_text = fmt(lrs) if len(lrs) <= 12 else f"{len(lrs)} values, {lrs[0]:g} .. {lrs[-1]:g}"
    if grid.best_lr is not None:
        per_opt: dict[str, list[str]] = {}
        for opt, lr, _ in grid.optimizer_lrs():
            per_opt.setdefault(opt.label, []).append(f"{lr:g}")
        lr_text = f"best {grid.best_lr.top_k} of {grid.best_lr.results}: " + "; ".join(
            f"{name} {', '.join(v)}" for name, v in per_opt.items()
        )
    stop = grid.stop
    lines = [
        f"grid        {grid.name}  ({grid.source}, digest {grid.digest})",
        *([f"            {grid.description}"] if grid.description else []),
        "datasets    "
        + ", ".join(
            d.name + (f" (first {d.train_size})" if d.train_size else "") for d in grid.datasets
        ),
        "models      "
        + ", ".join(
            f"{m.name} x{fmt(m.widths)}" + (f" {m.kwargs}" if m.kwargs else "") for m in grid.models
        ),
        "optimizers  "
        + ", ".join(o.name + (f" {o.kwargs}" if o.kwargs else "") for o in grid.optimizers),
        f"lr          {lr_text}",
        *(f"            skipped: {why}" for why in grid.skipped),
        f"batch_size  {fmt(grid.batch_sizes)}",
        f"loss        {', '.join(grid.losses)}",
        f"schedule    {', '.join(schedule_label(s) for s in grid.schedules)}",
        f"seeds       {fmt(grid.seeds)}",
        f"stop        {stop.metric} accuracy >= {stop.target:g}"
        + (f" (window {stop.window} steps)" if stop.metric == "recent" else "")
        + f", budget {stop.budget_s:g}s, max {stop.max_epochs} epochs",
        f"resources   {res.cpus:g} cpu, {res.gpus:g} gpu per trial",
        f"trials      {len(trials)}",
    ]
    if slots < 1:
        lines.append(f"worst case  cannot run: {cpus:g} cpu / {gpus:g} gpu is less than one trial")
    else:
        rounds = math.ceil(len(trials) / slots)
        lines.append(
            f"worst case  {_duration(rounds * (stop.budget_s + STARTUP_ESTIMATE_S))} "
            f"({slots} at a time on {cpus:g} cpu / {gpus:g} gpu; every trial runs its "
            f"full budget + ~{STARTUP_ESTIMATE_S:g}s startup)"
        )
    return lines
