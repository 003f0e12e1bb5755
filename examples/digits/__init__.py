"""scikit-learn's bundled 8x8 digits, a small CNN for them, and ``grids/digits.toml``."""
