"""Keras models, optimizers and losses, built from a trial spec.

A model comes from a builder: a function called as
``build(width=..., input_shape=..., num_classes=..., **kwargs)`` (only the
arguments it accepts) that returns an uncompiled ``keras.Model``. The
built-in models are builders registered under their names (``BUILDERS``); a
grid names a user's builder by reference (``module:function``, see
``harness.userref``), and both are built by ``build_model``. Every built-in
model takes a ``width`` multiplier; each family's docstring says what it
scales. Keras is imported on first use (``harness.lazy``), so that importing this
module (as loading a grid does) stays cheap.
"""

from __future__ import annotations

import inspect
import re
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from harness import userref
from harness.errors import GridError, last_line
from harness.grid.specs import OPTIMIZER_CLASSES, OPTIMIZER_DEFAULTS, ModelRef
from harness.lazy import lazy
from harness.trial.data import NUM_CLASSES
from harness.trial.quiet import import_keras_quietly

if TYPE_CHECKING:
    from collections.abc import Callable, Sequence

    import keras
    from keras import layers

    from harness.grid.specs import ModelSpec, OptimizerSpec
    from harness.trial.data import Dataset
else:
    keras = lazy("keras", before=import_keras_quietly)
    layers = lazy("keras.layers", before=import_keras_quietly)

Shape = tuple[int, ...]

INPUT_SHAPE = (28, 28, 1)  # the built-in models' default input: MNIST's


# The unit counts that ``width`` scales in each family, at width 1 (the MLP's is
# its ``hidden`` keyword). A width that rounds one of them below one unit is
# refused by the grid, since the layer would not be what the width says.
SCALED_UNITS = {
    "tutorial_cnn": (32, 64),
    "tiny_cnn": (4, 8, 14),
    "keras_cnn": (32, 64, 256),
    "small_resnet": (16, 32, 64),
}


def scaled_units(name: str, width: float, kwargs: dict[str, Any] | None = None) -> list[int]:
    """The sizes ``width`` gives the scaled layers of a built-in family (unclamped)."""
    bases = SCALED_UNITS.get(name) or ((kwargs or {}).get("hidden", 128),)
    return [int(round(base * width)) for base in bases]


def _scaled(base: int, width: float) -> int:
    return max(1, int(round(base * width)))


def tutorial_cnn(
    width: float, input_shape: Shape = INPUT_SHAPE, num_classes: int = NUM_CLASSES
) -> keras.Model:
    """TensorFlow's tutorial CNN (about 3.27M weights); width scales the conv filters."""
    conv1, conv2 = SCALED_UNITS["tutorial_cnn"]
    return _sequential(
        "tutorial_cnn",
        input_shape,
        [
            layers.Conv2D(_scaled(conv1, width), 5, padding="same", activation="relu"),
            layers.MaxPooling2D(2),
            layers.Conv2D(_scaled(conv2, width), 5, padding="same", activation="relu"),
            layers.MaxPooling2D(2),
            layers.Flatten(),
            layers.Dense(1024, activation="relu"),
            layers.Dropout(0.4),
            layers.Dense(num_classes, activation="softmax"),
        ],
    )


def tiny_cnn(
    width: float, input_shape: Shape = INPUT_SHAPE, num_classes: int = NUM_CLASSES
) -> keras.Model:
    """Two conv and two dense layers, about 3,300 weights at width 1.

    Width scales the conv filters (4, 8) and the hidden dense units (14).
    """
    conv1, conv2, dense = SCALED_UNITS["tiny_cnn"]
    return _sequential(
        "tiny_cnn",
        input_shape,
        [
            layers.Conv2D(_scaled(conv1, width), 3, activation="relu"),
            layers.MaxPooling2D(2),
            layers.Conv2D(_scaled(conv2, width), 3, activation="relu"),
            layers.MaxPooling2D(2),
            layers.Flatten(),
            layers.Dense(_scaled(dense, width), activation="relu"),
            layers.Dense(num_classes, activation="softmax"),
        ],
    )


def keras_cnn(
    width: float, input_shape: Shape = INPUT_SHAPE, num_classes: int = NUM_CLASSES
) -> keras.Model:
    """The Keras-examples MNIST CNN; width scales the conv filters and dense units."""
    conv1, conv2, dense = SCALED_UNITS["keras_cnn"]
    return _sequential(
        "keras_cnn",
        input_shape,
        [
            layers.Conv2D(_scaled(conv1, width), 3, activation="relu"),
            layers.MaxPooling2D(2),
            layers.Dropout(0.25),
            layers.Conv2D(_scaled(conv2, width), 3, activation="relu"),
            layers.MaxPooling2D(2),
            layers.Dropout(0.25),
            layers.Flatten(),
            layers.Dense(_scaled(dense, width), activation="relu"),
            layers.Dense(num_classes, activation="softmax"),
        ],
    )


def mlp(
    width: float,
    input_shape: Shape = INPUT_SHAPE,
    num_classes: int = NUM_CLASSES,
    hidden: int = 128,
    hidden_activation: str = "relu",
    output_activation: str = "softmax",
) -> keras.Model:
    """Flatten, Dense(hidden * width), Dense(num_classes); width scales the hidden units."""
    return _sequential(
        "mlp",
        input_shape,
        [
            layers.Flatten(),
            layers.Dense(_scaled(hidden, width), activation=hidden_activation),
            layers.Dense(num_classes, activation=output_activation),
        ],
    )


def _sequential(name: str, input_shape: Shape, body: list[Any]) -> keras.Model:
    return keras.Sequential([keras.Input(tuple(input_shape)), *body], name=name)


def small_resnet(
    width: float,
    input_shape: Shape = (32, 32, 3),
    num_classes: int = NUM_CLASSES,
    depth: int = 2,
) -> keras.Model:
    """A small ResNet for 32x32 images (He et al. 2016's CIFAR family): a 3x3
    stem, three stages of ``depth`` basic blocks (two 3x3 convolutions with
    BatchNorm, a projection shortcut where the stage halves the resolution),
    global average pooling and a softmax. Width scales every stage's filters
    (16, 32, 64); depth 2 is about 0.17M weights at width 1."""

    def block(x: Any, filters: int, stride: int) -> Any:
        y = layers.Conv2D(filters, 3, strides=stride, padding="same", use_bias=False)(x)
        y = layers.ReLU()(layers.BatchNormalization()(y))
        y = layers.Conv2D(filters, 3, padding="same", use_bias=False)(y)
        y = layers.BatchNormalization()(y)
        if stride != 1 or x.shape[-1] != filters:
            x = layers.Conv2D(filters, 1, strides=stride, use_bias=False)(x)
            x = layers.BatchNormalization()(x)
        return layers.ReLU()(layers.Add()([x, y]))

    inputs = keras.Input(tuple(input_shape))
    base = SCALED_UNITS["small_resnet"]
    x = layers.Conv2D(_scaled(base[0], width), 3, padding="same", use_bias=False)(inputs)
    x = layers.ReLU()(layers.BatchNormalization()(x))
    for stage, filters in enumerate(base):
        for i in range(depth):
            x = block(x, _scaled(filters, width), 2 if stage > 0 and i == 0 else 1)
    x = layers.GlobalAveragePooling2D()(x)
    outputs = layers.Dense(num_classes, activation="softmax")(x)
    return keras.Model(inputs, outputs, name="small_resnet")


BUILDERS = {
    "tutorial_cnn": tutorial_cnn,
    "tiny_cnn": tiny_cnn,
    "keras_cnn": keras_cnn,
    "mlp": mlp,
    "small_resnet": small_resnet,
}
# What lrbench passes a builder itself; a grid's kwargs give the rest.
BUILD_ARGS = ("width", "input_shape", "num_classes")
# model name -> the keyword arguments a grid may give it (its builder's, less BUILD_ARGS)
MODELS: dict[str, tuple[str, ...]] = {
    name: tuple(p for p in inspect.signature(build).parameters if p not in BUILD_ARGS)
    for name, build in BUILDERS.items()
}
ACTIVATIONS = ("relu", "sigmoid", "tanh", "elu", "gelu", "selu", "softplus", "linear")
OUTPUT_ACTIVATIONS = ("softmax", "sigmoid", "linear")
LOSSES = ("crossentropy", "mse")


def builder(ref: ModelRef, dirs: Sequence[str] = ()) -> Callable[..., Any]:
    """The function that builds ``ref``'s model: a built-in one by name, a
    user's by its reference (imported with ``dirs`` on the path)."""
    if not ref.builder:
        return BUILDERS[ref.name]

    return userref.resolve(ref.builder, dirs)


def accepted(build: Callable[..., Any]) -> set[str] | None:
    """The keyword arguments ``build`` accepts; None when it takes ``**kwargs``."""
    params = inspect.signature(build).parameters.values()
    if any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params):
        return None
    return {
        p.name
        for p in params
        if p.kind in (inspect.Parameter.POSITIONAL_OR_KEYWORD, inspect.Parameter.KEYWORD_ONLY)
    }


def build_model(
    ref: ModelRef,
    input_shape: Shape = INPUT_SHAPE,
    num_classes: int = NUM_CLASSES,
    dirs: Sequence[str] = (),
) -> keras.Model:
    """A fresh model from its builder, passed only the arguments it accepts."""
    build = builder(ref, dirs)
    given = {"width": ref.width, "input_shape": tuple(input_shape), "num_classes": num_classes}
    names = accepted(build)
    args = {k: v for k, v in given.items() if names is None or k in names}
    return build(**args, **ref.kwargs)


def output_activation(model: keras.Model) -> str:
    """The activation of a model's output: ``softmax``, ``sigmoid`` or ``linear``
    (logits), read off its last layer; decides how cross-entropy reads it."""
    layer = model.layers[-1] if model.layers else None
    name = type(layer).__name__.lower() if layer is not None else ""
    if name in ("softmax", "sigmoid"):
        return name
    activation = getattr(layer, "activation", None)
    if activation is None:
        return "linear"
    return getattr(activation, "__name__", str(activation)).lower()


def optimizer_class(name: str) -> Any:
    """The Keras optimizer class behind a grid name (``gd`` and ``momentum`` are SGD)."""
    return getattr(keras.optimizers, OPTIMIZER_CLASSES[name])


def optimizer_keywords(name: str) -> set[str]:
    """Keyword arguments the named optimizer accepts, besides ``learning_rate``."""
    cls = optimizer_class(name)
    names = set(inspect.signature(cls.__init__).parameters)
    names |= set(inspect.signature(keras.optimizers.Optimizer.__init__).parameters)
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
    """A Keras optimizer: its class and default keywords (``OPTIMIZER_DEFAULTS``:
    ``gd`` is plain SGD; ``momentum`` is SGD with momentum 0.9 unless ``momentum``
    is given) under the grid's keywords. ``lr`` is a float or a Keras LR schedule."""
    defaults = OPTIMIZER_DEFAULTS.get(name, {})
    if isinstance(lr, int | float):
        lr = float(lr)
    return optimizer_class(name)(learning_rate=lr, **{**defaults, **(kwargs or {})})


def build_loss(name: str, activation: str, sparse: bool = False) -> Any:
    """Cross-entropy or MSE; cross-entropy reads logits for a linear output, and
    takes integer labels in its sparse form (``sparse``). MSE compares with
    one-hot rows (the input pipeline expands integer labels for it)."""
    if name == "mse":
        return keras.losses.MeanSquaredError()
    if sparse:
        return keras.losses.SparseCategoricalCrossentropy(from_logits=activation == "linear")
    return keras.losses.CategoricalCrossentropy(from_logits=activation == "linear")


def accuracy_metric(sparse: bool) -> Any:
    """The accuracy metric (named ``acc``) for integer or one-hot labels."""
    if sparse:
        return keras.metrics.SparseCategoricalAccuracy(name="acc")
    return keras.metrics.CategoricalAccuracy(name="acc")


@dataclass(frozen=True)
class DataShape:
    """What a model is built for: one dataset's input shape, input dtype (as
    the model sees it) and class count. JSON-able, for the check's child."""

    dataset: str
    input_shape: tuple[int, ...]
    num_classes: int
    dtype: str = "float32"

    @classmethod
    def of(cls, data: Dataset) -> DataShape:
        """The shape of a loaded dataset."""
        dtype = "float32" if data.scaled else str(data.x_train.dtype)
        return cls(data.name, data.input_shape, data.num_classes, dtype)


@dataclass(frozen=True)
class ModelSize:
    """One model of a grid built at one width for one dataset's shape."""

    index: int  # its place in the grid's models
    name: str
    width: float
    dataset: str
    params: int


def check_models(
    source: str,
    models: Sequence[ModelSpec],
    shapes: Sequence[DataShape],
    dirs: Sequence[str] = (),
) -> list[ModelSize]:
    """Build each model of a grid at each width for each dataset shape, without
    training, and check what a trial relies on: the builder imports and takes
    the grid's keywords (and a width, if it has several), it returns a
    ``keras.Model``, the model takes the data's inputs and gives one output per
    class. The first problem is a GridError naming the grid file and the key;
    otherwise returns each model's parameter count."""
    import_keras_quietly()
    sizes = []
    unique = list(dict.fromkeys((s.input_shape, s.num_classes, s.dtype) for s in shapes))
    for i, spec in enumerate(models):
        key = f"models[{i}].builder" if spec.builder else f"models[{i}]"
        ref_text = spec.builder or spec.name
        try:
            build = builder(ModelRef(spec.name, spec.builder or "", 1.0), dirs)
        except userref.RefError as exc:
            raise GridError(source, key, str(exc)) from None
        names = accepted(build)
        if names is not None:
            for kw in spec.kwargs:
                if kw not in names or kw in BUILD_ARGS:
                    allowed = sorted(names - set(BUILD_ARGS))
                    raise GridError(
                        source,
                        f"models[{i}].kwargs.{kw}",
                        f"not a keyword of {ref_text}; allowed: {', '.join(allowed) or 'none'}",
                    )
            if "width" not in names and tuple(spec.widths) != (1.0,):
                raise GridError(
                    source,
                    f"models[{i}].widths",
                    f"{ref_text} takes no width argument, so only widths = [1] is allowed",
                )
        for shape, classes, dtype in unique:
            dataset = next(
                s.dataset
                for s in shapes
                if (s.input_shape, s.num_classes, s.dtype) == (shape, classes, dtype)
            )
            for width in spec.widths:
                ref = ModelRef(spec.name, spec.builder or "", width, spec.kwargs)
                model = _checked_build(source, key, ref, shape, classes, dirs)
                x = np.zeros((2, *shape), dtype=dtype)
                try:
                    y = model(x, training=False)
                except Exception as exc:  # the user's model may raise anything
                    raise GridError(
                        source,
                        key,
                        f"the model of {ref_text} does not take {dataset}'s inputs of shape "
                        f"{tuple(shape)}: {last_line(exc)}",
                    ) from None
                got = tuple(getattr(y, "shape", ()))
                if got != (2, classes):
                    raise GridError(
                        source,
                        key,
                        f"the model of {ref_text} gives outputs of shape {got[1:]} per example; "
                        f"{dataset} has {classes} classes, so the model must end in {classes} "
                        "units, one per class, as the loss and the accuracy read them",
                    )
                sizes.append(ModelSize(i, spec.name, width, dataset, int(model.count_params())))
                del model
                keras.backend.clear_session(free_memory=False)
    return sizes


def _checked_build(
    source: str,
    key: str,
    ref: ModelRef,
    shape: tuple[int, ...],
    classes: int,
    dirs: Sequence[str],
) -> keras.Model:
    what = ref.builder or ref.name
    try:
        model = build_model(ref, shape, classes, dirs)
    except Exception as exc:  # the user's builder may raise anything
        raise GridError(
            source, key, f"{what} raised at width {ref.width:g}: {last_line(exc)}"
        ) from None
    if not isinstance(model, keras.Model):
        raise GridError(
            source,
            key,
            f"{what} returned {type(model).__name__}; a builder returns an uncompiled keras.Model",
        )
    return model
