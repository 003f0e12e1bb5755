"""Stop rules, in plain Python: a trial's stop rule fed by Keras' batch logs
(``tracker``), verdict-preserving pruning (``pruning``), and the frontier guard
that checks pruned verdicts next to the band in full (``frontier``). ``analysis``
replays them on stored curves, so nothing here imports TensorFlow or Ray."""
