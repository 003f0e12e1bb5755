"""Where a result came from: library versions, host and device."""

from __future__ import annotations

import platform
import shutil
import socket
import subprocess
from functools import cache
from importlib import metadata
from typing import TYPE_CHECKING, Any

from harness.lazy import lazy
from harness.trial.quiet import import_tensorflow_quietly

if TYPE_CHECKING:
    import tensorflow as tf
else:
    tf = lazy("tensorflow", before=import_tensorflow_quietly)

_PACKAGES = ("lrbench", "tensorflow", "keras", "ray", "numpy", "pandas", "pyarrow")
# Also recorded per nightly run: what else can change a night's data or numbers.
_NIGHTLY_PACKAGES = ("mlxtend", "tensorflow-cpu", "nvidia-cudnn-cu12", "nvidia-cublas-cu12")


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
        gpus = tf.config.list_physical_devices("GPU")
        if gpus:
            details = tf.config.experimental.get_device_details(gpus[0])
            return str(details.get("device_name", gpus[0].name))
    return f"cpu: {cpu_name()}"


def _run(command: list[str], cwd: str | None = None) -> str | None:
    """A command's stripped output, or None when it is missing, fails or hangs."""
    if shutil.which(command[0]) is None:
        return None
    try:
        done = subprocess.run(
            command, cwd=cwd, capture_output=True, text=True, timeout=10, check=False
        )
    except (OSError, subprocess.SubprocessError):
        return None
    return done.stdout.strip() if done.returncode == 0 else None


def git_revision(path: str = ".") -> str:
    """The git commit checked out at ``path``, ``+dirty`` when it has local
    changes; ``""`` outside a git work tree."""
    commit = _run(["git", "rev-parse", "HEAD"], cwd=path)
    if not commit:
        return ""
    changes = _run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=path)
    return f"{commit}+dirty" if changes else commit


def gpus() -> list[dict[str, str]]:
    """Name and driver version of each NVIDIA GPU ``nvidia-smi`` lists (none: [])."""
    out = _run(["nvidia-smi", "--query-gpu=name,driver_version", "--format=csv,noheader"])
    rows = [line.split(", ") for line in (out or "").splitlines() if line.strip()]
    return [{"name": r[0], "driver": r[1] if len(r) > 1 else ""} for r in rows]


def tf_build() -> dict[str, str]:
    """TensorFlow's build: CUDA and cuDNN versions it was built against, if any."""
    info = tf.sysconfig.get_build_info()
    keys = ("is_cuda_build", "cuda_version", "cudnn_version")
    return {k: str(info[k]) for k in keys if k in info}


def environment() -> dict[str, Any]:
    """Everything about this machine a night's numbers depend on: host, CPU,
    GPUs and driver, library versions, TensorFlow's CUDA build."""
    found = dict(versions())
    for name in _NIGHTLY_PACKAGES:
        try:
            found[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            continue
    return {
        "host": host(),
        "cpu": cpu_name(),
        "os": platform.platform(),
        "gpus": gpus(),
        "versions": found,
        "tf_build": tf_build(),
    }
