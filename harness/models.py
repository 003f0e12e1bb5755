"""Keras models, optimizers and losses, built from a trial spec.

Every model takes a ``width`` multiplier; each family's docstring says what it
scales. Keras is imported inside the functions so that importing this module
stays cheap.
"""

from __future__ import annotations

import inspect
import re
from typing import TYPE_CHECKING, Any

from harness.errors import GridError

if TYPE_CHECKING:
    from collections.abc import Sequence

    import keras

    from harness.specs import OptimizerSpec

INPUT_SHAPE = (28, 28, 1)
NUM_CLASSES = 10


def import_keras_quietly() -> None:
    """Import Keras (and TensorFlow) with the C++ start-up notices sent to /dev/null.

    TensorFlow prints its oneDNN and CUDA-probing notices before its logging is
    set up, so ``TF_CPP_MIN_LOG_LEVEL`` cannot hide them from the sweep's console.
    """
    import os
    import sys

    if "keras" in sys.modules:
        return
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    sys.stderr.flush()
    saved = os.dup(2)
    try:
        with open(os.devnull, "w") as null:
            os.dup2(null.fileno(), 2)
            import keras  # noqa: F401
    finally:
        os.dup2(saved, 2)
        os.close(saved)


# The unit counts that ``width`` scales in each family, at width 1 (the MLP's is
# its ``hidden`` keyword). A width that rounds one of them below one unit is
# refused by the grid, since the layer would not be what the width says.
SCALED_UNITS = {
    "tutorial_cnn": (32, 64),
    "tiny_cnn": (4, 8, 14),
    "keras_cnn": (32, 64, 256),
}


def scaled_units(name: str, width: float, kwargs: dict[str, Any] | None = None) -> list[int]:
    """The sizes ``width`` gives the scaled layers of a family (unclamped)."""
    bases = SCALED_UNITS.get(name) or ((kwargs or {}).get("hidden", 128),)
    return [int(round(base * width)) for base in bases]


def _scaled(base: int, width: float) -> int:
    return max(1, int(round(base * width)))


def tutorial_cnn(width: float) -> keras.Model:
    """TensorFlow's tutorial CNN (about 3.27M weights); width scales the conv filters."""
    from keras import layers

    conv1, conv2 = SCALED_UNITS["tutorial_cnn"]
    return _sequential(
        "tutorial_cnn",
        [
            layers.Conv2D(_scaled(conv1, width), 5, padding="same", activation="relu"),
            layers.MaxPooling2D(2),
            layers.Conv2D(_scaled(conv2, width), 5, padding="same", activation="relu"),
            layers.MaxPooling2D(2),
            layers.Flatten(),
            layers.Dense(1024, activation="relu"),
            layers.Dropout(0.4),
            layers.Dense(NUM_CLASSES, activation="softmax"),
        ],
    )


def tiny_cnn(width: float) -> keras.Model:
    """Two conv and two dense layers, about 3,300 weights at width 1.

    Width scales the conv filters (4, 8) and the hidden dense units (14).
    """
    from keras import layers

    conv1, conv2, dense = SCALED_UNITS["tiny_cnn"]
    return _sequential(
        "tiny_cnn",
        [
            layers.Conv2D(_scaled(conv1, width), 3, activation="relu"),
            layers.MaxPooling2D(2),
            layers.Conv2D(_scaled(conv2, width), 3, activation="relu"),
            layers.MaxPooling2D(2),
            layers.Flatten(),
            layers.Dense(_scaled(dense, width), activation="relu"),
            layers.Dense(NUM_CLASSES, activation="softmax"),
        ],
    )


def keras_cnn(width: float) -> keras.Model:
    """The Keras-examples MNIST CNN; width scales the conv filters and dense units."""
    from keras import layers

    conv1, conv2, dense = SCALED_UNITS["keras_cnn"]
    return _sequential(
        "keras_cnn",
        [
            layers.Conv2D(_scaled(conv1, width), 3, activation="relu"),
            layers.MaxPooling2D(2),
            layers.Dropout(0.25),
            layers.Conv2D(_scaled(conv2, width), 3, activation="relu"),
            layers.MaxPooling2D(2),
            layers.Dropout(0.25),
            layers.Flatten(),
            layers.Dense(_scaled(dense, width), activation="relu"),
            layers.Dense(NUM_CLASSES, activation="softmax"),
        ],
    )


def mlp(
    width: float,
    hidden: int = 128,
    hidden_activation: str = "relu",
    output_activation: str = "softmax",
) -> keras.Model:
    """Flatten, Dense(hidden * width), Dense(10); width scales the hidden units."""
    from keras import layers

    return _sequential(
        "mlp",
        [
            layers.Flatten(),
            layers.Dense(_scaled(hidden, width), activation=hidden_activation),
            layers.Dense(NUM_CLASSES, activation=output_activation),
        ],
    )


def _sequential(name: str, body: list[Any]) -> keras.Model:
    import keras

    return keras.Sequential([keras.Input(INPUT_SHAPE), *body], name=name)


BUILDERS = {"tutorial_cnn": tutorial_cnn, "tiny_cnn": tiny_cnn, "keras_cnn": keras_cnn, "mlp": mlp}
# model name -> the keyword arguments a grid may give it (its builder's, but width)
MODELS: dict[str, tuple[str, ...]] = {
    name: tuple(p for p in inspect.signature(build).parameters if p != "width")
    for name, build in BUILDERS.items()
}
ACTIVATIONS = ("relu", "sigmoid", "tanh", "elu", "gelu", "selu", "softplus", "linear")
OUTPUT_ACTIVATIONS = ("softmax", "sigmoid", "linear")
LOSSES = ("crossentropy", "mse")


def build_model(name: str, width: float, kwargs: dict[str, Any] | None = None) -> keras.Model:
    """A fresh, built model of the named family."""
    return BUILDERS[name](width, **(kwargs or {}))


def output_activation(name: str, kwargs: dict[str, Any] | None = None) -> str:
    """The activation of a model's last layer (decides how cross-entropy reads it)."""
    if name == "mlp":
        return (kwargs or {}).get("output_activation", "softmax")
    return "softmax"


# Every optimizer a grid may name -> its Keras class. The first six are the
# reference experiment's, in its order; ``gd`` and ``momentum`` are SGD.
OPTIMIZER_CLASSES = {
    "gd": "SGD",
    "momentum": "SGD",
    "adam": "Adam",
    "adagrad": "Adagrad",
    "adadelta": "Adadelta",
    "rmsprop": "RMSprop",
    "sgd": "SGD",
    "adamw": "AdamW",
    "adamax": "Adamax",
    "nadam": "Nadam",
    "ftrl": "Ftrl",
    "lion": "Lion",
    "lamb": "Lamb",
    "adafactor": "Adafactor",
    "muon": "Muon",
}
OPTIMIZERS = tuple(OPTIMIZER_CLASSES)
REFERENCE_OPTIMIZERS = OPTIMIZERS[:6]


def optimizer_class(name: str) -> Any:
    """The Keras optimizer class behind a grid name (``gd`` and ``momentum`` are SGD)."""
    import keras

    return getattr(keras.optimizers, OPTIMIZER_CLASSES[name])


def optimizer_keywords(name: str) -> set[str]:
    """Keyword arguments the named optimizer accepts, besides ``learning_rate``."""
    from keras.optimizers import Optimizer

    cls = optimizer_class(name)
    names = set(inspect.signature(cls.__init__).parameters)
    names |= set(inspect.signature(Optimizer.__init__).parameters)
    return names - {"self", "args", "kwargs", "learning_rate"}


def check_optimizers(source: str, optimizers: Sequence[OptimizerSpec]) -> None:
    """Check each optimizer's keywords against Keras, then build it and take one
    update with it, so a typo or a bad value fails once, up front, not in every
    trial. ``source`` and ``optimizers`` are a grid's (``GridSpec``)."""
    import_keras_quietly()
    for i, opt in enumerate(optimizers):
        allowed = optimizer_keywords(opt.name)
        for key in opt.kwargs:
            if key not in allowed:
                raise GridError(
                    source,
                    f"optimizers[{i}].kwargs.{key}",
                    f"not a keyword of {opt.name}; allowed: {', '.join(sorted(allowed))}",
                )
        problem = _try_optimizer(opt.name, opt.kwargs)
        if problem:
            given = ", ".join(f"{k} = {v!r}" for k, v in opt.kwargs.items())
            raise GridError(
                source,
                f"optimizers[{i}].kwargs",
                f"{opt.name} refuses {given}: {problem}",
            )


def _try_optimizer(name: str, kwargs: dict[str, Any]) -> str | None:
    """Why Keras cannot build the optimizer and apply one update with it, or None."""
    import keras

    try:
        optimizer = build_optimizer(name, 1e-3, kwargs)
        weight = keras.Variable([[1.0, -1.0]])  # 2-D: some optimizers factor matrices
        optimizer.apply_gradients([(keras.ops.ones_like(weight), weight)])
    except Exception as exc:  # Keras raises ValueError, TypeError and TF's own errors
        # TensorFlow's op errors carry the op's internal name in {{...}} and [Op:...]
        text = re.sub(r"\{\{.*?\}\}|\[Op:.*", "", str(exc))
        return " ".join(text.split())[:200] or type(exc).__name__
    return None


def build_optimizer(name: str, lr: Any, kwargs: dict[str, Any] | None = None) -> Any:
    """A Keras optimizer. ``gd`` is plain SGD; ``momentum`` is SGD with momentum 0.9
    unless ``momentum`` is given. ``lr`` is a float or a Keras LR schedule."""
    defaults = {"gd": {"momentum": 0.0}, "momentum": {"momentum": 0.9}}.get(name, {})
    if isinstance(lr, int | float):
        lr = float(lr)
    return optimizer_class(name)(learning_rate=lr, **{**defaults, **(kwargs or {})})


def build_loss(name: str, activation: str) -> Any:
    """Cross-entropy or MSE on one-hot labels; cross-entropy reads logits for a linear output."""
    import keras

    if name == "mse":
        return keras.losses.MeanSquaredError()
    return keras.losses.CategoricalCrossentropy(from_logits=activation == "linear")
