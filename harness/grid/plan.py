"""``lrbench show``: a grid expanded, as lines of text, with its worst-case time."""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any

from harness.errors import DataError
from harness.grid.resolved import ResolvedGrid
from harness.grid.schedules import schedule_label
from harness.grid.specs import Fixed, FromBest, FromFinder, GridSpec
from harness.sweep.driver import check_data
from harness.trial.data import load_grid_data
from harness.trial.models import DataShape
from harness.trial.optcheck import BackgroundCheck

if TYPE_CHECKING:
    from harness.grid.growth import GridChange

STARTUP_ESTIMATE_S = 1.0  # model build + first compiled step, per trial on a reused worker


def _duration(seconds: float) -> str:
    seconds = int(round(seconds))
    h, rest = divmod(seconds, 3600)
    m, s = divmod(rest, 60)
    return f"{h}h {m:02d}m" if h else (f"{m}m {s:02d}s" if m else f"{s}s")


def _ladder_lines(grid: ResolvedGrid) -> list[str]:
    """Under ``lr = { finder = DIR }``: each optimizer's suggestion and ladder."""
    return [
        f"            {opt.label}: {s.rule} suggests {s.suggested_lr:.3g}; "
        + ", ".join(f"{lr:g}" for lr in s.lrs)
        for opt in grid.spec.optimizers
        for s in grid.suggested
        if s.matches(opt)
    ]


def _lr_text(grid: ResolvedGrid) -> str:
    """The ``lr`` line: the grid's own LRs, those chosen from an earlier
    sweep, or how the ladders around range-test suggestions are built."""
    match grid.spec.lr:
        case Fixed(lrs=lrs):
            return _fmt(lrs) if len(lrs) <= 12 else f"{len(lrs)} values, {lrs[0]:g} .. {lrs[-1]:g}"
        case FromBest(top_k=top_k, results=results):
            per_opt: dict[str, list[str]] = {}
            for choice in grid.lrs:
                per_opt.setdefault(choice.optimizer.label, []).append(f"{choice.lr:g}")
            return f"best {top_k} of {results}: " + "; ".join(
                f"{name} {', '.join(v)}" for name, v in per_opt.items()
            )
        case FromFinder() as f:
            return (
                f"{f.num} per optimizer over {f.decades:g} decades, centred on the {f.rule} "
                f"suggestion of its range test in {f.results}:"
            )


def _fmt(values: tuple[Any, ...]) -> str:
    return ", ".join(f"{v:g}" if isinstance(v, float) else str(v) for v in values)


def plan(resolved: ResolvedGrid, cpus: float, gpus: float = 0.0) -> list[str]:
    """Lines describing the expanded grid and its worst-case time on the given resources.

    Worst case: every trial runs its whole time budget, plus a startup estimate,
    with as many trials at once as the resources allow.
    """
    grid = resolved.spec
    trials = resolved.expand()
    res = grid.resources
    slots = int(cpus // res.cpus)
    if res.gpus > 0:
        slots = min(slots, int(gpus // res.gpus))
    stop = grid.stop
    lines = [
        f"grid        {grid.name}  ({grid.source}, digest {resolved.digest})",
        *([f"            {grid.description}"] if grid.description else []),
        "datasets    "
        + ", ".join(
            d.name + (f" (first {d.train_size})" if d.train_size else "") for d in grid.datasets
        ),
        "models      "
        + ", ".join(
            f"{m.name} x{_fmt(m.widths)}" + (f" {m.kwargs}" if m.kwargs else "")
            for m in grid.models
        ),
        "optimizers  "
        + ", ".join(o.name + (f" {o.kwargs}" if o.kwargs else "") for o in grid.optimizers),
        f"lr          {_lr_text(resolved)}",
        *(f"            skipped: {s.text}" for s in resolved.skipped),
        *_ladder_lines(resolved),
        f"batch_size  {_fmt(grid.batch_sizes)}",
        f"loss        {', '.join(grid.losses)}",
        f"schedule    {', '.join(schedule_label(s) for s in grid.schedules)}",
        f"seeds       {_fmt(grid.seeds)}",
        f"stop        {stop.metric} accuracy >= {stop.target:g}"
        + (f" (window {stop.window} steps)" if stop.metric == "recent" else "")
        + f", budget {stop.budget_s:g}s, max {stop.max_epochs} epochs"
        + (f", pruning {stop.prune} with the frontier guard" if stop.prune else ""),
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


def stored_lines(shown: str, change: GridChange | None, total: int, stored: int) -> list[str]:
    """``lrbench show GRID --out DIR``: how many of the grid's ``total`` trials
    the directory ``shown`` already holds, how many are new, and what a grown
    grid adds (``change``: None for a new directory)."""
    if change is None:
        return [f"stored      none ({shown} is new): {total} to run"]
    lines = [f"stored      {stored} of {total} in {shown}; {total - stored} to run"]
    if change.grows:
        added = "; ".join(f"{axis} +{len(values)}" for axis, values in change.added.items())
        lines.append(f"grows       the stored grid: {added}")
    return lines


def problem_lines(grid: GridSpec, data_dir: str | None = None, build: bool = True) -> list[str]:
    """``lrbench show``: each dataset's shapes and class count, and each model's
    weight count at each width, built once without training in the child
    process that checks the grid's code (``harness.trial.optcheck``), so this
    process never imports TensorFlow. A built-in dataset that is not on this
    machine is said so on its line; a user's data or model that fails its
    check is a GridError. Without ``build``, only the data are described."""
    check = BackgroundCheck.start(grid) if build else None
    try:
        lines, shapes, loaded, seen = [], [], {}, set()
        for spec in grid.datasets:
            if spec.name in seen:  # a dataset given twice (two train_size values)
                continue
            seen.add(spec.name)
            try:
                data = load_grid_data(grid, [spec.name], data_dir)[spec.name]
            except DataError as exc:  # a built-in dataset not downloaded here
                lines.append(f"data        {spec.name}: not loaded ({exc})")
                continue
            lines.append(f"data        {data.describe()}")
            shapes.append(DataShape.of(data))
            loaded[spec.name] = data
        check_data(grid, loaded)  # train_size and batch_size against the data, as the sweep
        sizes = []
        if check is not None:
            check.send(shapes)
            sizes = check.wait()
    finally:
        if check is not None:
            check.close()
    several = len({s.input_shape for s in shapes}) > 1
    for i, model in enumerate(grid.models):
        mine = [s for s in sizes if s.index == i]
        if not mine:
            continue
        text = "; ".join(
            f"x{s.width:g} {s.params:,}" + (f" ({s.dataset})" if several else "") for s in mine
        )
        lines.append(
            f"weights     {model.name}"
            + (f" ({model.builder})" if model.builder else "")
            + f": {text}"
        )
    return lines
