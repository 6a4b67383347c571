"""``check-model-version`` never passes a version the guard sealed without verifying its signed seal.

The guard here is the local stack's (``make run``): data folder ``./.guard`` with its store ``results.db``
(where the seals are kept), its generated key ``seal-key.pem`` and, while it runs, ``stack.json`` naming the
listener that serves ``GET /seal-key.pem``.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest
from mlflow import MlflowClient

from core.seal.keys import ensure_signing_key
from listener.config import Settings
from listener.protocol import ValidationRequest
from listener.worker.job import process_job
from tests.core.signing_support import make_key
from tests.deploy.stack import Web, guard_env
from tests.listener.worker.helpers import local_model_path, register_model

CLI = str(Path(sys.executable).parent / "check-model-version")
NESTED = Path("data") / "deep" / "nested" / "layer.bin"


def _cli(cwd: Path, tracking_uri: str, name: str, version: str, *extra: str,
         **variables: str) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("GUARD_", "MLFLOW_TRACKING", "MLFLOW_REGISTRY"))} | variables
    argv = [CLI, "--model", name, "--version-or-stage", version, "--tracking-uri", tracking_uri, *extra]
    return subprocess.run(argv, env=env, cwd=cwd, capture_output=True, text=True, timeout=300)


@pytest.fixture
def local_stack(tmp_path: Path, mlflow_server) -> Settings:
    """The local stack's guard settings: everything under ``<project>/.guard``, the generated key."""
    data_dir = tmp_path / "project" / ".guard"
    key = ensure_signing_key(data_dir / "seal-key.pem")
    return Settings(tracking_uri=mlflow_server.url, data_dir=data_dir, signing_key=key, max_retries=0)


def _sealed_by_the_guard(settings: Settings, client: MlflowClient, tmp_path: Path) -> tuple[str, str]:
    name, version = register_model(client, tmp_path, name=f"cli-sealed-{uuid.uuid4().hex[:6]}")
    request = ValidationRequest(registry="mlflow", model=name, version=version,
                                trigger="model_version.created", action="seal_and_check", to_stage=None,
                                alias=None, gate=False,
                                delivery_key=uuid.uuid4().hex, received_at=time.time()).to_dict()
    assert process_job(request, settings)["status"] == "PASSED"
    assert client.get_model_version(name, version).tags["validation.seal_bundle"].startswith("guard-store:")
    return name, version


def test_with_the_local_stack_s_defaults_a_tampered_version_fails_naming_the_file(
        local_stack: Settings, mlflow_server, tmp_path: Path):
    client = MlflowClient(tracking_uri=mlflow_server.url)
    project = local_stack.data_dir.parent
    name, version = _sealed_by_the_guard(local_stack, client, tmp_path)
    # The stack is running: its listener serves the public key, and stack.json says where.
    web = Web(guard_env(GUARD_DATA_DIR=str(tmp_path / "web"), MLFLOW_TRACKING_URI=mlflow_server.url,
                        GUARD_SIGNING_KEY=str(local_stack.data_dir / "seal-key.pem")), tmp_path / "web.log",
              workers=1).start()
    try:
        (local_stack.data_dir / "stack.json").write_text(json.dumps({"listener_url": web.url}))
        (local_stack.data_dir / "seal-key.pub.pem").unlink()  # the key comes from the listener only
        ok = _cli(project, mlflow_server.url, name, version)
        assert ok.returncode == 0, ok.stdout + ok.stderr
        assert "signed seal verified" in ok.stdout and "nothing was proven" not in ok.stdout

        (local_model_path(client, name, version) / NESTED).write_bytes(b"tampered after the guard sealed it")
        bad = _cli(project, mlflow_server.url, name, version)
        assert bad.returncode == 1, bad.stdout + bad.stderr
        assert bad.stdout.startswith("FAILED") and str(NESTED) in bad.stdout.splitlines()[0]
    finally:
        web.stop()
    # The listener is gone: a sealed version cannot be verified without its key, and says which option.
    no_key = _cli(project, mlflow_server.url, name, version)
    assert no_key.returncode == 2 and "--public-key" in no_key.stderr, no_key.stdout + no_key.stderr
    assert "PASSED" not in no_key.stdout


def test_a_sealed_version_with_no_seal_store_reachable_exits_2_naming_the_option(
        local_stack: Settings, mlflow_server, tmp_path: Path):
    client = MlflowClient(tracking_uri=mlflow_server.url)
    name, version = _sealed_by_the_guard(local_stack, client, tmp_path)
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    run = _cli(elsewhere, mlflow_server.url, name, version)
    assert run.returncode == 2, run.stdout + run.stderr
    assert "--seal-store" in run.stderr and "validation.seal_bundle" in run.stderr
    assert "PASSED" not in run.stdout
    assert not (elsewhere / ".guard").exists()  # looking for the local stack's store created nothing
    # Named explicitly, the store and key verify it from anywhere.
    found = _cli(elsewhere, mlflow_server.url, name, version,
                 "--seal-store", f"sqlite:///{local_stack.data_dir / 'results.db'}",
                 "--public-key", str(local_stack.data_dir / "seal-key.pub.pem"))
    assert found.returncode == 0 and "signed seal verified" in found.stdout, found.stdout + found.stderr
    # So does the guard's own environment: its store (the seals' default place) and its trusted keys.
    other = make_key(tmp_path / "keys", "rotated-out")
    from_env = _cli(elsewhere, mlflow_server.url, name, version,
                    GUARD_STORE=f"sqlite:///{local_stack.data_dir / 'results.db'}",
                    GUARD_TRUSTED_KEYS=f"{other.public_path},{local_stack.data_dir / 'seal-key.pub.pem'}")
    assert from_env.returncode == 0, from_env.stdout + from_env.stderr
    assert "signed seal verified" in from_env.stdout


def test_a_same_storage_pass_with_no_seal_says_nothing_was_proven(mlflow_server, tmp_path: Path):
    client = MlflowClient(tracking_uri=mlflow_server.url)
    name, version = register_model(client, tmp_path, name=f"cli-unsealed-{uuid.uuid4().hex[:6]}")
    run = _cli(tmp_path, mlflow_server.url, name, version)
    assert run.returncode == 0, run.stdout + run.stderr
    assert "same storage" in run.stdout and "nothing was proven" in run.stdout
