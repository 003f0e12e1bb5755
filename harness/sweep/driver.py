"""Run a grid on Ray Tune: embedded local Ray by default, or an existing cluster.

The driver expands the grid, skips the trials the store already holds, loads
each dataset once and hands it to the trials through Ray's object store
(``tune.with_parameters``), then lets Ray Tune schedule the rest by their
resource requests. Each trial stores its own result from the worker that ran it,
so a crash, a killed worker or Ctrl-C keeps every finished trial, and running
the same command again resumes.
"""

from __future__ import annotations

import contextlib
import os
import signal
import sys
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pandas as pd

from harness import userref
from harness.errors import FatalError, GridError, LrbenchError, one_line
from harness.grid.resolved import ResolvedGrid
from harness.grid.specs import GridSpec, TrialSpec
from harness.lazy import lazy
from harness.rules.frontier import Cell, Guard, Recheck, series_of
from harness.store.migrate import migrate
from harness.store.records import TrialOutcome, TrialRecord, TrialStatus
from harness.store.results import Store
from harness.trial import sysinfo
from harness.trial.data import Dataset, load_grid_data
from harness.trial.models import DataShape
from harness.trial.optcheck import BackgroundCheck
from harness.trial.quiet import QUIET_ENV
from harness.trial.train import run_trial

if TYPE_CHECKING:
    import ray
    from ray import _raylet as raylet  # a Cython module
    from ray import tune
    from ray.tune import search

    from harness.sweep import progress as sweep_progress
else:
    ray = lazy("ray")
    raylet = lazy("ray._raylet")
    tune = lazy("ray.tune")
    search = lazy("ray.tune.search")
    sweep_progress = lazy("harness.sweep.progress")  # a Ray Tune callback: imports Ray

# Environment for trial workers: quiet TensorFlow, and TensorFlow's GPU memory
# growth so trials sharing a GPU don't each grab all of it.
WORKER_ENV = {**QUIET_ENV, "TF_FORCE_GPU_ALLOW_GROWTH": "true"}


# Ray's authentication mode: "token" for the embedded Ray (``_token_auth``)
AUTH_MODE = "RAY_AUTH_MODE"

# Tune's limit on trials created ahead of a free worker, when the user set one
_USER_PENDING = os.environ.get("TUNE_MAX_PENDING_TRIALS_PG")


@dataclass(frozen=True)
class SweepResult:
    """What a ``run_sweep`` call did."""

    out: str
    total: int
    already_stored: int
    ran: int
    counts: dict[str, int] = field(default_factory=dict)  # by status, whole store
    unfinished: int = 0  # trials of the grid with no finished record
    wall_s: float = 0.0
    compacted: int = 0  # trials whose files were merged into parts at the end
    rechecked: int = 0  # pruned trials the frontier guard ran again in full


# How a trial is run: ``harness.trial.train.run_trial`` unless a caller passes another
# function of the same signature (``benchmarks/driver_scale.py`` passes one that
# does no training, to measure the driver, Tune and the store alone).
Runner = Callable[..., TrialOutcome]


@dataclass(frozen=True)
class RunOptions:
    """How a sweep runs, not what it runs: the same grid gives the same trials
    under any options (``run_sweep``, ``lrbench.night.run_night``)."""

    address: str | None = None  # an existing Ray cluster to join; None: embedded local Ray
    data_dir: str | None = None  # dataset files (overrides the grid's data_dir)
    max_failures: int = 2  # retries of a trial whose worker died
    verbose: bool = False  # Ray's and the workers' logs on the console
    runner: Runner | None = None  # how a trial runs (None: harness.trial.train.run_trial)


FATAL = "fatal"  # the key of a trainable's report that stops the whole sweep


def _trainable(
    config: dict[str, Any],
    data: dict[str, Dataset],
    fingerprints: dict[str, str],
    store: Store,
    builders: dict[str, str] | None = None,
    runner: Runner | None = None,
) -> None:
    """Ray Tune's function trainable: run one trial, store it, report its summary.

    A ``FatalError`` (the store cannot be written, the device is missing) is
    reported, not raised: raised, Ray Tune would retrain the trial up to
    ``max_failures`` times; reported, ``_FatalStop`` ends the sweep at once.
    """
    run = runner or run_trial
    if builders:
        _shipped_modules_first()
    spec = TrialSpec.from_config(config["trial"])
    recheck = config.get("recheck")  # the frontier guard's full rerun of a pruned trial
    context = ray.get_runtime_context()
    assigned = context.get_assigned_resources()
    try:
        outcome = run(
            spec, data[spec.dataset], cpus=assigned.get("CPU", 1.0), gpus=assigned.get("GPU", 0.0)
        )
        where = {
            "node_id": context.get_node_id(),
            "node_ip": ray.util.get_node_ip_address(),
            "data_fingerprint": fingerprints[spec.dataset],
            "builder_fingerprint": (builders or {}).get(spec.builder, ""),
            **({"rechecked": True, **recheck} if recheck is not None else {}),
        }
        outcome = replace(outcome, record=replace(outcome.record, **where))
        try:
            store.write_trial(outcome)
        except Exception as exc:  # disk full, permission denied, no credentials ...
            raise FatalError(f"{store.shown()}: cannot store results ({one_line(exc)})") from None
    except FatalError as exc:
        tune.report({FATAL: str(exc), "status": TrialStatus.ERROR.value})
        return
    tune.report(outcome.summary())


def _shipped_modules_first() -> None:
    """Put the folders Ray unpacked ``py_modules`` into at the front of this
    worker's ``sys.path``. Joining a cluster by its address, Ray puts the
    driver's working directory first on every worker's path, so a node with a
    checkout at that path would import its own, maybe older, copy of the
    user's package instead of the one shipped (and fingerprinted)."""
    userref.add_to_path(
        p
        for p in os.environ.get("PYTHONPATH", "").split(os.pathsep)
        if "py_modules_files" in Path(p).parts
    )


# Ctrl-C, and the SIGTERM with which systemd, Kubernetes and CI runners stop a job
STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM)

# The signal (Ctrl-C or SIGTERM) that stopped the sweep while Tune ran, 0 while
# none did (``_catch_stop_signals``); read by the stopper where it runs, the
# driver (Tune pickles the stopper, so it imports this, not a copy)
STOPPED = {"signal": 0}


def _fatal_stopper() -> Any:
    """A Ray Tune stopper that ends the whole sweep on a trial's ``FATAL`` report
    (and keeps its message), or after Ctrl-C or SIGTERM (``STOPPED``)."""

    class _FatalStop(tune.Stopper):
        def __init__(self) -> None:
            self.message: str | None = None

        def __call__(self, trial_id: str, result: dict[str, Any]) -> bool:
            from harness.sweep.driver import STOPPED

            if result.get(FATAL):
                self.message = self.message or str(result[FATAL])
            return bool(result.get(FATAL)) or bool(STOPPED["signal"])

        def stop_all(self) -> bool:
            from harness.sweep.driver import STOPPED

            return self.message is not None or bool(STOPPED["signal"])

    return _FatalStop()


def _catch_stop_signals() -> Callable[[], None]:
    """While Ray runs the sweep, Ctrl-C (SIGINT) or SIGTERM sets ``STOPPED``
    instead of raising wherever the main thread happens to be (inside Tune's
    loop it can be lost); the stopper then ends the sweep, and ``run_sweep``
    sends the signal again once Ray is down (``_deliver``). A second one is
    delivered at once. Returns what restores the previous handlers."""
    STOPPED["signal"] = 0
    if threading.current_thread() is not threading.main_thread():
        return lambda: None
    previous = {s: signal.getsignal(s) for s in STOP_SIGNALS}

    def restore() -> None:
        for s, handler in previous.items():
            if handler is not None:  # None: set outside Python, cannot be put back
                signal.signal(s, handler)

    def handler(signum: int, frame: Any) -> None:
        if STOPPED["signal"]:
            restore()
            _deliver(signum)
        STOPPED["signal"] = signum

    for s in STOP_SIGNALS:
        signal.signal(s, handler)
    return restore


def _deliver(signum: int) -> None:
    """Send ``signum`` to this process again, now that the caller's handlers are
    back: Python's own raises ``KeyboardInterrupt`` for Ctrl-C, the CLI's raises
    ``lrbench.cli.common.Terminated`` for SIGTERM, and SIGTERM's default ends the
    process. ``KeyboardInterrupt`` if the handler returns (an ignored signal)."""
    signal.raise_signal(signum)
    raise KeyboardInterrupt


def _sigterm_handler() -> Any:
    """The caller's SIGTERM handler; None off the main thread (or one set
    outside Python), where it cannot be put back."""
    if threading.current_thread() is not threading.main_thread():
        return None
    return signal.getsignal(signal.SIGTERM)


def _guard_search(guard: Guard, progress: Any) -> Any:
    """A Ray Tune searcher that hands out the trials of ``guard`` (the grid's
    pending trials, then the frontier guard's rechecks as each series
    finishes) and tells it how each ended; ``progress`` grows with the rechecks."""

    class _GuardSearch(search.Searcher):
        def __init__(self) -> None:
            super().__init__()
            self.ours: dict[str, str] = {}  # Tune's trial id -> lrbench's

        # Tune's own annotation leaves out the Searcher.FINISHED it documents
        def suggest(self, trial_id: str) -> dict[str, Any] | str | None:  # type: ignore[override]
            if guard.finished:
                return search.Searcher.FINISHED
            picked = guard.next()
            if picked is None:
                return None  # waiting for a series to finish
            spec, recheck = picked
            self.ours[trial_id] = spec.trial_id
            return {"trial": spec.to_config(), "recheck": asdict(recheck) if recheck else None}

        def on_trial_complete(
            self, trial_id: str, result: dict[str, Any] | None = None, error: bool = False
        ) -> None:
            ours = self.ours.pop(trial_id, None)
            if ours is None:
                return
            before = guard.rechecks
            result = result or {}
            status = TrialStatus.ERROR.value if error else result.get("status", "error")
            pruned = None
            if result.get("pruned"):
                pruned = Recheck(result["pruned_at_s"], int(result["pruned_at_step"]))
            guard.done(ours, status, pruned)
            progress.grow(guard.rechecks - before)

    return _GuardSearch()


def stored_cells(
    trials: Sequence[TrialSpec], store: Store
) -> tuple[dict[str, Cell], dict[str, Recheck]]:
    """The frontier guard's view of the grid's stored trials: their cells (all
    but ``error`` rows, which run again) and where the pruned ones stopped."""
    rows = store.verdicts()
    specs = {t.trial_id: t for t in trials}
    rows = rows[rows["trial_id"].isin(specs.keys()) & (rows["status"] != TrialStatus.ERROR.value)]
    cells, pruned_at = {}, {}
    for row in rows.itertuples(index=False):
        spec = specs[row.trial_id]
        cells[row.trial_id] = Cell(row.trial_id, series_of(spec), spec.lr, row.status, row.pruned)
        if row.pruned:
            seconds, step = row.pruned_at_s, row.pruned_at_step
            pruned_at[row.trial_id] = Recheck(
                None if pd.isna(seconds) else float(seconds), None if pd.isna(step) else int(step)
            )
    return cells, pruned_at


def ray_address(address: str | None) -> str | None:
    """The cluster to join: ``--address``, else ``RAY_ADDRESS``, else None (embedded)."""
    return address or os.environ.get("RAY_ADDRESS") or None


def init_ray(address: str | None, verbose: bool = False, py_modules: Sequence[str] = ()) -> bool:
    """Start embedded local Ray (dashboard off, token auth on) or join ``address``
    (``--address``, or ``RAY_ADDRESS`` when that is set).

    Embedded Ray is started with ``address="local"``: a bare ``ray.init()`` would
    join a cluster that ``ray start`` left running on this machine.
    ``py_modules`` (a user's builder modules, ``harness.userref.shipped``) reach
    every worker through Ray's runtime environment, on a cluster's other
    nodes too. Embedded Ray always requires Ray's token (``_token_auth``).

    ``ray.init`` puts SIGTERM handlers of its own in place of the caller's (its
    Python one exits 1; its core worker's C++ one first prints a stack dump on
    the console): the caller's is put back once Ray has started, and a SIGTERM
    while it starts goes to the caller's too. Returns True when this call
    started Ray (so the caller shuts it down).
    """
    if ray.is_initialized():
        return False
    given = "--address" if address else "RAY_ADDRESS"
    address = ray_address(address)
    sigterm = _sigterm_handler()
    try:
        _start_ray(address, given, verbose, py_modules)
    except SystemExit:
        # while Ray starts, only its own SIGTERM handlers exit (having stopped
        # what it started): hand that SIGTERM to the caller's handler
        if sigterm is None:
            raise
        with contextlib.suppress(Exception):
            ray.shutdown()
        signal.signal(signal.SIGTERM, sigterm)
        _deliver(signal.SIGTERM)
    except KeyboardInterrupt:  # Ctrl-C, or SIGTERM before Ray set its handlers
        with contextlib.suppress(Exception):
            ray.shutdown()  # what had started
        raise
    finally:
        if sigterm is not None:
            signal.signal(signal.SIGTERM, sigterm)
    return True


def _start_ray(address: str | None, given: str, verbose: bool, py_modules: Sequence[str]) -> None:
    """``ray.init`` for ``init_ray``: join ``address``, else start embedded Ray."""
    kwargs: dict[str, Any] = {
        "log_to_driver": verbose,
        "logging_level": "INFO" if verbose else "ERROR",
        "runtime_env": {
            "env_vars": WORKER_ENV,
            **({"py_modules": py_modules} if py_modules else {}),
        },
    }
    if address:
        try:
            ray.init(address=address, **kwargs)
        except ConnectionError as exc:
            raise LrbenchError(
                f"{given} {address}: cannot connect to the Ray cluster ({exc}); a cluster "
                "with token authentication (Ray's default from 2.59) also needs "
                "RAY_AUTH_MODE=token and its token (RAY_AUTH_TOKEN, or ~/.ray/auth_token "
                "from `ray get-auth-token`) here: see cluster/README.md"
            ) from None
    else:
        _token_auth()
        ray.init(
            address="local",
            include_dashboard=False,
            dashboard_host="127.0.0.1",
            _node_ip_address="127.0.0.1",
            **kwargs,
        )


def _token_auth() -> None:
    """Turn on Ray's token authentication for the Ray that lrbench starts.

    Ray has done so by default since 2.59 (``RAY_AUTH_MODE`` unset: token),
    but ``RAY_AUTH_MODE=disabled`` in the environment would turn it off
    without a word, and anything that reaches the port could then run code
    here. That setting is meant for joining older clusters (``--address``), so
    it is overridden, with a note, rather than refused. Ray reads the token
    from ``RAY_AUTH_TOKEN`` or ``RAY_AUTH_TOKEN_PATH``, else ``~/.ray/auth_token``,
    which it writes on first use; its workers inherit the mode from here."""
    mode = os.environ.get(AUTH_MODE)
    if mode is not None and mode.strip().lower() != "token":
        print(
            f"note: {AUTH_MODE}={mode} is ignored for lrbench's own Ray, which always "
            "requires Ray's token; it still applies to a cluster joined with --address",
            file=sys.stderr,
        )
    os.environ[AUTH_MODE] = "token"
    # Ray's config may have read the mode already (an earlier Ray in this
    # process): read it again, as Ray does when it turns token mode on itself
    raylet.Config.initialize("")  # type: ignore[attr-defined]


def check_data(grid: GridSpec, data: dict[str, Dataset]) -> None:
    """Refuse a ``train_size`` above what a dataset holds, and a batch larger
    than the training set (Keras would train on smaller batches than recorded)."""
    for i, spec in enumerate(grid.datasets):
        if spec.name not in data:
            continue
        held = len(data[spec.name].x_train)
        if spec.train_size is not None and spec.train_size > held:
            raise GridError(
                grid.source,
                f"datasets[{i}].train_size",
                f"{spec.name} has {held:,} training examples, got {spec.train_size:,}",
            )
        n_train = min(held, spec.train_size or held)
        for batch in grid.batch_sizes:
            if batch > n_train:
                raise GridError(
                    grid.source,
                    "batch_size",
                    f"{batch} is larger than the {n_train:,} training examples of "
                    f"{spec.name}; at most {n_train}",
                )


def builder_fingerprints(grid: GridSpec) -> dict[str, str]:
    """A hash of each user builder's module file, by reference (found without
    importing it); a module that cannot be found is a GridError."""
    dirs = userref.search_dirs(grid.source)
    found: dict[str, str] = {}
    for i, model in enumerate(grid.models):
        if model.builder and model.builder not in found:
            try:
                found[model.builder] = userref.fingerprint(model.builder, dirs)
            except userref.RefError as exc:
                raise GridError(grid.source, f"models[{i}].builder", str(exc)) from None
    return found


def shipped_modules(grid: GridSpec) -> list[str]:
    """The user's builder modules Ray must send to its workers: those found in
    the grid's folder or the working directory (an installed package is
    expected to be installed on the workers too)."""
    dirs = userref.search_dirs(grid.source)
    paths = []
    for i, model in enumerate(grid.models):
        if model.builder:
            try:
                path = userref.shipped(model.builder, dirs)
            except userref.RefError as exc:
                raise GridError(grid.source, f"models[{i}].builder", str(exc)) from None
            if any(path == d or path.startswith(d.rstrip(os.sep) + os.sep) for d in dirs):
                paths.append(path)
    return list(dict.fromkeys(paths))


def check_same_resources(grid: GridSpec, stored: pd.DataFrame, shown: str) -> None:
    """Refuse to add trials next to stored ones that ran with other per-trial
    CPUs or GPUs: TensorFlow's thread pools and the device set their speed, so
    their times would not compare. ``stored``: the store's trial rows."""
    for key, now in (("cpus", grid.resources.cpus), ("gpus", grid.resources.gpus)):
        if key not in stored or stored.empty:
            continue
        rows = stored[stored["status"] != TrialStatus.ERROR.value]
        old = sorted(set(rows[key].dropna()) - {now})
        if old:
            raise GridError(
                grid.source,
                f"resources.{key}",
                f"{now:g} per trial, but the {len(rows)} trials stored in {shown} ran with "
                f"{', '.join(f'{v:g}' for v in old)} (their times would not compare); set it "
                "back, or sweep into a new --out",
            )


def check_unchanged(
    grid: GridSpec, store: Store, data: dict[str, str], builders: dict[str, str]
) -> None:
    """Refuse to add trials next to stored ones that ran on other data or on
    another version of a user's builder module: their rows would mix silently.
    ``data`` and ``builders`` are the fingerprints now (by dataset name and by
    builder reference)."""
    stored = store.read_trials()
    if stored.empty:
        return
    check_same_resources(grid, stored, store.shown())
    for column, key, now in (
        ("data_fingerprint", "dataset", data),
        ("builder_fingerprint", "builder", builders),
    ):
        if column not in stored or key not in stored:
            continue
        for name, fingerprint in now.items():
            rows = stored[(stored[key] == name) & stored[column].notna() & (stored[column] != "")]
            old = sorted(set(rows[column]) - {fingerprint})
            if not old:
                continue
            if key == "dataset":
                i = next(i for i, d in enumerate(grid.datasets) if d.name == name)
                field_, what = f"datasets[{i}]", f"dataset {name!r}"
                fix = "restore its files, or"
            else:
                i = next(i for i, m in enumerate(grid.models) if m.builder == name)
                field_, what = f"models[{i}].builder", f"the module of {name}"
                fix = "restore that module, or"
            raise GridError(
                grid.source,
                field_,
                f"{what} changed since the {len(rows)} trials stored in {store.shown()} ran "
                f"(fingerprint {old[0]}, now {fingerprint}); {fix} sweep into a new --out",
            )


def check_resources(grid: GridSpec) -> None:
    """Refuse per-trial CPUs or GPUs that no live Ray node has: Tune would wait
    for them forever."""
    nodes = [n.get("Resources", {}) for n in ray.nodes() if n.get("Alive")]
    for key, label, need in (
        ("cpus", "CPU", grid.resources.cpus),
        ("gpus", "GPU", grid.resources.gpus),
    ):
        largest = max((n.get(label, 0.0) for n in nodes), default=0.0)
        if need > largest:
            total = sum(n.get(label, 0.0) for n in nodes)
            raise GridError(
                grid.source,
                f"resources.{key}",
                f"{need:g} per trial, but the largest Ray node has {largest:g} "
                f"({total:g} in all, {len(nodes)} node{'s' if len(nodes) != 1 else ''}); "
                f"at most {largest:g}",
            )


def trial_slots(grid: GridSpec) -> int:
    """How many of ``grid``'s trials the live Ray cluster runs at once (at least 1)."""
    total = ray.cluster_resources()
    slots = total.get("CPU", 1.0) / grid.resources.cpus if grid.resources.cpus else 1.0
    if grid.resources.gpus:
        slots = min(slots, total.get("GPU", 0.0) / grid.resources.gpus)
    return max(1, int(slots))


def _cluster_info() -> dict[str, Any]:
    nodes = [
        {"host": n.get("NodeManagerHostname"), "resources": n.get("Resources", {})}
        for n in ray.nodes()
        if n.get("Alive")
    ]
    return {"cluster_resources": ray.cluster_resources(), "nodes": nodes}


def run_sweep(grid: ResolvedGrid, out: str, options: RunOptions | None = None) -> SweepResult:
    """Run every trial of ``grid`` not already stored in ``out``, as ``options``
    say (embedded local Ray, the grid's data directory, each trial trained by
    ``harness.trial.train.run_trial`` when None)."""
    options = options or RunOptions()
    started = time.monotonic()
    trials = grid.expand()
    if ray_address(options.address) and "://" not in out:
        # workers resolve a relative path against their own directory: this one
        # must name shared storage that every node mounts at the same path
        out = os.path.abspath(out)
    store = Store(out)
    store.check_grid(grid)  # before any slow work
    with store.locked(f"lrbench sweep {grid.spec.source}"):  # a second sweep here stops at once
        # in a child process while data loads and Ray starts (harness.trial.optcheck)
        check = BackgroundCheck.start(grid.spec)
        try:
            return _run_locked(grid, store, trials, check, started, options)
        finally:
            check.close()


def _run_locked(
    grid: ResolvedGrid,
    store: Store,
    trials: list[TrialSpec],
    check: BackgroundCheck,
    started: float,
    options: RunOptions,
) -> SweepResult:
    address, data_dir, verbose = options.address, options.data_dir, options.verbose
    spec = grid.spec
    migrated = migrate(store)  # older files to the current schema: one per directory
    if migrated.rewritten:
        print(f"note: {store.shown()}: {migrated.summary()}", file=sys.stderr)
    cells, pruned_at = stored_cells(trials, store)
    # the grid's pending trials, then the rechecks of the frontier guard; a
    # stored pruned trial that a grown grid (or an interrupted guard) puts on
    # the frontier is released from its compacted part here, before Ray starts
    guard = Guard(trials, cells, pruned_at, release=store.release)
    stored = len(cells)
    if guard.finished:
        return _compacted(store, _result(store, trials, stored, 0, started))
    pending = [t for t in trials if t.trial_id not in cells]

    builders = builder_fingerprints(spec)
    data = load_grid_data(spec, {t.dataset for t in guard.queued()}, data_dir)
    check_data(spec, data)
    fingerprints = {name: d.fingerprint() for name, d in data.items()}
    check_unchanged(spec, store, fingerprints, builders)
    check.send([DataShape.of(d) for d in data.values()])  # the models' check, in the child

    # Our store is the record of the sweep: no Tune loggers, no Tune SIGINT handler
    # (Ctrl-C stops at once; finished trials are already stored).
    os.environ.setdefault("TUNE_DISABLE_AUTO_CALLBACK_LOGGERS", "1")
    os.environ.setdefault("TUNE_DISABLE_SIGINT_HANDLER", "1")
    os.environ.setdefault("RAY_CHDIR_TO_TRIAL_DIR", "0")
    os.environ.setdefault("RAY_AIR_NEW_OUTPUT", "0")  # with verbose=0: no Tune tables
    # Tune's own experiment snapshots (every trial's state, ~6.5 KB each) are
    # thrown away with its temporary folder: take one every 10 minutes at most
    os.environ.setdefault("TUNE_GLOBAL_CHECKPOINT_S", "600")
    started_ray = init_ray(address, verbose, shipped_modules(spec))
    restore = _catch_stop_signals()
    try:
        check_resources(spec)
        # the searcher hands out trials one by one (no copy of the grid per
        # trial, as tune.grid_search makes); let Tune keep as many pending as
        # the cluster can run at once, so that every worker starts without
        # waiting for the next trial to be created
        os.environ["TUNE_MAX_PENDING_TRIALS_PG"] = _USER_PENDING or str(trial_slots(spec))
        progress = sweep_progress.SweepProgress(
            len(trials) + guard.rechecks, stored, Counter(c.status for c in cells.values())
        )
        fatal = _fatal_stopper()
        trainable = tune.with_resources(
            tune.with_parameters(
                _trainable,
                data=data,
                fingerprints=fingerprints,
                store=store,
                builders=builders,
                runner=options.runner,
            ),
            {"cpu": spec.resources.cpus, "gpu": spec.resources.gpus},
        )
        # Tune has put the arrays into Ray's object store: the driver's own copy
        # would only double its memory for the rest of the sweep
        del data
        check.wait()  # an optimizer or a model the grid gets wrong: one line, before the store
        store.open_sweep(
            grid,
            {
                "host": sysinfo.host(),
                "cpu": sysinfo.cpu_name(),
                "versions": sysinfo.versions(),
                "address": ray_address(address),
                "trials": len(trials),
                "pending": guard.pending,
                **_cluster_info(),
            },
        )
        with tempfile.TemporaryDirectory(prefix="lrbench-tune-") as tune_dir:
            tuner = tune.Tuner(
                trainable,
                tune_config=tune.TuneConfig(
                    reuse_actors=True, search_alg=_guard_search(guard, progress), num_samples=-1
                ),
                run_config=tune.RunConfig(
                    name=f"lrbench-{spec.name}",
                    storage_path=tune_dir,
                    verbose=0,
                    callbacks=[progress],
                    stop=fatal,
                    failure_config=tune.FailureConfig(max_failures=options.max_failures),
                ),
            )
            try:
                results = tuner.fit()
            finally:
                progress.close()
        # a ResultGrid is indexed, and declares no __iter__
        reports = [results[i].metrics or {} for i in range(len(results))]
        message = fatal.message or next(
            (m[FATAL] for m in reports if m.get(FATAL)), None
        )  # the stopper's copy lives where Tune runs: on the head, through Ray Client
        if message is not None:
            raise FatalError(message)
        _record_worker_failures(store, results)
    finally:
        if started_ray:
            ray.shutdown()
        restore()  # once Ray is down: a signal while it stops is caught too
    if STOPPED["signal"]:
        _close_stopped(store, trials, stored, len(pending), started)
        _deliver(STOPPED["signal"])
    result = replace(
        _result(store, trials, stored, len(pending), started), rechecked=guard.rechecks
    )
    store.close_run(result.wall_s, result.counts)
    return _compacted(store, result)


def _close_stopped(
    store: Store, trials: list[TrialSpec], stored: int, ran: int, started: float
) -> None:
    """End the manifest's entry of a run that Ctrl-C or SIGTERM stopped (its
    wall time and counts), as a finished run's is ended. A store that cannot
    be read or written now must not hide the signal: the entry then stays
    open, as after a crash."""
    if store.sweep_run_id is None:  # stopped before the run was recorded
        return
    with contextlib.suppress(Exception):
        result = _result(store, trials, stored, ran, started)
        store.close_run(result.wall_s, result.counts)


def _compacted(store: Store, result: SweepResult) -> SweepResult:
    """A finished sweep's per-trial files merged into parts (``Store.compact``);
    a sweep with unfinished trials keeps them as they are, for the rerun."""
    if result.unfinished:
        return result
    return replace(result, compacted=store.compact().trials)


def _record_worker_failures(store: Store, results: Any) -> None:
    """Store an ``error`` row for each trial Ray gave up on (its worker died) and
    that has no row of its own; a rerun retries it."""
    failed = [r for r in results if r.error is not None]
    if not failed:
        return
    stored = set(store.read_trials()["trial_id"])
    for result in failed:
        spec = TrialSpec.from_config(result.config["trial"])
        if spec.trial_id in stored:
            continue
        record = TrialRecord.from_spec(
            spec,
            TrialStatus.ERROR,
            error=one_line(result.error),
            traceback=str(result.error),
            versions=sysinfo.versions(),
        )
        store.write_trial(TrialOutcome(record=record, curve=[]))


def _result(
    store: Store, trials: list[TrialSpec], stored: int, ran: int, started: float
) -> SweepResult:
    df = store.read_trials()
    ids = {t.trial_id for t in trials}
    mine = df[df["trial_id"].isin(ids)]
    finished = set(mine.loc[mine["status"] != TrialStatus.ERROR.value, "trial_id"])
    return SweepResult(
        out=store.out,
        total=len(trials),
        already_stored=stored,
        ran=ran,
        counts={str(k): int(v) for k, v in mine["status"].value_counts().items()},
        unfinished=len(ids - finished),
        wall_s=time.monotonic() - started,
    )
