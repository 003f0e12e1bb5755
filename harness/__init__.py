"""lrbench's library for running trials and storing them: ``grid`` (what a grid
file declares), ``trial`` (one Keras trial), ``rules`` (when a trial stops),
``sweep`` (a grid on Ray Tune) and ``store`` (results on disk or a URI). It never
imports ``analysis`` or the ``lrbench`` application."""

from __future__ import annotations

__version__ = "0.1.0"
