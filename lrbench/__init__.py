"""The lrbench application, on top of ``harness`` (running and storing trials) and
``analysis`` (reading and drawing results): the command line (``cli``), the
composition of a grid file into a runnable grid (``compose``), a nightly run
(``night``) and the TensorBoard export (``tensorboard_export``)."""
