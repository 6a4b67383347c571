"""Shared fixtures: real MLflow tracking servers, started once per session and stopped by pid."""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest

from tests.support.procs import MlflowServer

# Keep MLflow from slow network look-ups and noisy telemetry in tests.
os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
os.environ.setdefault("DO_NOT_TRACK", "true")
os.environ.setdefault("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "2")
os.environ.setdefault("MLFLOW_HTTP_REQUEST_TIMEOUT", "20")
# gunicorn waits out its graceful timeout while a client holds a keep-alive connection open; the
# tests stop their stacks many times, and nothing they check depends on that wait.
os.environ.setdefault("GUNICORN_GRACEFUL_TIMEOUT", "2")


@pytest.fixture(scope="session")
def mlflow_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[MlflowServer]:
    """A real ``mlflow server``: SQLite store, local artifact root (artifacts readable in place)."""
    srv = MlflowServer(tmp_path_factory.mktemp("mlflow-local")).start()
    yield srv
    srv.stop()


@pytest.fixture(scope="session")
def mlflow_server_http(tmp_path_factory: pytest.TempPathFactory) -> Iterator[MlflowServer]:
    """A real ``mlflow server`` with ``--serve-artifacts``: artifacts only reachable over HTTP."""
    srv = MlflowServer(tmp_path_factory.mktemp("mlflow-http"), serve_artifacts=True).start()
    yield srv
    srv.stop()


@pytest.fixture(scope="session")
def mlflow_server_2(tmp_path_factory: pytest.TempPathFactory) -> Iterator[MlflowServer]:
    """A second, independent tracking server for cross-server comparisons."""
    srv = MlflowServer(tmp_path_factory.mktemp("mlflow-second")).start()
    yield srv
    srv.stop()


# The Databricks workspace fake is shared by the Databricks, adapter and e2e tests.
from tests.support.databricks_fixtures import (  # noqa: E402, F401
    dbx_env,
    fake_webhook_receiver,
    recordings,
    workspace_fake,
    workspace_s3,
)

# The files whose tests start the Databricks workspace fake (a session fixture, with its S3 API and
# recorded client flows): ``make test`` runs them in one of its parallel processes, so the fake starts
# once rather than once per process.
_WORKSPACE_FILES = (
    "tests/databricks/", "tests/listener/registries/test_databricks.py", "tests/listener/test_admin.py",
)


def pytest_xdist_make_scheduler(config: pytest.Config, log: object) -> object:
    """pytest-xdist's file-by-file scheduling, with the workspace fake's files as one unit of work."""
    from xdist.scheduler import LoadFileScheduling

    class _FilesAndWorkspace(LoadFileScheduling):
        def _split_scope(self, nodeid: str) -> str:
            path = nodeid.split("::", 1)[0]
            return "databricks-workspace" if path.startswith(_WORKSPACE_FILES) else path

    return _FilesAndWorkspace(config, log)
