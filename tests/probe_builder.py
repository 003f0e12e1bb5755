"""A user's model builder that lets a test see and steer each trial attempt.

Tests copy this file next to their grid and name it ``probe.py:build`` with
``kwargs = { probe = "<folder>" }``. Run by the sweep's driver (its model
check, outside Ray) it only builds. Run by a Ray worker it first records the
attempt in ``<folder>/attempts/`` (``attempts`` reads them back): the order
of the call, Ray Tune's trial id, the Ray node and the worker's pid. Then,
as ``<folder>/config.json`` says (``configure`` writes it):

- ``die_once``: the first attempt of the whole sweep kills its own worker
  (SIGKILL, as the kernel's OOM killer would), a real worker death; the
  ``died`` file it leaves means later attempts build normally;
- ``hold_after`` = k: every attempt after the first k waits until the file
  ``<folder>/open`` exists (``release``), so a test decides when they train.

The model (Flatten, Dense softmax) overrides Keras' ``train_step``, so
lrbench never reuses it for the next trial of its worker (``harness.trial.reuse``):
every trial builds afresh, and every attempt calls this builder.
"""

from __future__ import annotations

import json
import os
import signal
import sys
import time
from pathlib import Path
from typing import Any

WAIT_S = 1800.0  # an attempt held this long fails (a test that forgot to release)


def configure(probe: Path, *, die_once: bool = False, hold_after: int | None = None) -> Path:
    """Make the probe folder and say what attempts do; returns the folder."""
    (probe / "attempts").mkdir(parents=True, exist_ok=True)
    config = {"die_once": die_once, "hold_after": hold_after}
    (probe / "config.json").write_text(json.dumps(config))
    return probe


def release(probe: Path) -> None:
    """Let held attempts (and every later one) go on."""
    (probe / "open").touch()


def attempts(probe: Path) -> list[dict[str, Any]]:
    """The attempts recorded so far, in the order they called the builder:
    ``{"seq", "trial", "node", "pid"}`` each."""
    found = sorted((probe / "attempts").glob("*.json"))
    return [json.loads(p.read_text()) for p in found]


def _claim(folder: Path) -> int:
    """The next free sequence number, claimed atomically among processes."""
    seq = 0
    while True:
        try:
            os.close(os.open(folder / f"{seq:04d}.claim", os.O_CREAT | os.O_EXCL))
            return seq
        except FileExistsError:
            seq += 1


def _record(probe: Path) -> int:
    import ray
    from ray import tune

    folder = probe / "attempts"
    seq = _claim(folder)
    entry = {
        "seq": seq,
        "trial": tune.get_context().get_trial_id(),
        "node": ray.get_runtime_context().get_node_id(),
        "pid": os.getpid(),
    }
    tmp = folder / f".{seq:04d}.tmp"
    tmp.write_text(json.dumps(entry))
    tmp.rename(folder / f"{seq:04d}.json")  # a reader never sees half a record
    return seq


def _in_ray_worker() -> bool:
    ray = sys.modules.get("ray")
    return ray is not None and ray.is_initialized()


def _steer(probe: Path) -> None:
    config = json.loads((probe / "config.json").read_text())
    seq = _record(probe)
    if config["die_once"]:
        try:
            os.close(os.open(probe / "died", os.O_CREAT | os.O_EXCL))
        except FileExistsError:
            pass
        else:
            os.kill(os.getpid(), signal.SIGKILL)
    hold_after = config["hold_after"]
    if hold_after is not None and seq >= hold_after:
        deadline = time.monotonic() + WAIT_S
        while not (probe / "open").exists():
            if time.monotonic() > deadline:
                raise TimeoutError(f"{probe}/open never appeared")
            time.sleep(0.05)


def build(input_shape: tuple[int, ...], num_classes: int, probe: str) -> Any:
    """A softmax regression on the flattened input, after the probe's steering."""
    import keras

    if _in_ray_worker():
        _steer(Path(probe))

    class OwnStep(keras.Model):
        def train_step(self, data: Any) -> Any:  # Keras' own, but lrbench can't tell
            return super().train_step(data)

    inputs = keras.Input(input_shape)
    outputs = keras.layers.Dense(num_classes, activation="softmax")(keras.layers.Flatten()(inputs))
    return OwnStep(inputs, outputs)
