"""TensorFlow kept quiet: the one place its console notices are turned down, for
the driver, for Ray's workers and for the child processes that import it.

The lazy Keras and TensorFlow of lrbench's modules (``harness.lazy``) import
through ``import_keras_quietly`` and ``import_tensorflow_quietly``."""

from __future__ import annotations

import importlib
import os
import sys

from harness.userref import quiet_stderr

# TensorFlow's C++ log level: warnings and errors only, no start-up notices
QUIET_ENV = {"TF_CPP_MIN_LOG_LEVEL": "2"}


def quiet_tensorflow() -> None:
    """Turn TensorFlow's notices down in this process and the ones it starts,
    unless the user's environment already says otherwise. Takes effect for a
    TensorFlow imported afterwards."""
    for name, value in QUIET_ENV.items():
        os.environ.setdefault(name, value)


def import_quietly(name: str) -> None:
    """Import TensorFlow, or a module that imports it (Keras), with the C++
    start-up notices sent to /dev/null; nothing when it is imported already.

    TensorFlow prints its oneDNN and CUDA-probing notices before its logging is
    set up, so ``TF_CPP_MIN_LOG_LEVEL`` cannot hide them from the sweep's console.
    """
    if name in sys.modules:
        return
    quiet_tensorflow()
    with quiet_stderr():
        importlib.import_module(name)


def import_keras_quietly() -> None:
    """Import Keras (and TensorFlow) quietly (``import_quietly``)."""
    import_quietly("keras")


def import_tensorflow_quietly() -> None:
    """Import TensorFlow quietly (``import_quietly``)."""
    import_quietly("tensorflow")
