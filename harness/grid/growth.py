"""Growing a sweep in place: may a results directory that holds one version of a
grid take another?

Trial ids hash a trial's whole config, so a grid that only adds values on its
axes (two more learning rates, three more seeds, another optimizer) runs just
the new trials next to the stored ones, and one report covers them all. What
must not change is whatever makes stored and new rows incomparable: the grid's
name and its stop rule (target, metric, window, budget, divergence stop). A
value dropped from an axis, a dataset prepared differently (another
``train_size``) or a model with other keywords is refused as well: the stored
rows would no longer be the grid's.

Pure: grid JSON (as the manifest stores it) in, a ``GridChange`` out. Both
sides are compared as stored, with the credentials of any URI hidden, so a
rotated key in ``lr.best``'s URI is the same grid, and so is a manifest written
before grids were stored without them.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from harness.grid.specs import CONSTANT_SCHEDULE, NOT_IN_IDS
from harness.store.location import redact_json

if TYPE_CHECKING:
    from harness.grid.resolved import ResolvedGrid

# The grid's axes, as ``ResolvedGrid.to_json`` names them: each may gain values.
AXES = ("datasets", "models", "optimizers", "lrs", "batch_sizes", "losses", "schedules", "seeds")
# What must stay as it was: the trials' stop rule and the sweep's identity.
FIXED = ("name", "stop", "best_lr", "finder_lr")


@dataclass(frozen=True)
class GridChange:
    """How a new version of a grid relates to the one a directory holds."""

    same: bool  # the same grid (same digest): a plain resume
    added: dict[str, list[Any]]  # axis -> values the new version adds
    problem: str | None = None  # why the change is refused (None: it is allowed)

    @property
    def grows(self) -> bool:
        """True when the new version is a proper superset of the stored one."""
        return not self.same and self.problem is None


def _key(value: Any) -> str:
    return json.dumps(value, sort_keys=True, default=str)


def _values(grid: dict[str, Any], axis: str) -> list[Any]:
    """An axis's values, one per trial-deciding value: a model with several
    widths counts once per width, and the LRs of ``lr = { best }`` count as
    (optimizer, keywords, LR)."""
    if axis == "models":
        return [
            {
                "name": m["name"],
                "kwargs": m.get("kwargs", {}),
                "width": w,
                **({"builder": m["builder"]} if m.get("builder") else {}),
            }
            for m in grid.get("models", [])
            for w in m.get("widths", [1.0])
        ]
    if axis == "lrs" and grid.get("best_lr"):
        return [
            {"optimizer": c["optimizer"], "kwargs": c["optimizer_kwargs"], "lr": c["lr"]}
            for c in grid.get("chosen_lrs", [])
        ]
    if axis == "lrs" and grid.get("finder_lr"):  # the ladders around range-test suggestions
        return [
            {"optimizer": s["optimizer"], "kwargs": s["optimizer_kwargs"], "lr": lr}
            for s in grid.get("suggested_lrs", [])
            for lr in s["lrs"]
        ]
    if axis == "schedules" and not grid.get(axis):  # manifests from before the axis
        return [dict(CONSTANT_SCHEDULE)]
    return list(grid.get(axis) or [])


def _text(value: Any) -> str:
    if isinstance(value, dict):
        return "{" + ", ".join(f"{k} = {_key(v)}" for k, v in value.items()) + "}"
    return _key(value)


def compare(stored: dict[str, Any], new: ResolvedGrid) -> GridChange:
    """How ``new`` relates to ``stored`` (a manifest's grid JSON): the same
    grid, a superset that adds values, or a change refused with the first key
    that makes it incomparable."""
    stored, grown = redact_json(stored), redact_json(new.to_json())
    for key in FIXED:
        old_value, new_value = stored.get(key), grown.get(key)
        if key == "stop":
            old_value = {k: v for k, v in (old_value or {}).items() if k not in NOT_IN_IDS}
            new_value = {k: v for k, v in (new_value or {}).items() if k not in NOT_IN_IDS}
        if _key(old_value) != _key(new_value):
            if key == "stop" and isinstance(old_value, dict) and isinstance(new_value, dict):
                keys = sorted(k for k in new_value if old_value.get(k) != new_value.get(k))
                what = ", ".join(
                    f"stop.{k} {_text(old_value.get(k))} -> {_text(new_value[k])}" for k in keys
                )
            elif key == "best_lr":
                what = "lr.best (the earlier sweep or its rule)"
            elif key == "finder_lr":
                what = "lr.finder (the range tests' directory, rule, decades or num)"
            else:
                what = f"{key} {_text(old_value)} -> {_text(new_value)}"
            return GridChange(False, {}, f"{what} would make stored and new trials incomparable")
    added: dict[str, list[Any]] = {}
    for axis in AXES:
        old_values = {_key(v): v for v in _values(stored, axis)}
        new_values = {_key(v): v for v in _values(grown, axis)}
        dropped = [v for k, v in old_values.items() if k not in new_values]
        if dropped:
            shown = ", ".join(_text(v) for v in dropped[:3]) + (" ..." if len(dropped) > 3 else "")
            return GridChange(
                False,
                {},
                f"{axis}: drops {shown}, stored here; a grid may grow in place (new values "
                "on its axes) but not lose or change one",
            )
        new_only = [v for k, v in new_values.items() if k not in old_values]
        if new_only:
            added[axis] = new_only
    return GridChange(not added, added)
