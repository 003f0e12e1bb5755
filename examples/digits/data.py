"""The loader ``grids/digits.toml`` names: scikit-learn's bundled 8x8 digits.

1,797 grey images of the digits 0-9 (about 180 of each), shipped inside
scikit-learn, so nothing is downloaded. They are split once, stratified and
seeded, so every call returns the same two sets with the classes in the same
proportions.
"""

from __future__ import annotations

import numpy as np

VAL_FRACTION = 0.2  # 360 validation images, 1,437 training images
SEED = 0
MAX_PIXEL = 16.0  # the images' pixels are integers 0..16

Split = tuple[tuple[np.ndarray, np.ndarray], tuple[np.ndarray, np.ndarray]]


def load(val_fraction: float = VAL_FRACTION, seed: int = SEED) -> Split:
    """``(x_train, y_train), (x_val, y_val)``, as ``keras.datasets.*.load_data()``.

    Images are float32 of shape (n, 8, 8, 1) in [0, 1]; labels are int64 class
    ids. The pixels are scaled here, since lrbench scales only uint8 inputs and
    by 1/255, which would leave 0..16 pixels below 0.07."""
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    digits = load_digits()
    x = (digits.images / MAX_PIXEL).astype(np.float32)[..., np.newaxis]
    y = digits.target.astype(np.int64)
    x_train, x_val, y_train, y_val = train_test_split(
        x, y, test_size=val_fraction, stratify=y, random_state=seed
    )
    return (x_train, y_train), (x_val, y_val)
