"""Fixtures of the Databricks tests: the workspace stand-in in front of the session's mlflow server."""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.databricks_standin import DatabricksStandIn
from tests.support.procs import MlflowServer

TOKEN = "dapi-test-token-not-secret"
NESTED_FILE = "artifacts/weights/layer1/kernel.bin"


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


@contextlib.contextmanager
def tracking_uri(uri: str) -> Iterator[None]:
    """Point the fluent MLflow API at ``uri`` for the block, then restore the previous URI."""
    import mlflow
    from mlflow.tracking._tracking_service import utils as tracking_utils

    # The module variable, not get_tracking_uri(): "unset" must be restored as unset.
    previous = tracking_utils._tracking_uri
    mlflow.set_tracking_uri(uri)
    try:
        yield
    finally:
        if mlflow.active_run():
            mlflow.end_run()
        tracking_utils._tracking_uri = previous


def register_model(uri: str, name: str, workdir: Path) -> str:
    """Log a small model through ``uri``, register it as ``name``; return the version.

    The model holds a nested file, ``artifacts/weights/layer1/kernel.bin`` (see NESTED_FILE).
    """
    import mlflow
    import mlflow.pyfunc

    weights = workdir / name / "weights"
    (weights / "layer1").mkdir(parents=True, exist_ok=True)
    (weights / "layer1" / "kernel.bin").write_bytes(os.urandom(4096))
    (weights / "vocab.txt").write_text("a\nb\nc\n")

    class Identity(mlflow.pyfunc.PythonModel):
        def predict(self, context, model_input, params=None):
            return model_input

    with tracking_uri(uri):
        mlflow.set_experiment("dbx-standin-tests")
        with mlflow.start_run():
            info = mlflow.pyfunc.log_model(name="model", python_model=Identity(), pip_requirements=["mlflow"],
                                           artifacts={"weights": str(weights)}, registered_model_name=name)
    return str(info.registered_model_version)
