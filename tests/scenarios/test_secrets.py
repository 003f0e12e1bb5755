"""Credentials in a URI never reach storage: not the manifest, the Parquet
metadata, ``lr_source``, a nightly history or a report.

The real tests run sweeps against moto's S3 server with authentication on:
the only key it accepts is one it made, given in the URIs alone (the
environment holds a wrong one), so a sweep that reads ``lr.best`` from there
really used the secret. Then every byte of the bucket and the report is
searched for it, and every Parquet file is decoded and searched too (its
pages are compressed)."""

from __future__ import annotations

import json
import re
import textwrap
import tomllib
from dataclasses import asdict
from pathlib import Path
from typing import Any
from urllib.parse import quote

import numpy as np
import pytest
from typer.testing import CliRunner

from harness.errors import GridError
from harness.grid.growth import compare
from harness.grid.parse import load_grid, parse_grid
from harness.grid.specs import FinderParams, FinderSpec
from harness.store.history import History
from harness.store.location import Location, redact
from harness.store.records import FinderOutcome, FinderPoint, TrialStatus
from harness.store.results import Store
from lrbench.cli import app
from tests import helpers
from tests.conftest import environment

runner = CliRunner()

KEY, SECRET = "AKIAEXAMPLEKEY000001", "s3cr3t/Example+Key-0123456789abcdefABCD"
ROTATED = "r0tated/Example+Key-9876543210fedcbaWXYZ"


def uri(key: str, secret: str, path: str, endpoint: str = "http://127.0.0.1:9000") -> str:
    """An S3 URI with its credentials as pyarrow takes them (``KEY:SECRET@``)."""
    return (
        f"s3://{key}:{quote(secret, safe='')}@lrbench/{path}"
        f"?endpoint_override={endpoint}&scheme=http&region=us-east-1"
    )


def grid_text(lr: str, extra: str = "") -> str:
    """One optimizer on 1,000 MNIST images; epochs, not the clock, end a trial."""
    return textwrap.dedent(
        f"""
        name = "secrets"
        datasets = [{{ name = "mnist5k", train_size = 1000 }}]
        models = ["tiny_cnn"]
        optimizers = ["adam"]
        lr = {lr}
        {extra}
        [stop]
        target = 0.8
        budget_s = 3600
        max_epochs = 10
        """
    )


# ------------------------------------------------------------- the grid ---


@pytest.mark.parametrize(
    ("field", "lr"),
    [("best_lr", '{{ best = "{uri}" }}'), ("finder_lr", '{{ finder = "{uri}", rule = "min/10" }}')],
)
def test_a_grid_reads_its_uri_as_given_and_stores_it_without_credentials(field, lr):
    given = uri(KEY, SECRET, "earlier")
    grid = helpers.declared(parse_grid(tomllib.loads(grid_text(lr.format(uri=given))), "g.toml"))
    spec = grid.spec.lr
    assert spec.location == given  # what is read: the key is needed there
    assert spec.results == "s3://***@lrbench/earlier" + given.partition("@lrbench/earlier")[2]
    stored = json.dumps(grid.to_json(), default=str)
    assert SECRET not in stored and quote(SECRET, safe="") not in stored and KEY not in stored
    assert SECRET not in repr(grid) and KEY not in repr(grid)
    assert json.loads(stored)[field]["results"] == spec.results

    again = grid_text(lr.format(uri=uri(KEY, ROTATED, "earlier")))
    rotated = helpers.declared(parse_grid(tomllib.loads(again), "g.toml"))
    assert rotated.digest == grid.digest and rotated == grid  # a new key is the same grid
    assert compare(grid.to_json(), rotated).same


def test_a_manifest_stored_with_its_key_in_clear_takes_the_same_grid_again():
    """Manifests written before grids were stored without credentials: compared
    as stored now, the same grid is a plain resume, not a change refused."""
    given = uri(KEY, SECRET, "earlier")
    grid = helpers.declared(
        parse_grid(tomllib.loads(grid_text(f'{{ best = "{given}" }}')), "g.toml")
    )
    legacy = grid.to_json()
    legacy["best_lr"]["results"] = given
    change = compare(legacy, grid)
    assert change.same and change.problem is None


@pytest.mark.parametrize(
    "extra",
    [
        'data_dir = "{uri}"',
        'datasets = [{{ name = "mine", path = "{uri}" }}]',
    ],
)
def test_data_is_read_from_local_disk_so_a_uri_there_is_refused(extra, tmp_path):
    """``data_dir`` and a dataset's ``path`` are local paths (``harness.trial.data``
    reads them with ``pathlib``): a URI would be stored, mangled, with its key."""
    text = grid_text("[0.01]", extra.format(uri=uri(KEY, SECRET, "data/mine.npz")))
    if "datasets" in extra:  # the grid's own datasets line gives way
        text = text.replace('datasets = [{ name = "mnist5k", train_size = 1000 }]\n', "")
    path = tmp_path / "grid.toml"
    path.write_text(text)
    with pytest.raises(GridError, match="must be a local") as refused:
        load_grid(path)
    assert SECRET not in str(refused.value) and KEY not in str(refused.value)
    out = tmp_path / "out"
    result = runner.invoke(app, ["sweep", str(path), "--out", str(out)])
    assert result.exit_code == 2 and "must be a local" in result.output, result.output
    assert SECRET not in result.output and not out.exists()


def test_report_labels_of_uris_that_differ_by_bucket_hold_no_credential():
    """Labels name report folders and fill the ``source`` column of report
    tables; two URIs that end alike take a component more, never the key."""
    from analysis.load import source_labels

    labels = source_labels([uri(KEY, SECRET, "a/sweep"), uri(KEY, SECRET, "b/sweep")])
    assert labels == ["a/sweep", "b/sweep"]
    one = uri(KEY, SECRET, "sweep").replace("@lrbench/", "@one/")
    labels = source_labels([one, uri(KEY, SECRET, "sweep")])
    assert len(set(labels)) == 2 and not [x for x in labels if KEY in x or "s3cr3t" in x]


@pytest.mark.parametrize(
    ("text", "secret"),
    [
        ("s3://KEY:SECRET@bucket/x", "SECRET"),
        ("s3://b/x?endpoint_override=http://u:SECRET@h:9000&region=eu", "SECRET"),
        ("s3://b/x?access_key=KEY&secret_key=SECRET&scheme=http", "SECRET"),
        ("s3://b/x?session_token=SECRET", "SECRET"),
        ("gs://b/x?access_token=SECRET&scheme=http", "SECRET"),
        ("abfs://c@acct.dfs.core.windows.net/x?account_key=SECRET", "SECRET"),
    ],
)
def test_redact_hides_every_kind_of_credential_a_uri_may_carry(text, secret):
    """What the stored forms rely on (``harness.store.location.redact``)."""
    assert secret not in redact(text) and redact(text).count("***") >= 1


# ---------------------------------------------------------------- for real ---


@pytest.fixture(scope="module")
def s3():
    """A local S3 server that accepts one IAM user's keys only, and a bucket
    ``lrbench``. Yields (endpoint, make a key): the environment holds a wrong
    key, so only credentials given in a URI open the bucket."""
    import boto3
    from moto import settings
    from moto.server import ThreadedMotoServer

    wrong = {
        "AWS_ACCESS_KEY_ID": "not-the-key",
        "AWS_SECRET_ACCESS_KEY": "not-the-secret",
        "AWS_DEFAULT_REGION": "us-east-1",
        "AWS_EC2_METADATA_DISABLED": "true",
    }
    with environment(wrong):
        server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
        server.start()
        host, port = server.get_host_and_port()
        endpoint = f"http://{host}:{port}"
        iam = boto3.client("iam", endpoint_url=endpoint)
        iam.create_user(UserName="lrbench")
        everything = {"Effect": "Allow", "Action": "*", "Resource": "*"}
        allow = {"Version": "2012-10-17", "Statement": [everything]}
        iam.put_user_policy(UserName="lrbench", PolicyName="all", PolicyDocument=json.dumps(allow))
        boto3.client("s3", endpoint_url=endpoint).create_bucket(Bucket="lrbench")

        def new_key() -> tuple[str, str]:
            key = iam.create_access_key(UserName="lrbench")["AccessKey"]
            return key["AccessKeyId"], key["SecretAccessKey"]

        keys = [new_key(), new_key()]  # made before authentication is on
        before = settings.INITIAL_NO_AUTH_ACTION_COUNT
        settings.INITIAL_NO_AUTH_ACTION_COUNT = 0  # every request from now on is checked
        try:
            yield endpoint, keys
        finally:
            settings.INITIAL_NO_AUTH_ACTION_COUNT = before
            server.stop()


def needles(keys: list[tuple[str, str]]) -> list[bytes]:
    """Each key id and secret, raw and as a URI spells it."""
    found = []
    for key, secret in keys:
        found += [key.encode(), secret.encode(), quote(secret, safe="").encode()]
    return found


def decoded(data: bytes) -> bytes:
    """A Parquet file's rows and schema metadata as text (its pages are compressed)."""
    import io

    import pyarrow.parquet as pq

    table = pq.read_table(io.BytesIO(data))
    meta = table.schema.metadata or {}
    return (json.dumps(table.to_pylist(), default=str) + repr(meta)).encode()


def leaks(files: dict[str, bytes], keys: list[tuple[str, str]]) -> list[str]:
    """Each place where a file's bytes, or its decoded rows, hold a key or a
    secret: its name and the text around it (the key itself shown as <KEY>)."""
    bad = []
    for name, data in files.items():
        texts = [data] + ([decoded(data)] if name.endswith(".parquet") else [])
        for text in texts:
            for needle in needles(keys):
                at = text.find(needle)
                if at >= 0:
                    around = text[max(0, at - 80) : at + len(needle) + 40]
                    bad.append(f"{name}: {around.replace(needle, b'<KEY>')!r}")
    return bad


def bucket_files(endpoint: str, key: tuple[str, str]) -> dict[str, bytes]:
    """Every object in the bucket, read with ``key``."""
    from pyarrow import fs

    where = Location(uri(*key, "", endpoint))
    infos = where.fs.get_file_info(fs.FileSelector("lrbench", recursive=True))
    files = {}
    for info in infos:
        if info.type == fs.FileType.File:
            with where.fs.open_input_stream(info.path) as f:
                files[info.path] = f.read()
    return files


def local_files(root: Path) -> dict[str, bytes]:
    return {str(p): p.read_bytes() for p in root.rglob("*") if p.is_file()}


def opens(location: str) -> bool:
    """Whether the server lets ``location`` list its bucket."""
    from pyarrow import fs

    where = Location(location)
    try:
        where.fs.get_file_info(fs.FileSelector("lrbench", recursive=False))
    except OSError:
        return False
    return True


@pytest.fixture
def text_figures(monkeypatch):
    """SVG figures keep their text as text, so a title can be searched."""
    import matplotlib

    monkeypatch.setitem(matplotlib.rcParams, "svg.fonttype", "none")


@pytest.mark.slow
def test_a_sweep_from_lr_best_on_s3_stores_and_reports_no_credential(s3, tmp_path, text_figures):
    endpoint, keys = s3
    (key, secret), (new_key, rotated) = keys
    assert not opens(uri(key, "wrong-secret", "", endpoint))  # the server checks the secret
    assert not opens(f"s3://lrbench/?endpoint_override={endpoint}&scheme=http")  # env's key
    # the earlier sweep, written by hand to S3; the grid names it with the key
    source = uri(key, secret, "earlier", endpoint)
    earlier = Store(source, grid_json={"name": "earlier"})
    earlier.write_trial(helpers.outcome(TrialStatus.REACHED, time_s=1.0, lr=0.01))
    earlier.write_trial(helpers.outcome(TrialStatus.REACHED, time_s=1.2, lr=0.03))
    earlier.write_trial(helpers.outcome(TrialStatus.DIVERGED, lr=100.0))

    def grid(key: str, secret: str) -> Path:
        path = tmp_path / f"grid-{len(list(tmp_path.glob('grid-*')))}.toml"
        best = uri(key, secret, "earlier", endpoint)
        path.write_text(grid_text(f'{{ best = "{best}", top_k = 2 }}'))
        return path

    out = uri(key, secret, "sweep", endpoint)
    first = runner.invoke(app, ["sweep", str(grid(key, secret)), "--out", out])
    assert first.exit_code == 0, first.output
    assert "2 trials (0 already stored, 2 run now)" in first.output
    trials = Store(out).read_trials().sort_values("lr")
    assert list(trials["lr"]) == [0.01, 0.03]  # chosen from the rows only S3 holds
    shown = "s3://***@lrbench/earlier?endpoint_override="
    assert [s.startswith(shown) for s in trials["lr_source"]] == [True, True]
    assert [s.split(" (")[0][-8:] for s in trials["lr_source"]] == ["best 1/2", "best 2/2"]

    # the key rotated: the same grid, a plain resume (nothing runs again)
    moved = uri(new_key, rotated, "sweep", endpoint)
    again = runner.invoke(app, ["sweep", str(grid(new_key, rotated)), "--out", moved])
    assert again.exit_code == 0, again.output
    assert "2 trials (2 already stored, 0 run now)" in again.output
    manifest = Store(out).read_manifest()
    assert len(manifest.grid_versions) == 1  # not another version either

    report = tmp_path / "report"
    reported = runner.invoke(app, ["report", out, "--out", str(report)])
    assert reported.exit_code == 0, reported.output
    assert (report / "index.html").exists() and list(report.rglob("*.svg"))

    files = {**bucket_files(endpoint, keys[0]), **local_files(report)}
    assert any(name.endswith("manifest.json") for name in files)
    assert sum(name.endswith(".parquet") for name in files) >= 4  # rows and curves, source too
    assert leaks(files, keys) == []
    shown = first.output + again.output + reported.output
    assert not [n for n in needles(keys) if n.decode() in shown]


@pytest.mark.slow
def test_a_night_from_lr_finder_on_s3_stores_and_reports_no_credential(s3, tmp_path, text_figures):
    endpoint, keys = s3
    key, secret = keys[0]
    tests = uri(key, secret, "range-tests", endpoint)
    path = tmp_path / "nightly.toml"  # the user's own file holds the key; nothing else may
    path.write_text(grid_text(f'{{ finder = "{tests}", rule = "min/10", num = 1 }}'))
    # the range test, written by hand to S3: min/10 suggests 0.01
    grid = load_grid(path)
    (setup,) = grid.setups(grid.optimizers, grid.seeds[0])
    lrs = 10 ** np.linspace(-7, 1, 161)
    x = np.log10(lrs)
    loss = np.where(x <= -1 + 1e-9, 2.3 - 0.1 * (x + 7), 1.7 + (x + 1) ** 2)
    spec = FinderSpec(**asdict(setup), params=FinderParams(1e-7, 10.0, len(lrs)))
    points = [FinderPoint(i + 1, lrs[i], loss[i], loss[i]) for i in range(len(lrs))]
    started = "2026-11-22T10:00:00+00:00"
    Store(tests).write_finder(FinderOutcome(spec, points, "end", 3300, started, 1.0))

    history = uri(key, secret, "history", endpoint)
    summary = tmp_path / "ci" / "summary.md"
    summary.parent.mkdir()
    args = ["nightly", "run", str(path), "--history", history, "--revision", "r1"]
    night = runner.invoke(app, [*args, "--summary", str(summary)])
    assert night.exit_code == 0, night.output
    rows = History(history).read()
    assert len(rows) == 1 and rows["lr"].iloc[0] == pytest.approx(0.01, rel=1e-3)
    assert re.fullmatch(
        r"s3://\*\*\*@lrbench/range-tests\?endpoint_override=\S+ finder min/10 "
        r"\(suggested 0\.01\)",
        rows["lr_source"].iloc[0],
    )
    env: dict[str, Any] = json.loads(rows["env"].iloc[0])
    assert env["grid_source"] == str(path)

    files = {**bucket_files(endpoint, keys[0]), **local_files(summary.parent)}
    names = list(files)
    assert any("/nights/date=" in n for n in names)
    assert any(n.endswith("nightly.json") for n in names)
    assert any("/report/" in n and n.endswith(".svg") for n in names)
    assert leaks(files, keys) == []
    assert not [n for n in needles(keys) if n.decode() in night.output]
