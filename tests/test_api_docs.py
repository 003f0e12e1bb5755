"""docs/api.md: every Python block runs, in order, as the page says."""

from __future__ import annotations

import re
import shutil
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


@pytest.mark.slow
def test_every_example_of_the_api_page_runs(tmp_path, monkeypatch):
    blocks = re.findall(r"```python\n(.*?)```", (ROOT / "docs" / "api.md").read_text(), re.S)
    assert len(blocks) >= 4
    shutil.copytree(ROOT / "grids", tmp_path / "grids")  # the page runs from a repository root
    monkeypatch.chdir(tmp_path)
    namespace: dict = {}
    for i, block in enumerate(blocks):
        exec(compile(block, f"docs/api.md block {i + 1}", "exec"), namespace)
    assert (tmp_path / "results" / "quick" / "report" / "index.html").exists()
    assert (tmp_path / "results" / "quick" / "valley.png").exists()
