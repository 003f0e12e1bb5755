"""The model builder ``grids/digits.toml`` names: a small CNN for 8x8 images.

lrbench calls ``build`` with the arguments it accepts and compiles what it
returns with the trial's optimizer, loss and an accuracy metric.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import keras

FILTERS = (8, 16)  # the two conv layers' filters at width 1


def build(
    width: float = 1.0,
    input_shape: tuple[int, ...] = (8, 8, 1),
    num_classes: int = 10,
    hidden: int = 32,
) -> keras.Model:
    """Two 3x3 conv layers (8 and 16 filters, one 2x2 pooling between them), a
    dense layer of ``hidden`` units and a softmax; width scales every layer but
    the last (9,802 weights at width 1). Uncompiled."""
    import keras
    from keras import layers

    def units(base: int) -> int:
        return max(1, round(base * width))

    return keras.Sequential(
        [
            keras.Input(tuple(input_shape)),
            layers.Conv2D(units(FILTERS[0]), 3, padding="same", activation="relu"),
            layers.MaxPooling2D(2),
            layers.Conv2D(units(FILTERS[1]), 3, padding="same", activation="relu"),
            layers.Flatten(),
            layers.Dense(units(hidden), activation="relu"),
            layers.Dense(num_classes, activation="softmax"),
        ],
        name="digits_cnn",
    )
