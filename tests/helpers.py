"""Canned trial specs for the tests: one that reaches its target, one that runs
out of budget, one that diverges, one that fails."""

from __future__ import annotations

from dataclasses import fields, replace
from pathlib import Path
from typing import Any

from harness.grid.parse import parse_grid
from harness.grid.resolved import ResolvedGrid
from harness.grid.specs import (
    STOP_ID_NAMES,
    Fixed,
    FromBest,
    FromFinder,
    GridSpec,
    StopRule,
    TrialSpec,
)
from harness.store.records import CurvePoint, TrialOutcome, TrialRecord, TrialStatus

ROOT = Path(__file__).resolve().parent.parent  # the checkout the tests run in

# The tests' trial: tiny_cnn on mnist5k, adam at 0.01, to 80 % recent accuracy.
GRID: dict[str, Any] = {
    "name": "test",
    "models": ["tiny_cnn"],
    "optimizers": ["adam"],
    "lr": [0.01],
    # Epochs bound every canned trial, never the clock, so verdicts do not depend on the
    # machine's speed: adam at 0.01 reaches 0.8 in about one epoch (40 steps), four allowed.
    # Unpruned, so a hopeless trial runs to its budget (tests of pruning turn it on).
    "stop": {"target": 0.8, "window": 20, "budget_s": 3600.0, "max_epochs": 4, "prune": False},
}
BASE = ResolvedGrid.fixed(parse_grid(GRID, "tests/helpers.py")).expand()[0]
# a stop-rule field by its own name or by the name trial rows know it by
_STOP_NAMES = {STOP_ID_NAMES.get(f.name, f.name): f.name for f in fields(StopRule)}


def spec(**changes: Any) -> TrialSpec:
    """The tests' trial with the given changes; stop-rule fields (``budget_s``,
    ``target_acc``, ...) may be given directly."""
    stop = {_STOP_NAMES[k]: changes.pop(k) for k in list(changes) if k in _STOP_NAMES}
    return replace(BASE, stop=replace(BASE.stop, **stop), **changes)


def reaching(**changes: Any) -> TrialSpec:
    """Adam at a good LR to a modest target: reaches it in about one epoch."""
    return spec(**changes)


def out_of_budget(**changes: Any) -> TrialSpec:
    """Plain GD at 1e-6: makes no progress, so it ends as ``budget`` when its epochs
    run out (two unless changed; a test of the clock gives a short ``budget_s``)."""
    return spec(**{"optimizer": "gd", "lr": 1e-6, "max_epochs": 2, **changes})


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
    device_class: str | None = None,
) -> None:
    """Commit a hand-made night (no training) to a ``harness.store.results.History``."""
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
    if device_class:
        env["device_class"] = device_class
    night = {
        "run_started_at": started,
        "grid_digest": digest,
        "revision": "abc123",
        "complete": complete,
        "env": json.dumps(env),
    }
    history.append(f"{started:%Y-%m-%d}", run_id, trials, night, {"name": "test"})


# A synthetic night's cells, shared by the nightly tests: two optimizers, a low, a
# good and a high LR each.
CELLS: Cells = {
    ("adam", 1e-5): ("budget", 0.0, 200),
    ("adam", 0.01): ("reached", 2.0, 80),
    ("adam", 0.03): ("reached", 1.5, 60),
    ("adam", 100.0): ("diverged", 0.0, 3),
    ("gd", 1e-5): ("budget", 0.0, 200),
    ("gd", 0.1): ("reached", 4.0, 160),
    ("gd", 0.3): ("reached", 3.0, 120),
    ("gd", 100.0): ("diverged", 0.0, 3),
}
REACHED = [key for key, (status, _, _) in CELLS.items() if status == "reached"]


def scaled(cells: Cells, factors: dict[tuple[str, float], float]) -> Cells:
    """``cells`` with each reached cell's time multiplied by ``factors[key]`` (default 1)."""
    return {
        key: (s, t * factors.get(key, 1.0), n) if s == "reached" else (s, t, n)
        for key, (s, t, n) in cells.items()
    }


def history_of(tmp_path: Any, nights: list[Cells], **common: Any) -> Any:
    """A history under ``tmp_path / "history"`` with one committed night per entry of
    ``nights``, a day apart."""
    from harness.store.history import History

    history = History(str(tmp_path / "history"))
    for day, cells in enumerate(nights, 1):
        commit_night(history, f"run{day:02d}", cells, day=day, **common)
    return history


def quiet(n: int = 5) -> list[Cells]:
    """n nights with a few percent of timing noise, a different draw per cell."""
    return [
        scaled(CELLS, {key: 1 + 0.03 * ((night + i) % 3 - 1) for i, key in enumerate(REACHED)})
        for night in range(n)
    ]


def trials(rows: list[tuple], **common: Any) -> Any:
    """A trials table made by hand (no training, no store), as ``Store.read_trials``
    returns it: one row per (optimizer, lr, status, time_to_target_s,
    steps_to_target[, seed]), each a real ``TrialRecord`` row of the tests'
    trial at target 0.9 with a 10 s budget; ``common`` sets columns of every row."""
    import pandas as pd

    out = []
    for i, row in enumerate(rows):
        opt, lr, status, time, steps, *rest = row
        trial = spec(
            sweep="hand", optimizer=opt, lr=lr, seed=rest[0] if rest else 0,
            target_acc=0.9, budget_s=10.0, max_epochs=50,
        )  # fmt: skip
        ran = steps if steps is not None else (3 if status == "diverged" else 500)
        record = TrialRecord.from_spec(
            trial,
            TrialStatus(status),
            time_to_target_s=time,
            steps_to_target=steps,
            steps=ran,
            wall_s=(time or 10.0) + 0.5,
            started_at=f"2026-11-22T10:00:{i % 60:02d}+00:00",
            host="h",
            device="cpu: x",
            versions={"tensorflow": "2.21.0", "keras": "3.15.1"},
        )
        out.append({**record.to_row(), "trial_id": f"t{i:03d}", **common})
    df = pd.DataFrame(out)
    df["steps_to_target"] = df["steps_to_target"].astype("Int64")
    df["started_at"] = pd.to_datetime(df["started_at"], utc=True)
    return df


def session_pids(sid: int) -> list[int]:
    """The live processes of session ``sid``: a command started with
    ``start_new_session=True`` and the Ray processes it started (raylet,
    workers), which a kill of the command alone leaves running until they
    notice; one of them may still store a trial."""
    from pathlib import Path

    pids = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[3]) == sid and fields[0] != "Z":
            pids.append(int(stat.parent.name))
    return pids


def wait_session_gone(sid: int, timeout: float = 120) -> None:
    """Wait for the processes of session ``sid`` to stop; kill what would not,
    so that a rerun starts clean."""
    import os
    import signal
    import time

    deadline = time.monotonic() + timeout
    while session_pids(sid) and time.monotonic() < deadline:
        time.sleep(0.2)
    for pid in session_pids(sid):
        os.kill(pid, signal.SIGKILL)


def declared(spec: GridSpec) -> ResolvedGrid:
    """``spec`` as a resolved grid before any LR is chosen for it: its own LRs,
    or ``lr = { best | finder }`` with no chosen LR or ladder yet (what a grid
    declares, stored and hashed without reading the earlier results)."""
    match spec.lr:
        case Fixed():
            return ResolvedGrid.fixed(spec)
        case FromBest():
            return ResolvedGrid.from_best(spec, ())
        case FromFinder():
            return ResolvedGrid.from_finder(spec, ())


def stored_and_read_back(grid: ResolvedGrid) -> ResolvedGrid:
    """``grid`` as a manifest stores it (JSON text) and ``ResolvedGrid.from_json``
    reads it back; a test asserts it is the same grid."""
    import json

    stored = json.loads(json.dumps(grid.to_json()))
    back = ResolvedGrid.from_json(stored, grid.spec.source)
    assert json.loads(json.dumps(back.to_json())) == stored
    assert back.digest == grid.digest
    assert [(t.trial_id, t.lr_source) for t in back.expand()] == [
        (t.trial_id, t.lr_source) for t in grid.expand()
    ]
    return back
