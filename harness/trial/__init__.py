"""One trial, run in a Ray worker or inline: datasets (``data``), Keras models,
optimizers and losses (``models``), training under the stop rule (``train``), the
LR range test (``range_test``), a worker's compiled model reused across trials
(``reuse``), the grid's up-front code checks in a child process (``optcheck``),
where a result came from (``sysinfo``), and TensorFlow kept quiet (``quiet``)."""
