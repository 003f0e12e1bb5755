"""The Ray that lrbench starts for itself requires Ray's token, whatever the
environment says: a client without the token, or with a wrong one, is refused
by its GCS; one with the token is served. ``RAY_AUTH_MODE=disabled``, which
would turn authentication off, is overridden with a one-line note."""

from __future__ import annotations

import os
import secrets
import select
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow

# Starts the embedded Ray as a sweep does, prints its GCS address, and holds it
# until its stdin closes.
SERVER = """
import sys
import ray
from harness.sweep.driver import init_ray
init_ray(None)
print(ray.get_runtime_context().gcs_address, flush=True)
sys.stdin.read()
ray.shutdown()
"""


def _call_gcs(address: str, token: str | None) -> str:
    """A raw gRPC call to the GCS (its cluster id), with ``token`` as Ray's
    clients send it or without one; returns the status code's name."""
    import grpc
    from ray.core.generated import gcs_service_pb2, gcs_service_pb2_grpc

    metadata = [("authorization", f"Bearer {token}")] if token else []
    with grpc.insecure_channel(address) as channel:
        stub = gcs_service_pb2_grpc.NodeInfoGcsServiceStub(channel)
        try:
            stub.GetClusterId(gcs_service_pb2.GetClusterIdRequest(), metadata=metadata, timeout=60)
        except grpc.RpcError as exc:
            return exc.code().name
    return "OK"


@pytest.mark.parametrize(
    ("mode", "given"),
    [(None, False), ("disabled", True)],
    ids=["default-generated-token", "disabled-in-env-token-given"],
)
def test_the_embedded_ray_refuses_a_client_without_its_token(
    tmp_path: Path, mode: str | None, given: bool
) -> None:
    home = tmp_path / "home"  # Ray keeps a generated token in ~/.ray/auth_token
    home.mkdir()
    env = {
        k: v
        for k, v in os.environ.items()
        if k not in ("RAY_AUTH_MODE", "RAY_AUTH_TOKEN", "RAY_AUTH_TOKEN_PATH", "RAY_ADDRESS")
    }
    env["HOME"] = str(home)
    if mode is not None:
        env["RAY_AUTH_MODE"] = mode
    token = secrets.token_hex(16) if given else None
    if token:
        env["RAY_AUTH_TOKEN"] = token
    server = subprocess.Popen(
        [sys.executable, "-c", SERVER],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )
    try:
        ready, _, _ = select.select([server.stdout], [], [], 600)
        address = server.stdout.readline().strip() if ready else ""
        assert address, server.poll()
        if token is None:  # Ray generated one for this cluster, where its clients look
            token = (home / ".ray" / "auth_token").read_text().strip()
        assert _call_gcs(address, None) == "UNAUTHENTICATED"
        assert _call_gcs(address, "not-" + token) == "UNAUTHENTICATED"
        assert _call_gcs(address, token) == "OK"
    finally:
        _, stderr = server.communicate("", timeout=300)
    assert server.returncode == 0, stderr
    notes = [line for line in stderr.splitlines() if "RAY_AUTH_MODE" in line]
    if mode == "disabled":
        assert notes == [
            "note: RAY_AUTH_MODE=disabled is ignored for lrbench's own Ray, which always "
            "requires Ray's token; it still applies to a cluster joined with --address"
        ]
    else:
        assert notes == []
