"""Load one or more results directories for analysis.

This is the analysis side's only way in: it reads through ``harness.store.results``
(which validates every file against the results schema) and needs nothing but
the results directory: no Ray, no TensorFlow, nothing from the machine that
ran the sweep.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import pandas as pd

from harness.errors import StoreError
from harness.store.location import redact
from harness.store.results import FINDER, MANIFEST, TRIALS, Store

if TYPE_CHECKING:
    from harness.store.records import Manifest


@dataclass(frozen=True)
class Results:
    """Trials and curves of one or more sweeps; the ``source`` column says which."""

    trials: pd.DataFrame
    curves: pd.DataFrame
    paths: dict[str, str]  # source label -> results directory
    manifests: dict[str, Manifest | None] = field(default_factory=dict)  # None: no manifest
    finder: pd.DataFrame | None = None  # LR range-test points, where any are stored

    @property
    def sources(self) -> list[str]:
        """The source labels, in the order the directories were given."""
        return list(self.paths)


def source_labels(paths: list[str]) -> list[str]:
    """Short, distinct labels for results directories: the last path component,
    or as many trailing components as it takes to tell them apart (a URI's
    query options and ``user:password@``, which hold credentials, are never part
    of one: labels are stored in report tables and name report folders)."""
    bare = [redact(p.partition("?")[0]) if "://" in p else p for p in paths]
    parts = [p.rstrip("/").replace("\\", "/").split("/") for p in bare]
    depth = 1
    while True:
        labels = ["/".join(p[-depth:]) for p in parts]
        if len(set(labels)) == len(labels) or depth >= max(len(p) for p in parts):
            break
        depth += 1
    if len(set(labels)) < len(labels):  # the same directory given twice
        labels = [f"{label} ({i + 1})" for i, label in enumerate(labels)]
    return labels


class NoTrialsYet(StoreError):
    """A results directory whose sweep has not stored a trial yet: an honest
    state (a sweep just started), which ``lrbench report`` shows as a page."""

    def __init__(self, path: str, manifest: Manifest | None) -> None:
        super().__init__(f"{path}: no trials stored yet ({TRIALS}/ is empty)")
        self.path = path
        self.manifest = manifest


def _check_exists(store: Store) -> None:
    if "://" not in store.out and not os.path.isdir(store.out):
        raise StoreError(f"{store.shown()}: no such results directory")


def _check_directory(store: Store) -> None:
    _check_exists(store)
    if not (store.has(MANIFEST) or store.has(TRIALS)):
        raise StoreError(
            f"{store.shown()}: not an lrbench results directory (no {MANIFEST}, no {TRIALS}/); "
            "give the --out of an lrbench sweep"
        )


def load_finder(path: str) -> pd.DataFrame:
    """The LR range-test points ``lrbench find-lr --out PATH`` stored (a sweep
    need not be there). Raises ``StoreError`` (one line) for a missing directory
    or one without range tests."""
    store = Store(path)
    _check_exists(store)
    if not store.has(FINDER):
        raise StoreError(
            f"{store.shown()}: no LR range tests stored (no {FINDER}/); "
            f"run `lrbench find-lr GRID --out {store.shown()}` first"
        )
    return store.read_finder()


def load_results(paths: list[str] | str) -> Results:
    """Read and validate the trials, curves and manifests of results directories.

    Raises ``StoreError`` (one line, naming the file) for a missing directory,
    a directory with no trials (``NoTrialsYet``), a corrupt Parquet file, or a file written with
    another results schema.
    """
    paths = [paths] if isinstance(paths, str) else list(paths)
    if not paths:
        raise StoreError("no results directory given")
    labels = source_labels(paths)
    trials, curves, finders, manifests = [], [], [], {}
    for label, path in zip(labels, paths, strict=True):
        store = Store(path)
        _check_directory(store)
        manifest = store.read_manifest()
        t = store.read_trials()
        if t.empty:
            raise NoTrialsYet(redact(path), manifest)
        c = store.read_curves(set(t["trial_id"]))
        t.insert(0, "source", label)
        c.insert(0, "source", label)
        trials.append(t)
        curves.append(c)
        if store.has(FINDER):
            finders.append(store.read_finder().assign(source=label))
        manifests[label] = manifest
    return Results(
        trials=pd.concat(trials, ignore_index=True),
        curves=pd.concat(curves, ignore_index=True),
        paths=dict(zip(labels, paths, strict=True)),
        manifests=manifests,
        finder=pd.concat(finders, ignore_index=True) if finders else None,
    )
