"""An output path that cannot be a directory (a regular file, or a path below
one) is one line and exit 2 for every command that writes there, before any
slow work: Ray is not even imported."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

# Runs the CLI's entry point, then says on stderr whether Ray was imported.
ENTRY = """
import sys
from lrbench.cli import app
sys.argv = ["lrbench", *sys.argv[1:]]
try:
    app()
finally:
    print("ray imported" if "ray" in sys.modules else "no ray", file=sys.stderr)
"""


@pytest.mark.parametrize(
    ("command", "option"),
    [
        (["sweep", "{grid}", "--out", "{bad}"], "--out"),
        (["find-lr", "{grid}", "--out", "{bad}"], "--out"),
        (["nightly", "run", "{grid}", "--history", "{bad}"], "--history"),
        (["nightly", "run", "{grid}", "--summary", "{bad}/summary.md"], "--summary"),
        (["report", "{tmp}", "--out", "{bad}"], "--out"),
        (["export", "{tmp}", "--tensorboard", "{bad}"], "--tensorboard"),
    ],
    ids=["sweep", "find-lr", "nightly", "nightly-summary", "report", "export"],
)
def test_an_output_below_a_file_is_one_line_before_ray(
    tmp_path: Path, write_grid: Callable[..., Path], command: list[str], option: str
) -> None:
    grid = write_grid()
    afile = tmp_path / "afile"
    afile.write_text("a regular file, not a directory")
    bad = afile / "x"
    args = [a.format(grid=grid, bad=bad, tmp=tmp_path) for a in command]
    done = subprocess.run(
        [sys.executable, "-c", ENTRY, *args], capture_output=True, text=True, timeout=300
    )
    assert done.returncode == 2, done.stderr
    lines = [line for line in done.stderr.splitlines() if line.strip()]
    assert lines[-1] == "no ray", done.stderr
    errors = lines[:-1]
    assert len(errors) == 1 and errors[0].startswith(f"error: {option} "), done.stderr
    assert f"is below the file {afile}, not a directory" in errors[0]


def test_an_output_that_is_a_file_is_one_line(
    tmp_path: Path, write_grid: Callable[..., Path]
) -> None:
    afile = tmp_path / "afile"
    afile.write_text("a regular file, not a directory")
    done = subprocess.run(
        [sys.executable, "-c", ENTRY, "sweep", str(write_grid()), "--out", str(afile)],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 2, done.stderr
    assert done.stderr.splitlines() == [
        f"error: --out {afile}: is a file, not a directory",
        "no ray",
    ]
