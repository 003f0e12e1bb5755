"""Run tonight's grid into a nightly history (see ``docs/nightly.md``).

A run gets an id (its UTC start and a random suffix) and its own results
directory under the history, which ``run_sweep`` fills: an interrupted night
resumes, because the same command on the same UTC date picks up the
uncommitted run of the same grid. Once every trial has a record, the run's rows
and the night's environment (versions, device, host, git revision, data
fingerprints) go into the history dataset as one new file: the commit.
"""

from __future__ import annotations

import json
import secrets
from dataclasses import dataclass
from datetime import UTC, datetime

import pandas as pd

from harness.grid.resolved import ResolvedGrid
from harness.store.history import History
from harness.store.location import redact
from harness.store.migrate import migrate
from harness.store.records import NightInfo
from harness.store.results import Store
from harness.sweep.driver import RunOptions, SweepResult, run_sweep
from harness.trial import sysinfo
from harness.trial.data import load_grid_data
from harness.trial.models import check_optimizers


@dataclass(frozen=True)
class NightRun:
    """What a ``run_night`` call did."""

    run_id: str
    date: str  # the UTC date the run started: its partition
    resumed: bool  # True when it picked up an interrupted run of the same date
    sweep: SweepResult
    path: str  # the committed history file
    abandoned: tuple[str, ...] = ()  # uncommitted runs of other dates or grids, left as they are


def new_run_info(grid: ResolvedGrid, now: datetime) -> NightInfo:
    """A new run's identity: a sortable, unique id, its date, start and grid."""
    now = now.astimezone(UTC)
    return NightInfo(
        run_id=f"{now:%Y%m%dT%H%M%SZ}-{secrets.token_hex(3)}",
        date=now.date().isoformat(),
        started_at=now.isoformat(timespec="seconds"),
        grid=grid.spec.name,
        grid_digest=grid.digest,
        source=redact(grid.spec.source),  # stored, as the night's env: no credentials
    )


def resumable(pending: list[NightInfo], grid: ResolvedGrid, date: str) -> NightInfo | None:
    """The newest uncommitted run of this grid started on ``date``, if any."""
    same = [i for i in pending if i.grid_digest == grid.digest and i.date == date]
    return same[-1] if same else None


def run_night(
    grid: ResolvedGrid,
    history_root: str,
    options: RunOptions | None = None,
    *,
    revision: str | None = None,
    now: datetime | None = None,
    device_class: str | None = None,
) -> NightRun:
    """Run ``grid`` as tonight's night of the history at ``history_root`` and
    commit it. ``revision`` names the code under test (default: the git commit
    of the working directory); ``device_class``, when given, is the device key
    nights are compared by (``analysis.nightly.judge.night_records``)."""
    history = History(history_root)
    # one night at a time per history; under its lock, older files are brought
    # to the current schema and corrupt ones are moved aside
    with history.locked("lrbench nightly"):
        migrate(history)
        return _night(grid, history, options or RunOptions(), revision, now, device_class)


def _night(
    grid: ResolvedGrid,
    history: History,
    options: RunOptions,
    revision: str | None,
    now: datetime | None,
    device_class: str | None,
) -> NightRun:
    spec = grid.spec
    history.read()  # a corrupt history fails now, not after the night's sweep
    check_optimizers(
        spec.source, spec.optimizers
    )  # so do a keyword typo and a missing dataset (next)
    names = [d.name for d in spec.datasets]
    data = {
        name: d.fingerprint() for name, d in load_grid_data(spec, names, options.data_dir).items()
    }
    now = now or datetime.now(UTC)
    pending = history.pending()
    info = resumable(pending, grid, now.astimezone(UTC).date().isoformat())
    resumed = info is not None
    abandoned = tuple(i.run_id for i in pending if i is not info)
    if info is None:
        info = new_run_info(grid, now)
        history.write_run_info(info)
    out = history.run_out(info.run_id)
    result = run_sweep(grid, out, options)
    ids = {t.trial_id for t in grid.expand()}
    trials = Store(out).read_trials()
    trials = trials[trials["trial_id"].isin(ids)].reset_index(drop=True)
    devices = trials["device"].value_counts()
    env = {
        **sysinfo.environment(),
        "device": str(devices.index[0]) if len(devices) else "",
        "data": data,
        "grid_source": redact(spec.source),
        "address": redact(options.address) if options.address else options.address,
    }
    if device_class:  # nights are compared by this instead of the exact device string
        env["device_class"] = device_class
    night = {
        "run_started_at": pd.Timestamp(info.started_at),
        "grid_digest": grid.digest,
        "revision": sysinfo.git_revision() if revision is None else revision,
        "complete": result.unfinished == 0,
        "env": json.dumps(env, sort_keys=True, default=str),
    }
    path = history.append(info.date, info.run_id, trials, night, grid.to_json())
    return NightRun(info.run_id, info.date, resumed, result, path, abandoned)
