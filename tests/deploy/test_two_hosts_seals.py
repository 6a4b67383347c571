"""Two hosts sharing a PostgreSQL store, each with its own data folder and no ``GUARD_SEAL_STORE``: the signed
seal made on one host is the seal the other verifies against (the seals live in the store)."""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest
from mlflow import MlflowClient

from tests.core.signing_support import make_key
from tests.deploy.stack import guard_env
from tests.listener.worker.helpers import local_model_path, register_model
from tests.support.postgres import PostgresServer, find_postgres_bin
from tests.support.procs import MlflowServer

pytestmark = [pytest.mark.e2e,
              pytest.mark.skipif(find_postgres_bin() is None, reason="PostgreSQL is not installed")]
VENV_BIN = Path(sys.executable).parent
NESTED = Path("data") / "deep" / "nested" / "layer.bin"


@pytest.fixture
def postgres() -> Iterator[PostgresServer]:
    server = PostgresServer()
    try:
        server.start()
        yield server
    finally:
        server.remove()


def _guard_job(host: Path, store_url: str, tracking_uri: str, key: Path, name: str,
               version: str) -> subprocess.CompletedProcess:
    """``guard-job`` on one host for a "version created" event (seal if none, then check): its own data
    folder, the shared store, the guard's key; no seal store."""
    env = guard_env(GUARD_DATA_DIR=str(host), GUARD_STORE=store_url, MLFLOW_TRACKING_URI=tracking_uri,
                    GUARD_SIGNING_KEY=str(key))
    event = json.dumps({"event": "created", "model_name": name, "version": version})
    return subprocess.run([str(VENV_BIN / "guard-job"), f"--event_message={event}"], env=env,
                          capture_output=True, text=True, timeout=600,
                          cwd=tempfile.mkdtemp(prefix="guard-host-"))


def test_a_version_sealed_on_one_host_is_verified_on_the_other(tmp_path: Path, mlflow_server: MlflowServer,
                                                              postgres: PostgresServer):
    client = MlflowClient(tracking_uri=mlflow_server.url)
    key = make_key(tmp_path / "keys")
    host_a, host_b = tmp_path / "host-a", tmp_path / "host-b"

    def on(host: Path, name: str, version: str) -> subprocess.CompletedProcess:
        return _guard_job(host, postgres.url, mlflow_server.url, key.key.path, name, version)

    name, version = register_model(client, tmp_path, name="two-hosts-sealed")
    sealed = on(host_a, name, version)
    assert sealed.returncode == 0 and sealed.stdout.startswith("PASSED"), sealed.stdout + sealed.stderr
    tags = client.get_model_version(name, version).tags
    assert tags["validation.seal_bundle"] == f"guard-store:{name}/{version}/model.sig"

    untouched = on(host_b, name, version)
    assert untouched.returncode == 0, untouched.stdout + untouched.stderr
    assert untouched.stdout.startswith(f"PASSED {name} version {version}")
    assert "signed seal verified" in untouched.stdout

    (local_model_path(client, name, version) / NESTED).write_bytes(b"tampered on the artifact store")
    tampered = on(host_b, name, version)
    assert tampered.returncode == 1, tampered.stdout + tampered.stderr
    assert tampered.stdout.startswith("FAILED")
    assert str(NESTED) in tampered.stdout.splitlines()[0]

    for tag in [k for k in client.get_model_version(name, version).tags if k.startswith("validation.")]:
        client.delete_model_version_tag(name, version, tag)
    untagged = on(host_b, name, version)
    assert untagged.returncode == 1, untagged.stdout + untagged.stderr
    assert untagged.stdout.startswith("FAILED")
    assert str(NESTED) in untagged.stdout.splitlines()[0]
    assert client.get_model_version(name, version).tags["validation.status"] == "FAILED"
    # The version was never sealed again: host B found host A's seal each time.
    # Neither host kept a seal (or anything shared) in its own data folder.
    for host in (host_a, host_b):
        assert not (host / "seals").exists() and not (host / "results.db").exists()
