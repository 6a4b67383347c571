"""Real models logged with MLflow on a real ``mlflow server`` for the policy tests."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import mlflow
import pytest
from mlflow import MlflowClient

from core.policy.loader import Policy, parse_policy
from tests.core.test_server import _tracking
from tests.support.procs import MlflowServer

# A model from code: nothing of it is pickled, so any pickle in it is one a test put there.
MODEL_CODE = '''\
import mlflow
from mlflow.pyfunc import PythonModel


class Echo(PythonModel):
    def predict(self, context, model_input, params=None):
        return model_input


mlflow.models.set_model(Echo())
'''


@dataclass
class Registry:
    """Logs models on ``server`` under unique names; ``tmp`` holds the files they are logged from."""

    server: MlflowServer
    tmp: Path

    @property
    def url(self) -> str:
        return self.server.url

    @property
    def client(self) -> MlflowClient:
        return MlflowClient(self.url)

    def name(self, prefix: str) -> str:
        return f"{prefix}-{uuid.uuid4().hex[:8]}"

    def log_code_model(self, name: str, *, artifacts: dict[str, bytes] | None = None,
                       pip_requirements: list[str] | None = None, input_example: Any = None,
                       metrics: dict[str, float] | None = None) -> str:
        """A models-from-code pyfunc with ``artifacts`` (name → bytes); returns the version."""
        folder = self.tmp / uuid.uuid4().hex
        folder.mkdir(parents=True)
        code = folder / "model_code.py"
        code.write_text(MODEL_CODE)
        paths = {}
        for fname, data in (artifacts or {}).items():
            (folder / fname).write_bytes(data)
            paths[fname.replace(".", "_")] = str(folder / fname)
        with _tracking(self.url), mlflow.start_run():
            if metrics:
                mlflow.log_metrics(metrics)
            info = mlflow.pyfunc.log_model(name="model", python_model=str(code), artifacts=paths or None,
                                           pip_requirements=pip_requirements or ["mlflow==3.17.2"],
                                           input_example=input_example, registered_model_name=name)
        return str(info.registered_model_version)

    def log_sklearn(self, name: str, model: Any, **kwargs: Any) -> str:
        """A scikit-learn model logged with ``mlflow.sklearn.log_model(**kwargs)``; returns the version."""
        import numpy as np

        with _tracking(self.url), mlflow.start_run():
            info = mlflow.sklearn.log_model(model, name="model", registered_model_name=name,
                                            input_example=np.zeros((2, 4)), **kwargs)
        return str(info.registered_model_version)


@pytest.fixture(scope="module")
def registry(mlflow_server: MlflowServer, tmp_path_factory: pytest.TempPathFactory) -> Registry:
    """The session's ``mlflow server`` with a local artifact root (model files read in place)."""
    return Registry(mlflow_server, tmp_path_factory.mktemp("policy-models"))


@pytest.fixture(scope="module")
def http_registry(mlflow_server_http: MlflowServer, tmp_path_factory: pytest.TempPathFactory) -> Registry:
    """The session's ``mlflow server --serve-artifacts``: model files streamed over HTTP."""
    return Registry(mlflow_server_http, tmp_path_factory.mktemp("policy-models-http"))


def policy(text: str) -> Policy:
    """A policy from YAML text (``version: 1`` added)."""
    return parse_policy("version: 1\n" + text, "policy.yaml")


def checks(result: Any) -> dict[str, dict[str, str]]:
    """The report's policy checks by name."""
    return {c["check"]: c for c in result.report["policy"]["checks"]}


@pytest.fixture(scope="module")
def iris():
    from sklearn.datasets import load_iris

    features, labels = load_iris(return_X_y=True)
    return features, labels
