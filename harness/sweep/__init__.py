"""A grid on Ray Tune: the driver that starts or joins Ray, skips stored trials and
fans the rest out (``driver``), and its live progress line (``progress``)."""
