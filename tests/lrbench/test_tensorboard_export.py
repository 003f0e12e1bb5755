"""``lrbench export --tensorboard``: in-process, read back with TensorBoard's own
loader and compared with the Parquet files."""

from __future__ import annotations

import math
from dataclasses import replace
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
from typer.testing import CliRunner

from harness.store.records import TrialStatus
from harness.store.results import Store
from lrbench.cli import app
from lrbench.tensorboard_export import STATUS_CODES, run_names, safe_name
from tests import helpers

runner = CliRunner()
HPARAMS_PLUGIN = "hparams"


def hand_store(out: Path) -> Path:
    """Three hand-made trials: adam reaches (val_acc only at the last check),
    gd runs out of budget after pruning, gd at 10 diverges (its last loss Inf)."""
    store = Store(str(out), grid_json={"name": "test"})
    store.write_trial(helpers.outcome(TrialStatus.REACHED, lr=0.01))
    budget = helpers.outcome(TrialStatus.BUDGET, optimizer="gd", lr=1e-4)
    store.write_trial(replace(budget, record=replace(budget.record, pruned=True)))
    diverged = helpers.outcome(TrialStatus.DIVERGED, optimizer="gd", lr=10.0)
    curve = [*diverged.curve[:-1], replace(diverged.curve[-1], train_loss=math.inf)]
    store.write_trial(replace(diverged, curve=curve))
    return out


@pytest.fixture
def hand_dir(tmp_path: Path) -> Path:
    return hand_store(tmp_path / "hand")


def export(*args: str) -> Any:
    return runner.invoke(app, ["export", *args])


def error_line(result: Any) -> str:
    assert result.exit_code == 2, result.output
    lines = result.output.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), result.output
    return lines[0]


def read_logdir(logdir: Path) -> Any:
    """Every run under ``logdir``, as TensorBoard loads it (all points kept)."""
    from tensorboard.backend.event_processing import event_accumulator, event_multiplexer

    mux = event_multiplexer.EventMultiplexer(size_guidance={event_accumulator.TENSORS: 0})
    mux.AddRunsFromDirectory(str(logdir))
    mux.Reload()
    return mux


def scalars(mux: Any, run: str, tag: str) -> list[tuple[int, float]]:
    from tensorboard.util import tensor_util

    return [
        (e.step, tensor_util.make_ndarray(e.tensor_proto).item()) for e in mux.Tensors(run, tag)
    ]


def session_hparams(mux: Any, run: str) -> dict[str, Any]:
    """A run's hparams (plain values), parsed from the HParams plugin's data."""
    from google.protobuf import json_format
    from tensorboard.plugins.hparams import metadata

    content = mux.PluginRunToTagToContent(HPARAMS_PLUGIN)[run][metadata.SESSION_START_INFO_TAG]
    info = metadata.parse_session_start_info_plugin_data(content)
    assert info.group_name == run
    return {k: json_format.MessageToDict(v) for k, v in info.hparams.items()}


def expected_runs(*dirs: Path) -> dict[str, tuple[pd.Series, pd.DataFrame]]:
    """Run name -> (trial row, curve), straight from the Parquet files."""
    from analysis.load import source_labels

    out = {}
    for label, d in zip(source_labels([str(d) for d in dirs]), dirs, strict=True):
        trials = pd.read_parquet(d / "trials").assign(source=label)
        curves = pd.read_parquet(d / "curves")
        for name, (_, row) in zip(run_names(trials), trials.iterrows(), strict=True):
            out[name] = (row, curves[curves.trial_id == row.trial_id].sort_values("step"))
    return out


def check_export(mux: Any, expected: dict[str, tuple[pd.Series, pd.DataFrame]]) -> None:
    """One run per trial (and the config at the root); each curve, result and
    hparam as stored; nothing written twice, nothing non-finite written."""
    runs = set(mux.Runs())
    assert runs == {*expected, "."}
    config = mux.PluginRunToTagToContent(HPARAMS_PLUGIN)["."]
    assert list(config) == ["_hparams_/experiment"]
    for name, (row, curve) in expected.items():
        tags = set(mux.Runs()[name]["tensors"])
        for column in ("train_acc", "train_loss", "running_acc", "recent_acc", "val_acc", "lr"):
            finite = curve[curve[column].map(lambda v: v is not None and math.isfinite(v))]
            tag = f"curve/{column}"
            if finite.empty:
                assert tag not in tags, (name, tag)
                continue
            got = scalars(mux, name, tag)
            assert [s for s, _ in got] == list(finite.step), (name, tag)
            assert [v for _, v in got] == pytest.approx(list(finite[column]), rel=1e-6), (name, tag)
        status = row.status
        assert scalars(mux, name, "result/status_code") == [(row.steps, STATUS_CODES[status])]
        for column in ("time_to_target_s", "steps_to_target", "final_train_acc"):
            if pd.isna(row[column]):
                assert f"result/{column}" not in tags, (name, column)
            else:
                [(_, value)] = scalars(mux, name, f"result/{column}")
                assert value == pytest.approx(float(row[column]), rel=1e-6)
        hparams = session_hparams(mux, name)
        assert hparams["optimizer"] == row.optimizer
        assert hparams["lr"] == pytest.approx(row.lr)
        assert hparams["status"] == status
        assert hparams["seed"] == row.seed
        assert hparams["source"] == row.source
        assert "train_size" not in hparams  # null: every example used


def test_export_writes_one_run_per_trial(hand_dir, tmp_path):
    logdir = tmp_path / "tb"
    result = export(str(hand_dir), "--tensorboard", str(logdir))
    assert result.exit_code == 0, result.output
    assert result.output.strip().splitlines()[-1] == (
        f"tensorboard: 3 runs written to {logdir}; browse with: tensorboard --logdir {logdir}"
    )
    mux = read_logdir(logdir)
    expected = expected_runs(hand_dir)
    assert all(name.startswith("hand/") for name in expected)
    check_export(mux, expected)
    # the diverged trial's Inf loss is left out, its status is in both forms
    diverged = next(n for n, (row, _) in expected.items() if row.status == "diverged")
    assert [s for s, _ in scalars(mux, diverged, "curve/train_loss")] == [1, 20]
    assert session_hparams(mux, diverged)["status"] == "diverged"
    pruned = next(n for n, (row, _) in expected.items() if row.status == "budget")
    assert scalars(mux, pruned, "result/pruned") == [(40, 1.0)]


def test_experiment_config_declares_every_column(hand_dir, tmp_path):
    from tensorboard.plugins.hparams import metadata

    assert export(str(hand_dir), "--tensorboard", str(tmp_path / "tb")).exit_code == 0
    content = read_logdir(tmp_path / "tb").PluginRunToTagToContent(HPARAMS_PLUGIN)["."]
    experiment = metadata.parse_experiment_plugin_data(content[metadata.EXPERIMENT_TAG])
    infos = {h.name: h for h in experiment.hparam_infos}
    assert "train_size" not in infos and {"optimizer", "lr", "status", "source"} <= set(infos)
    assert [v.string_value for v in infos["optimizer"].domain_discrete.values] == ["adam", "gd"]
    assert [v.number_value for v in infos["lr"].domain_discrete.values] == [1e-4, 0.01, 10.0]
    assert {v.string_value for v in infos["status"].domain_discrete.values} == {
        s.value for s in TrialStatus
    }
    metrics = [m.name.tag for m in experiment.metric_infos]
    assert "result/time_to_target_s" in metrics and "result/status_code" in metrics


def test_export_again_replaces_runs(hand_dir, tmp_path):
    logdir = tmp_path / "tb"
    assert export(str(hand_dir), "--tensorboard", str(logdir)).exit_code == 0
    assert export(str(hand_dir), "--tensorboard", str(logdir)).exit_code == 0
    events = sorted(p.parent.relative_to(logdir) for p in logdir.rglob("events.out.tfevents.*"))
    assert [str(p) for p in events] == [".", *sorted(expected_runs(hand_dir))]
    check_export(read_logdir(logdir), expected_runs(hand_dir))  # no point written twice


def test_several_directories_with_the_same_trials(hand_dir, tmp_path):
    other = hand_store(tmp_path / "other" / "hand")
    logdir = tmp_path / "tb"
    result = export(str(hand_dir), str(other), "--tensorboard", str(logdir))
    assert result.exit_code == 0, result.output
    expected = expected_runs(hand_dir, other)
    folders = {name.split("/")[0] for name in expected}
    assert folders == {safe_name(f"{tmp_path.name}/hand"), "other_hand"}
    assert len(expected) == 6  # the same three trial ids in each
    check_export(read_logdir(logdir), expected)


def test_safe_names():
    assert safe_name("other/hand") == "other_hand"
    assert safe_name("hand (2)") == "hand_2"
    assert safe_name("..") == "results"
    trials = pd.DataFrame({"source": ["a b", "a_b", "a b"], "trial_id": ["1", "1", "2"]})
    assert run_names(trials) == ["a_b/1", "a_b-2/1", "a_b/2"]


def test_missing_results_directory(tmp_path):
    line = error_line(export(str(tmp_path / "nope"), "--tensorboard", str(tmp_path / "tb")))
    assert line == f"error: {tmp_path / 'nope'}: no such results directory"
    assert not (tmp_path / "tb").exists()


def test_unwritable_logdir(hand_dir, tmp_path):
    (tmp_path / "file").write_text("")
    line = error_line(export(str(hand_dir), "--tensorboard", str(tmp_path / "file" / "tb")))
    assert line == (
        f"error: --tensorboard {tmp_path / 'file' / 'tb'}: is below the file "
        f"{tmp_path / 'file'}, not a directory"
    )


def test_report_page_says_how_to_browse(tmp_path):
    results = tmp_path / "my results"
    Store(str(results), grid_json={"name": "test"}).write_trial(helpers.outcome())
    result = runner.invoke(app, ["report", str(results), "--out", str(tmp_path / "r")])
    assert result.exit_code == 0, result.output
    page = (tmp_path / "r" / "index.html").read_text()
    assert f"<code>lrbench export &#x27;{results}&#x27; --tensorboard LOGDIR</code>" in page
    assert "<code>tensorboard --logdir LOGDIR</code>" in page


@pytest.mark.slow
def test_export_of_a_real_sweep(real_sweep, tmp_path):
    logdir = tmp_path / "tb"
    result = export(str(real_sweep), "--tensorboard", str(logdir))
    assert result.exit_code == 0, result.output
    expected = expected_runs(real_sweep)
    assert len(expected) == 16
    check_export(read_logdir(logdir), expected)
