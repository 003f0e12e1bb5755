"""Where a result came from: library versions, host and device."""

from __future__ import annotations

import platform
import socket
from functools import cache
from importlib import metadata

_PACKAGES = ("lrbench", "tensorflow", "keras", "ray", "numpy", "pandas", "pyarrow")


@cache
def versions() -> dict[str, str]:
    """Installed versions of Python and the libraries a result depends on."""
    found = {"python": platform.python_version()}
    for name in _PACKAGES:
        try:
            found[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            continue
    return found


def host() -> str:
    """This machine's host name."""
    return socket.gethostname()


@cache
def cpu_name() -> str:
    """The CPU model, from /proc/cpuinfo where there is one."""
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def tf_device(use_gpu: bool) -> str:
    """The device TensorFlow trains on in this process: a GPU's name, or the CPU's."""
    if use_gpu:
        import tensorflow as tf

        gpus = tf.config.list_physical_devices("GPU")
        if gpus:
            details = tf.config.experimental.get_device_details(gpus[0])
            return str(details.get("device_name", gpus[0].name))
    return f"cpu: {cpu_name()}"
