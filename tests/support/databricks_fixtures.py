"""Databricks test fixtures (registered in tests/conftest.py): the workspace stand-in, its environment."""

from __future__ import annotations

import contextlib
import os
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from mlflow import MlflowClient
from mlflow.exceptions import MlflowException

from tests.support.databricks_standin import DatabricksStandIn
from tests.support.procs import MlflowServer

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
