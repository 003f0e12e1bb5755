"""Model builders of the kind a user gives by reference (``tests.problems:...``):
layers with state besides their weights, and a training step of their own."""

from __future__ import annotations

from typing import Any


def bn_dropout_net(width: float, input_shape: tuple[int, ...], num_classes: int) -> Any:
    """A small functional CNN with BatchNorm (moving statistics) and Dropout
    (its own seed state), for any image shape and class count."""
    import keras
    from keras import layers

    inputs = keras.Input(input_shape)
    x = layers.Conv2D(max(1, round(6 * width)), 3, use_bias=False)(inputs)
    x = layers.BatchNormalization()(x)
    x = layers.ReLU()(x)
    x = layers.MaxPooling2D(2)(x)
    x = layers.Flatten()(x)
    x = layers.Dropout(0.3)(x)
    x = layers.Dense(max(1, round(16 * width)), activation="relu")(x)
    x = layers.BatchNormalization()(x)
    outputs = layers.Dense(num_classes, activation="softmax")(x)
    return keras.Model(inputs, outputs, name="bn_dropout_net")


def own_step_net(input_shape: tuple[int, ...], num_classes: int) -> Any:
    """A model whose class overrides ``train_step``: lrbench never reuses it."""
    import keras
    from keras import layers

    class OwnStep(keras.Model):
        def train_step(self, data: Any) -> Any:
            return super().train_step(data)

    inputs = keras.Input(input_shape)
    outputs = layers.Dense(num_classes, activation="softmax")(layers.Flatten()(inputs))
    return OwnStep(inputs, outputs)
