"""The sweep's optimizer check in a child process gives what the check in
process gives, and leaves TensorFlow out of the driver."""

from __future__ import annotations

import subprocess
import sys

import pytest

from harness.errors import GridError
from harness.grid.parse import parse_grid
from harness.trial.models import check_optimizers
from harness.trial.optcheck import BackgroundCheck

pytestmark = pytest.mark.slow  # each check imports TensorFlow in a child

GOOD = {"models": ["tiny_cnn"], "optimizers": ["gd", "adam"], "lr": [0.1]}
BAD = {
    "models": ["tiny_cnn"],
    "optimizers": ["adam", {"name": "momentum", "kwargs": {"momentum": "high"}}],
    "lr": [0.1],
}


def _message(grid) -> str:
    with pytest.raises(GridError) as raised:
        check_optimizers(grid.source, grid.optimizers)
    return str(raised.value)


def test_the_child_gives_the_same_verdict_as_the_check_in_process():
    BackgroundCheck.start(parse_grid(GOOD, "good.toml")).wait()
    bad = parse_grid(BAD, "bad.toml")
    check = BackgroundCheck.start(bad)
    with pytest.raises(GridError) as raised:
        check.wait()
    assert str(raised.value) == _message(bad)
    assert raised.value.field == "optimizers[1].kwargs"
    assert str(raised.value).startswith("bad.toml: optimizers[1].kwargs: momentum refuses")


def test_a_check_no_longer_needed_is_stopped():
    check = BackgroundCheck.start(parse_grid(GOOD, "good.toml"))
    proc = check.proc
    check.close()
    assert proc is not None and proc.poll() is not None and check.proc is None


def test_the_driver_never_imports_tensorflow():
    code = (
        "import sys\n"
        "from harness.grid.parse import parse_grid\n"
        "from harness.trial.optcheck import BackgroundCheck\n"
        f"BackgroundCheck.start(parse_grid({GOOD!r}, 'g.toml')).wait()\n"
        "assert 'tensorflow' not in sys.modules and 'keras' not in sys.modules\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert done.stderr == ""  # TensorFlow's start-up notices stay in the child


def test_a_child_that_dies_gives_way_to_the_check_in_process():
    bad = parse_grid(BAD, "bad.toml")
    check = BackgroundCheck.start(bad)
    assert check.proc is not None
    check.proc.kill()
    with pytest.raises(GridError) as raised:
        check.wait()
    assert str(raised.value) == _message(bad)
