"""Timings split by device, on hand-made trials from a heterogeneous cluster."""

from __future__ import annotations

from dataclasses import replace

import pandas as pd
from typer.testing import CliRunner

from analysis.report import devices as D
from harness.store.records import TrialStatus
from harness.store.results import Store
from lrbench.cli import app
from tests import helpers


def _trial(device: str, node: str, seed: int, time_s: float, lr: float = 0.01, **kw):
    made = helpers.outcome(time_s=time_s, steps=40, seed=seed, lr=lr, **kw)
    return replace(made, record=replace(made.record, device=device, node_id=node))


def _store(tmp_path):
    """adam at 0.01: seed 0 on a GPU node, seed 1 on a CPU node (a mixed cell);
    adam at 0.1 on the GPU node only; a budget trial on the CPU node."""
    store = Store(str(tmp_path / "mixed"), grid_json={"name": "mixed"})
    store.write_trial(_trial("NVIDIA H100", "n1", 0, 0.5))
    store.write_trial(_trial("cpu: Xeon", "n2", 1, 2.0))
    store.write_trial(_trial("NVIDIA H100", "n1", 0, 0.4, lr=0.1))
    store.write_trial(_trial("cpu: Xeon", "n3", 0, 0.0, lr=1e-6, status=TrialStatus.BUDGET))
    return store


def test_devices_are_split_and_mixed_cells_named(tmp_path):
    trials = _store(tmp_path).read_trials()
    assert D.is_heterogeneous(trials)
    assert not D.is_heterogeneous(trials[trials.device == "cpu: Xeon"])
    mixed = D.mixed_cells(trials)
    assert mixed[["lr", "devices"]].values.tolist() == [[0.01, "NVIDIA H100; cpu: Xeon"]]
    table = D.device_table(trials).set_index("device")
    assert table.loc["cpu: Xeon", "nodes"] == 2 and table.loc["NVIDIA H100", "nodes"] == 1
    assert table.loc["cpu: Xeon", "reached"] == 1 and table.loc["cpu: Xeon", "trials"] == 2
    # helpers give every trial 40 steps: seconds per step follow the time
    assert table.loc["NVIDIA H100", "step_time_ratio"] == 1.0
    assert table.loc["cpu: Xeon", "step_time_ratio"] > 1.0
    assert table["mixed_cells"].tolist() == [1, 1]


def test_the_report_flags_a_sweep_on_several_devices(tmp_path):
    _store(tmp_path)
    out = tmp_path / "report"
    result = CliRunner().invoke(app, ["report", str(tmp_path / "mixed"), "--out", str(out)])
    assert result.exit_code == 0, result.output
    assert "Devices: trials ran on several" in result.output
    page = (out / "index.html").read_text()
    assert "These trials ran on more than one device" in page and "1 cell (optimizer" in page
    assert len(pd.read_csv(out / "tables" / "mixed_cells.csv")) == 1
