"""Databricks test fixtures (registered in tests/conftest.py): the workspace stand-in in front of the
session's mlflow server, and the workspace fake the unmodified clients use in production configuration."""

from __future__ import annotations

import contextlib
import os
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from mlflow import MlflowClient
from mlflow.exceptions import MlflowException

from tests.support.databricks_standin import DatabricksStandIn
from tests.support.databricks_workspace import WorkspaceFake
from tests.support.procs import MlflowServer, MotoS3Server
from tests.support.receiver import Receiver

TOKEN = "dapi-test-token-not-secret"
NESTED_FILE = "weights/layer1/kernel.bin"


@pytest.fixture(scope="session")
def standin(tmp_path_factory: pytest.TempPathFactory,
            mlflow_server: MlflowServer) -> Iterator[DatabricksStandIn]:
    """The Databricks workspace stand-in, forwarding MLflow calls to the session's local mlflow server."""
    srv = DatabricksStandIn(tmp_path_factory.mktemp("dbx-standin"), mlflow_server, token=TOKEN).start()
    yield srv
    srv.stop()


@pytest.fixture
def dbx_env(standin: DatabricksStandIn, monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    """SDK unified-auth variables pointing at the stand-in, for this test only."""
    for key in list(os.environ):
        if key.startswith("DATABRICKS_"):
            monkeypatch.delenv(key)
    env = {"DATABRICKS_HOST": standin.url, "DATABRICKS_TOKEN": TOKEN}
    for k, v in env.items():
        monkeypatch.setenv(k, v)
    # A config file in the home folder must not change which workspace the tests talk to.
    monkeypatch.setenv("DATABRICKS_CONFIG_FILE", os.devnull)
    return env


def register_model(uri: str, name: str, workdir: Path) -> str:
    """Log a small model folder in a run through ``uri``, register it as ``name``; return the version.

    The folder holds a nested file, :data:`NESTED_FILE`; the version's source is the run's folder.
    """
    client = MlflowClient(tracking_uri=uri)
    exp = client.get_experiment_by_name("dbx-tests")
    exp_id = exp.experiment_id if exp else client.create_experiment("dbx-tests")
    run = client.create_run(exp_id)
    src = workdir / f"src-{uuid.uuid4().hex[:8]}"
    (src / "weights" / "layer1").mkdir(parents=True)
    (src / NESTED_FILE).write_bytes(os.urandom(4096))
    (src / "weights" / "vocab.txt").write_text("a\nb\nc\n")
    (src / "MLmodel").write_text("artifact_path: model\nflavors: {}\n")
    client.log_artifacts(run.info.run_id, str(src), "model")
    client.set_terminated(run.info.run_id)
    with contextlib.suppress(MlflowException):  # already registered by an earlier test
        client.create_registered_model(name)
    # Not MLflow's own wait (it polls every 3 s): the registry copy takes a fraction of a second.
    mv = client.create_model_version(name, f"{run.info.artifact_uri}/model", run_id=run.info.run_id,
                                     await_creation_for=0)
    deadline = time.monotonic() + 30
    while mv.status == "PENDING_REGISTRATION" and time.monotonic() < deadline:
        time.sleep(0.1)
        mv = client.get_model_version(name, mv.version)
    assert mv.status == "READY", mv
    return str(mv.version)


@pytest.fixture(scope="session")
def workspace_s3(tmp_path_factory: pytest.TempPathFactory) -> Iterator[MotoS3Server]:
    """A real S3 API (moto) for the workspace fake's Unity Catalog storage."""
    srv = MotoS3Server(tmp_path_factory.mktemp("dbx-moto")).start()
    yield srv
    srv.stop()


@pytest.fixture(scope="session")
def workspace_fake(tmp_path_factory: pytest.TempPathFactory,
                   workspace_s3: MotoS3Server) -> Iterator[WorkspaceFake]:
    """The Databricks workspace fake (and the mlflow server behind it), for clients in production
    configuration."""
    from tests.databricks.endpoint_record import TOKEN as FAKE_TOKEN

    srv = WorkspaceFake(tmp_path_factory.mktemp("dbx-workspace"), workspace_s3, token=FAKE_TOKEN).start()
    yield srv
    srv.stop()


@pytest.fixture(scope="session")
def fake_webhook_receiver() -> Iterator[Receiver]:
    """Receives the workspace fake's webhook deliveries."""
    r = Receiver()
    yield r
    r.close()


@pytest.fixture(scope="session")
def recordings(workspace_fake: WorkspaceFake, fake_webhook_receiver: Receiver) -> dict[str, dict[str, Any]]:
    """Every client flow of ``client_flows.py``, run once: per flow its result and the requests it made."""
    from tests.databricks.endpoint_record import record_all

    return record_all(workspace_fake, fake_webhook_receiver.url)
