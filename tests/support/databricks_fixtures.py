"""Databricks test fixtures (registered in tests/conftest.py): the workspace fake, driven by the unmodified
MLflow and databricks-sdk clients in production configuration, and helpers to make versions on it."""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from typing import Any

import pytest

from tests.support.databricks_workspace import WorkspaceFake
from tests.support.procs import MotoS3Server
from tests.support.receiver import Receiver

# The nested file of every model the client flows log (see tests/databricks/client_flows.py).
NESTED_KERNEL = "artifacts/nested/weights/layer1/kernel.bin"
MARKER = "[mlflow-version-guard]"


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


@pytest.fixture
def dbx_env(workspace_fake: WorkspaceFake, monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    """This process in production configuration for the workspace registry, for this test only.

    Exactly the environment of the client flows and ``guard-job`` (``endpoint_record.production_env``)
    but PATH; a test serving Unity Catalog sets ``MLFLOW_REGISTRY_URI=databricks-uc`` on top.
    """
    from tests.databricks.endpoint_record import production_env

    for key in list(os.environ):
        if key.startswith(("DATABRICKS_", "GUARD_", "AWS_")):
            monkeypatch.delenv(key)
    env = {k: v for k, v in production_env(workspace_fake, "databricks").items() if k != "PATH"}
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    return env


def workspace_client(fake: WorkspaceFake, token: str | None = None, retry_timeout_s: int = 30) -> Any:
    """A user's databricks-sdk client on the fake (PAT authentication, no config file)."""
    from databricks.sdk import WorkspaceClient
    from databricks.sdk.core import Config

    return WorkspaceClient(config=Config(host=fake.url, token=token or fake.token, config_file=os.devnull,
                                         retry_timeout_seconds=retry_timeout_s))


def new_workspace_version(fake: WorkspaceFake, recordings: dict[str, dict[str, Any]], model: str) -> str:
    """A new workspace-registry version of ``model`` made from the logged model the client flows logged.

    Registered as ``mlflow.register_model`` registers it (``registered-models/create``,
    ``model-versions/create``); the workspace then makes its own copy of the files. Returns the version
    once it is READY.
    """
    from databricks.sdk.errors import ResourceAlreadyExists

    logged = recordings["workspace registry"]["result"]
    reg = workspace_client(fake).model_registry
    with contextlib.suppress(ResourceAlreadyExists):
        reg.create_model(name=model)
    mv = reg.create_model_version(name=model, source=logged["source"], run_id=logged["run_id"]).model_version
    fake.registry_copy(model, mv.version)  # waits for READY
    return str(mv.version)


def own_comments(fake: WorkspaceFake, model: str, version: str) -> list[str]:
    """The guard's comments on one version, oldest first."""
    return [c["comment"] for c in fake.state()["comments"] if c["model_name"] == model
            and c["version"] == str(version) and c["comment"].startswith(MARKER)]


def activities(fake: WorkspaceFake, model: str, version: str,
               kind: str | None = None) -> list[dict[str, Any]]:
    """The activity log of one version (``kind``: only that activity type), oldest first."""
    return [a for a in fake.state()["activities"] if a["model_name"] == model
            and a["version"] == str(version) and (kind is None or a["activity_type"] == kind)]
