"""The project's conventions: version, completion, pinned and floor versions, CI."""

from __future__ import annotations

import os
import subprocess
import sys
import tomllib
from pathlib import Path

import yaml
from packaging.requirements import Requirement
from packaging.version import Version
from typer.testing import CliRunner

from harness import __version__
from lrbench.cli import app

ROOT = Path(__file__).resolve().parent.parent
runner = CliRunner()


def _pins(name: str) -> dict[str, Version]:
    pins = {}
    for line in (ROOT / name).read_text().splitlines():
        line = line.split("#")[0].strip()
        if line:
            req = Requirement(line)
            (spec,) = req.specifier
            assert spec.operator == "==", line
            pins[req.name.lower()] = Version(spec.version)
    return pins


def _floors() -> dict[str, Version]:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    floors = {}
    for text in project["dependencies"]:
        req = Requirement(text)
        (spec,) = [s for s in req.specifier if s.operator == ">="]
        floors[req.name.lower()] = Version(spec.version)
    return floors


def test_version_and_completion():
    result = runner.invoke(app, ["--version"])
    assert result.exit_code == 0 and result.output.strip() == f"lrbench {__version__}"
    from importlib.metadata import version

    assert version("lrbench") == __version__  # pyproject reads it from harness
    # typer detects the shell from the parent processes (none is a shell under
    # pytest-xdist); its own switch for tests makes the option take the name
    done = subprocess.run(
        [sys.executable, "-m", "lrbench.cli", "--show-completion", "bash"],
        capture_output=True,
        text=True,
        cwd=ROOT,
        env={**os.environ, "_TYPER_COMPLETE_TEST_DISABLE_SHELL_DETECTION": "1"},
    )
    assert done.returncode == 0, done.stderr
    assert "_LRBENCH_COMPLETE" in done.stdout or "complete_bash" in done.stdout


def test_every_floor_is_pinned_for_the_floors_job_and_the_tested_pins_satisfy_it():
    floors, at_floor, tested = _floors(), _pins("constraints-floors.txt"), _pins("constraints.txt")
    assert at_floor == floors  # make test-floors installs exactly the floors
    for name, floor in floors.items():
        assert tested[name] >= floor, name


def test_the_makefile_installs_the_tested_versions_and_ci_runs_make_test():
    makefile = (ROOT / "Makefile").read_text()
    assert '-c constraints.txt -e ".[dev]"' in makefile
    assert "make test" in (ROOT / ".ci" / "run").read_text()
    workflow = yaml.safe_load((ROOT / ".github" / "workflows" / "test.yml").read_text())
    triggers = workflow.get("on", workflow.get(True))  # YAML 1.1 reads a bare `on` as True
    assert "push" in triggers and "pull_request" in triggers
    runs = {
        job: " ".join(step.get("run", "") for step in spec["steps"])
        for job, spec in workflow["jobs"].items()
    }
    assert runs["test"].strip() == "bash .ci/run"
    assert "make test-floors" in runs["floors"]
