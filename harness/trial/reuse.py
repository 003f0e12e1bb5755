"""Reuse a worker's compiled model across consecutive trials of the same setup.

Building, compiling and tracing the first training (and prediction) step is
most of a short trial's fixed cost, and a sweep's worker process (Ray Tune
reuses actors) runs trial after trial of one model and optimizer at different
learning rates. So the process keeps the last trial's compiled model, and a
next trial whose traced step would be the same takes it instead of a fresh one.

Reuse must not change a trial's numbers, so a reused model is reset to
exactly the state a fresh build for the new trial would start from:

- every model variable (weights, and the ``SeedGenerator`` states that drive
  dropout) to the values a fresh build at the trial's seed gives, captured
  once per seed (from the fresh build, or from a throwaway build of the model
  for a seed not seen yet);
- every optimizer variable (slots, iteration count) to its value before the
  first update, then the learning rate variable to the trial's LR;
- Python's and NumPy's random state to where a fresh build leaves them, and
  TensorFlow's global seed (which seeds the ``tf.data`` shuffle) to the trial's;
- the metrics (``fit`` also resets them each epoch).

Only a constant learning rate is reused: a Keras schedule is an object whose
parameters are traced into the step as constants, so a trial with a schedule
is built fresh. So is a model whose class overrides the training step
(``train_step``, ``compute_loss`` ...): what such a step keeps besides the
model's variables cannot be reset (``reusable``). Layer state that lives in
variables (BatchNorm's moving statistics, Dropout's seed state) is reset with
the weights. ``tests/harness/trial/test_reuse.py`` checks that reused and fresh trials give
the same curves, for a model with BatchNorm and Dropout too.

The cache holds one model and lives only as long as the Keras session that
built it: ``clear_session`` (run before every fresh build, see
``harness.trial.train``) invalidates it, so ``take`` drops it before that happens.

The same reset serves a fresh trial too: ``harness.trial.train`` runs a fresh model
once on each batch shape before its clock starts (so that no shape's trace or
XLA compile is timed) and then resets it with ``reset``. So the cache also
keeps a fresh model that will not be reused (one with an LR schedule) as long
as its step is Keras' own (``resettable``); ``take`` never hands that one out.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np

from harness.grid.specs import TRAINING_FIELDS, TrialSpec, is_constant, kwargs_json
from harness.lazy import lazy
from harness.trial.quiet import import_keras_quietly, import_tensorflow_quietly

if TYPE_CHECKING:
    import keras
    from tensorflow.python.eager import context as tf_context
else:
    keras = lazy("keras", before=import_keras_quietly)
    tf_context = lazy("tensorflow.python.eager.context", before=import_tensorflow_quietly)


def reuse_key(spec: TrialSpec) -> str | None:
    """What a cached model must match for ``spec`` to reuse it; None when the
    trial cannot reuse one (it has an LR schedule)."""
    if not is_constant(spec.schedule):
        return None
    # the seed and the LR are reset on a reused model; the stop rule is outside the step
    return kwargs_json({name: getattr(spec, name) for name in TRAINING_FIELDS})


@dataclass(frozen=True)
class _Start:
    """The state a fresh build at one seed starts training from."""

    model: list[np.ndarray]  # model.variables, in order
    python_rng: Any  # random.getstate() after the build
    numpy_rng: Any  # np.random.get_state() after the build


@dataclass
class _Entry:
    key: str | None  # None: kept only for ``reset``, never taken (see ``keep``)
    model: Any  # the compiled keras.Model
    optimizer: list[np.ndarray]  # optimizer.variables before the first update
    starts: dict[int, _Start] = field(default_factory=dict)


class ModelCache:
    """The compiled model of this process's last trial, kept for the next one."""

    def __init__(self) -> None:
        self._entry: _Entry | None = None

    def take(self, spec: TrialSpec) -> Any | None:
        """The cached model when ``spec`` may reuse it, else None, and the cache
        is dropped (the caller then clears the Keras session and builds fresh)."""
        key = reuse_key(spec)
        if self._entry is not None and key is not None and self._entry.key == key:
            return self._entry.model
        self._entry = None
        return None

    def drop(self) -> None:
        """Forget the cached model (after a failed trial: its state is unknown)."""
        self._entry = None

    def keep(self, spec: TrialSpec, model: Any) -> None:
        """Remember a freshly built and compiled model, before its first step
        (built right after ``keras.utils.set_random_seed(spec.seed)``).

        Builds the optimizer's variables now (what ``fit`` would do first) so
        that their initial values can be kept. Call it right after the build,
        with the RNGs where the build left them. A model whose step is Keras'
        own is kept even when ``spec`` cannot be reused (an LR schedule), so
        that ``reset`` can return it to this state after the warm-up; ``take``
        hands out only a reusable one.
        """
        if not reusable(model):
            self._entry = None
            return
        model.optimizer.build(model.trainable_variables)
        self._entry = _Entry(reuse_key(spec), model, _values(model.optimizer.variables))
        self._entry.starts[spec.seed] = _capture(model)

    def resettable(self, model: Any) -> bool:
        """True when ``model`` is the kept one, so ``reset`` can restore it."""
        return self._entry is not None and self._entry.model is model

    def reset(self, spec: TrialSpec, model: Any, build: Callable[[], Any]) -> None:
        """Seed the RNGs for ``spec`` and put the cached ``model`` in the state a
        fresh build for it starts from. ``build()`` builds a fresh model of the
        same setup (used once per new seed, with the RNGs seeded for it). The
        learning rate is set to ``spec.lr`` when it is constant; a schedule is
        a function of the optimizer's iteration count, reset with its other
        variables."""
        entry = self._entry
        assert entry is not None and entry.model is model
        start = entry.starts.get(spec.seed)
        if start is None or _tf_global_seed() != spec.seed:
            # Seeding only for a new seed or when TensorFlow's seed differs:
            # setting it also clears TensorFlow's kernel cache, and the next
            # step then spends ~0.1 s rebuilding it. Otherwise what seeding
            # does is done below (Python's and NumPy's RNGs) or already done
            # (TensorFlow's); the op-seed counter and Keras' global
            # SeedGenerator it also resets drive nothing in a trial (dropout
            # has its own SeedGenerator, reset with the weights).
            keras.utils.set_random_seed(spec.seed)
        if start is None:
            start = entry.starts[spec.seed] = _capture(build())
        for variable, value in zip(model.variables, start.model, strict=True):
            variable.assign(value)
        for variable, value in zip(model.optimizer.variables, entry.optimizer, strict=True):
            variable.assign(value)
        if is_constant(spec.schedule):
            model.optimizer.learning_rate = float(spec.lr)
        model.reset_metrics()
        random.setstate(start.python_rng)
        np.random.set_state(start.numpy_rng)


# keras.Model methods whose override makes a model's training step its own
_STEP_METHODS = ("train_step", "test_step", "compute_loss", "compute_metrics", "fit")


def reusable(model: Any) -> bool:
    """True when ``model``'s training step is Keras' own, so that resetting its
    variables and its optimizer's resets all the step depends on."""
    return all(
        getattr(type(model), name, None) is getattr(keras.Model, name, None)
        for name in _STEP_METHODS
    )


def _tf_global_seed() -> int | None:
    """TensorFlow's global seed in this process (None when unset)."""
    return tf_context.global_seed()


def _values(variables: list[Any]) -> list[np.ndarray]:
    return [np.array(v.numpy(), copy=True) for v in variables]


def _capture(model: Any) -> _Start:
    return _Start(_values(model.variables), random.getstate(), np.random.get_state())


CACHE = ModelCache()  # this process's cache: a sweep worker runs its trials one at a time
