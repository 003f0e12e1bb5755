"""Nightly regression detection: pure functions from the history
(``History.read()``) to the judgement of one night against its baseline.

Vocabulary (see ``docs/nightly.md``):

- A **night** is one committed run of a grid (``run_id``); a date may hold several.
- A night is **good** when it is complete: every trial of its grid finished
  (none ended in ``error``).
- A night's **baseline** is the last ``baseline_nights`` good nights before it
  with the same grid (digest) on the same device, leaving out nights that were
  themselves judged regressions unless accepted (``baseline_of``). Without one (the first night,
  a changed grid, a new device) nothing is judged and nothing is a regression.
- **Cells** are those of ``analysis.cells``: a series at one LR, its trials
  pooled over seeds and, in the baseline, over nights. A cell's outcome is
  ``reached`` when at least ``min_success`` of its finished trials reached the
  target, and its time and steps are medians over the trials that reached it.
- The noise thresholds (``analysis.nightly.noise``) and the comparison and its
  findings (``analysis.nightly.compare``) have their own modules.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, fields
from typing import Any

import pandas as pd

from analysis import cells as C
from analysis.labels import label_series
from analysis.nightly.compare import (
    Finding,
    all_cells_findings,
    band_findings,
    cell_findings,
    compare_bands,
    compare_cells,
    findings_frame,
)
from analysis.nightly.noise import KEY, NightCells, Rules, flip_shares, night_cells, noise
from harness.errors import LrbenchError, ParamError
from harness.store.records import STATUSES


@dataclass(frozen=True)
class Night:
    """One committed run of a grid: a row of ``nights()``."""

    run_id: str
    date: str
    started_at: pd.Timestamp  # when the run started (UTC)
    grid: str  # the grid's name
    grid_digest: str
    revision: str  # the code under test, "" when unknown
    complete: bool  # every trial finished (none ended in error)
    device: str
    trials: int
    # trials by status (one field per ``TrialStatus`` value)
    reached: int
    budget: int
    diverged: int
    error: int
    env: dict[str, Any]  # the night's environment (versions, device, data, ...)

    def counts(self) -> dict[str, int]:
        """Trials by status, in ``STATUSES`` order."""
        return {s: getattr(self, s) for s in STATUSES}


NIGHT_COLUMNS = [f.name for f in fields(Night)]


@dataclass(frozen=True)
class Judgement:
    """One night set against its baseline. Every frame is tidy."""

    night: Night  # tonight
    baseline: list[str]  # run ids of the baseline nights, oldest first
    note: str  # what tonight was compared with, in words
    nights: pd.DataFrame  # the nights of tonight's grid and device up to tonight
    cells: pd.DataFrame  # per cell: baseline and tonight, and each verdict
    bands: pd.DataFrame  # per series: baseline band and tonight's
    noise: pd.DataFrame  # per metric and scope: the samples and thresholds
    findings: pd.DataFrame  # the ``Finding`` fields as columns, regressions first
    env: pd.DataFrame  # environment keys that differ across the nights shown
    trend: pd.DataFrame  # per night and cell: outcome, time and steps

    @property
    def regressions(self) -> pd.DataFrame:
        """The findings that are regressions."""
        return self.findings[self.findings["verdict"] == "regression"]

    @property
    def improvements(self) -> pd.DataFrame:
        """The findings that are improvements."""
        return self.findings[self.findings["verdict"] == "improvement"]

    @property
    def verdict(self) -> str:
        """``regression``, ``clean``, or ``no baseline``."""
        if not self.baseline:
            return "no baseline"
        return "regression" if len(self.regressions) else "clean"


def _frame(records: list[Night]) -> pd.DataFrame:
    return pd.DataFrame([asdict(n) for n in records], columns=NIGHT_COLUMNS)


def night_records(history: pd.DataFrame) -> list[Night]:
    """One ``Night`` per committed run, oldest first: its identity, grid,
    revision, whether it is complete, its device key (the ``--device-class`` it
    ran with, else the device string of its environment, else its trials' most
    common), trial counts by status, and its environment."""
    records = []
    for run_id, group in history.groupby("run_id", sort=False):
        first = group.iloc[0]
        env = json.loads(first["env"]) if isinstance(first["env"], str) and first["env"] else {}
        counts = group["status"].value_counts()
        device = (
            env.get("device_class")
            or env.get("device")
            or (group["device"].mode().iloc[0] if len(group) else "")
        )
        records.append(
            Night(
                run_id=run_id,
                date=first["date"],
                started_at=first["run_started_at"],
                grid=first["sweep"],
                grid_digest=first["grid_digest"],
                revision=first["revision"] or "",
                complete=bool(first["complete"]),
                device=device,
                trials=len(group),
                **{s: int(counts.get(s, 0)) for s in STATUSES},
                env=env,
            )
        )
    order = _frame(records).sort_values(["started_at", "run_id"], kind="stable").index
    return [records[i] for i in order]


def nights(history: pd.DataFrame) -> pd.DataFrame:
    """``night_records`` as a frame: one row per night (``NIGHT_COLUMNS``), the
    environment as a dict."""
    return _frame(night_records(history))


def _flat(env: dict[str, Any], prefix: str = "") -> dict[str, str]:
    out: dict[str, str] = {}
    for key, value in env.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict):
            out.update(_flat(value, f"{name}."))
        elif key == "gpus" and isinstance(value, list):
            out[name] = "; ".join(f"{g.get('name')} (driver {g.get('driver')})" for g in value)
        else:
            out[name] = "" if value is None else str(value)
    return out


def env_changes(shown: pd.DataFrame) -> pd.DataFrame:
    """The environment keys (``versions.tensorflow``, ``device``, ``revision``,
    ``data.mnist5k`` ...) whose values differ across the given nights: one row
    per key, one column per night (its run id)."""
    flat = {
        row.run_id: {"revision": row.revision, **_flat(row.env)}
        for row in shown.itertuples(index=False)
    }
    keys = sorted(set().union(*flat.values())) if flat else []
    rows = []
    for key in keys:
        values = [flat[r].get(key, "") for r in flat]
        if len(set(values)) > 1:
            rows.append({"key": key, **dict(zip(flat, values, strict=True))})
    return pd.DataFrame(rows, columns=["key", *flat])


def trend(history: pd.DataFrame, run_ids: list[str], min_success: float) -> pd.DataFrame:
    """Per night (of ``run_ids``) and cell: outcome, median time and steps to
    target, oldest night first."""
    trials = history[history["run_id"].isin(run_ids)]
    # one night is one source of ``cells.cells``: every night's cells in one pass
    labelled = label_series(
        trials.drop(columns=["source"], errors="ignore").assign(source=trials["run_id"])
    )
    cells = C.cells(labelled, min_success).rename(columns={"source": "run_id"})
    started = trials.groupby("run_id")["run_started_at"].first()
    cells.insert(1, "started_at", cells["run_id"].map(started))
    order = {r: i for i, r in enumerate(run_ids)}
    cells = cells.sort_values("run_id", key=lambda c: c.map(order), kind="stable")
    columns = ["run_id", "started_at", *KEY, "outcome", "time_median_s", "steps_median"]
    return cells[[*columns, "budget_s"]].reset_index(drop=True)


def _pick(records: list[Night], run_id: str | None) -> int:
    if not records:
        raise LrbenchError("the history holds no nights yet; run `lrbench nightly run GRID` first")
    if run_id is None:
        return len(records) - 1
    for i, night in enumerate(records):
        if night.run_id == run_id:
            return i
    known = ", ".join(n.run_id for n in records[-5:])
    raise ParamError("run_id", f"{run_id} is not in the history (latest: {known})")


def _no_baseline_note(earlier: pd.DataFrame, night: Night) -> str:
    grid = earlier[earlier["grid_digest"] == night.grid_digest]
    if grid.empty:
        return (
            f"first night of grid {night.grid!r} (digest {night.grid_digest}): "
            "no baseline yet, nothing judged; tonight starts the baseline"
        )
    on_device = grid[grid["device"] == night.device]
    if on_device.empty:
        return (
            f"first night on device {night.device!r} (earlier nights ran on "
            f"{', '.join(sorted(set(grid['device'])))}): no baseline on it yet, nothing judged"
        )
    return (
        f"no good night yet: the {len(on_device)} earlier nights of this grid on this device "
        "all had error trials; nothing judged"
    )


def _findings(
    cells_of: NightCells, run_id: str, baseline: list[str], rules: Rules
) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame, list[Finding]]:
    """Night ``run_id`` against ``baseline``: its cells, bands, noise thresholds
    and findings."""
    history = cells_of.history
    tonight = cells_of.of([run_id])
    thresholds = noise(history, baseline, rules, cells_of)
    flips = flip_shares(history, baseline, rules, cells_of)
    base = cells_of.of(baseline)
    cells = compare_cells(base, tonight, thresholds, rules.floor_seconds, flips)
    bands = compare_bands(base, tonight, flips)
    found = [
        *cell_findings(cells, thresholds),
        *all_cells_findings(cells, thresholds),
        *band_findings(bands),
    ]
    return cells, bands, thresholds, found


def baseline_of(
    history: pd.DataFrame,
    same: pd.DataFrame,
    rules: Rules,
    accepted: frozenset[str] = frozenset(),
    cells_of: NightCells | None = None,
) -> tuple[list[str], list[str]]:
    """The baseline for the night after ``same`` (the earlier nights of its grid
    and device, oldest first), and the nights left out as regressions.

    Nights are taken in order: a complete night joins the pool of good nights,
    unless the pool already holds ``baseline_nights`` nights (a full baseline,
    whose noise is known) and, judged against it, the night is a regression. An
    accepted night (``lrbench nightly accept``) joins even so, and starts the
    pool anew. The baseline is the last ``baseline_nights`` of the pool. So a run
    of regressed nights cannot shift the baseline until one of them is accepted."""
    cells_of = cells_of or NightCells(history, rules.min_success)
    pool: list[str] = []
    left_out: list[str] = []
    for night in same.itertuples(index=False):
        if not night.complete:
            continue
        if night.run_id in accepted:
            pool = [night.run_id]
            continue
        baseline = pool[-rules.baseline_nights :]
        if len(baseline) == rules.baseline_nights:  # while it fills, every good night joins
            found = _findings(cells_of, night.run_id, baseline, rules)[3]
            if any(f.verdict == "regression" for f in found):
                left_out.append(night.run_id)
                continue
        pool.append(night.run_id)
    return pool[-rules.baseline_nights :], left_out


def judge(
    history: pd.DataFrame,
    rules: Rules | None = None,
    run_id: str | None = None,
    accepted: frozenset[str] | set[str] = frozenset(),
) -> Judgement:
    """Judge one night of ``history`` (default: the latest) against its baseline:
    the good nights before it that were not regressions (``baseline_of``)."""
    rules = rules or Rules()
    records = night_records(history)
    at = _pick(records, run_id)
    night = records[at]
    all_nights = _frame(records)
    earlier = all_nights.iloc[:at]
    same = earlier[
        (earlier["grid_digest"] == night.grid_digest) & (earlier["device"] == night.device)
    ]
    cells_of = NightCells(history, rules.min_success)  # each set of nights' cells computed once
    baseline, left_out = baseline_of(history, same, rules, frozenset(accepted), cells_of)
    shown_nights = pd.concat([same, all_nights.iloc[[at]]], ignore_index=True)
    tonight_trials = history[history["run_id"] == night.run_id]
    context = all_nights.iloc[max(0, at - max(len(baseline), 1)) : at + 1]
    env = env_changes(context)
    trend_frame = trend(history, list(shown_nights["run_id"]), rules.min_success)
    if not baseline:
        thresholds = noise(history, baseline, rules)
        empty = night_cells(tonight_trials.iloc[0:0], rules.min_success)
        tonight = night_cells(tonight_trials, rules.min_success)
        return Judgement(
            night=night,
            baseline=[],
            note=_no_baseline_note(earlier, night),
            nights=shown_nights,
            cells=compare_cells(empty, tonight, thresholds, rules.floor_seconds),
            bands=compare_bands(empty, tonight).assign(verdict=""),
            noise=thresholds,
            findings=findings_frame([]),
            env=env,
            trend=trend_frame,
        )
    cells, bands, thresholds, found = _findings(cells_of, night.run_id, baseline, rules)
    dates = same[same["run_id"].isin(baseline)]["date"]
    span = (
        dates.iloc[0] if dates.iloc[0] == dates.iloc[-1] else f"{dates.iloc[0]} .. {dates.iloc[-1]}"
    )
    note = (
        f"the median of {len(baseline)} good night{'s' if len(baseline) > 1 else ''} ({span}) "
        f"of grid {night.grid!r} on {night.device}"
    )
    if left_out:
        note += (
            f"; {len(left_out)} earlier night{'s' if len(left_out) > 1 else ''} judged a "
            f"regression left out ({', '.join(left_out[-3:])}{', ...' if len(left_out) > 3 else ''}"
            "): `lrbench nightly accept RUN_ID` makes a night the start of a new baseline"
        )
    return Judgement(
        night=night,
        baseline=baseline,
        note=note,
        nights=shown_nights,
        cells=cells,
        bands=bands,
        noise=thresholds,
        findings=findings_frame(found),
        env=env,
        trend=trend_frame,
    )
