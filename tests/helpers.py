"""Canned trial specs for the tests: one that reaches its target, one that runs
out of budget, one that diverges, one that fails."""

from __future__ import annotations

from typing import Any

from harness.grid import TrialSpec
from harness.records import CurvePoint, TrialOutcome, TrialRecord, TrialStatus

BASE: dict[str, Any] = dict(
    sweep="test",
    dataset="mnist5k",
    train_size=None,
    model="tiny_cnn",
    width=1.0,
    model_kwargs={},
    optimizer="adam",
    optimizer_kwargs={},
    lr=0.01,
    batch_size=100,
    loss="crossentropy",
    seed=0,
    target_metric="recent",
    target_acc=0.8,
    window=20,
    budget_s=20.0,
    max_epochs=30,
    check_every=0,
    diverge_factor=5.0,
)


def spec(**changes: Any) -> TrialSpec:
    """A tiny_cnn trial on mnist5k with the given changes."""
    return TrialSpec(**{**BASE, **changes})


def reaching(**changes: Any) -> TrialSpec:
    """Adam at a good LR to a modest target: reaches it in about a second."""
    return spec(**changes)


def out_of_budget(budget_s: float = 1.5, **changes: Any) -> TrialSpec:
    """Plain GD at 1e-6: makes no progress, so the time budget runs out."""
    return spec(optimizer="gd", lr=1e-6, budget_s=budget_s, **changes)


def diverging(**changes: Any) -> TrialSpec:
    """Plain GD at LR 100: the loss explodes within the first check."""
    return spec(optimizer="gd", lr=100.0, **changes)


def failing(**changes: Any) -> TrialSpec:
    """An optimizer keyword Keras rejects: the trial raises, so its status is error."""
    return spec(optimizer_kwargs={"no_such_keyword": 1}, **changes)


def outcome(
    status: TrialStatus = TrialStatus.REACHED,
    time_s: float = 1.5,
    steps: int = 40,
    n_params: int = 3300,
    **changes: Any,
) -> TrialOutcome:
    """A stored-trial result made by hand (no training): a record and a 3-point curve."""
    trial = spec(**changes)
    reached = status is TrialStatus.REACHED
    record = TrialRecord.from_spec(
        trial,
        status,
        n_params=n_params,
        time_to_target_s=time_s if reached else None,
        steps_to_target=steps if reached else None,
        steps=steps,
        train_s=time_s,
        step_time_s=time_s / steps,
        started_at="2026-11-22T10:00:00+00:00",
        host="h",
        device="cpu: x",
        versions={"keras": "3"},
    )
    curve = [
        CurvePoint(
            trial.trial_id,
            s,
            s / 40,
            s * 100,
            s / 10,
            0.01,
            0.5,
            0.8,
            0.7,
            0.8,
            0.75 if s == 40 else None,
        )
        for s in (1, 20, 40)
    ]
    return TrialOutcome(record, curve)


# A night of a synthetic history: (optimizer, lr) -> (status, time to target, steps).
Cells = dict[tuple[str, float], tuple[str, float, int]]


def commit_night(
    history: Any,
    run_id: str,
    cells: Cells,
    *,
    day: int = 1,
    hour: int = 3,
    digest: str = "g1",
    device: str = "cpu: x",
    complete: bool = True,
    versions: dict[str, str] | None = None,
) -> None:
    """Commit a hand-made night (no training) to a ``harness.store.History``."""
    import json

    import pandas as pd

    started = pd.Timestamp(f"2026-11-{day:02d}T{hour:02d}:00:00Z")
    rows = [
        outcome(
            TrialStatus(status), time_s=time_s, steps=steps, optimizer=opt, lr=lr
        ).record.to_row()
        for (opt, lr), (status, time_s, steps) in cells.items()
    ]
    trials = pd.DataFrame(rows).assign(started_at=started, device=device)
    env = {"device": device, "versions": versions or {"tensorflow": "2.21.0"}}
    night = {
        "run_started_at": started,
        "grid_digest": digest,
        "revision": "abc123",
        "complete": complete,
        "env": json.dumps(env),
    }
    history.append(f"{started:%Y-%m-%d}", run_id, trials, night, {"name": "test"})
