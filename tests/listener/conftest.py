"""Fixtures of the ingress tests."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from listener import intake
from listener.config import Settings
from tests.listener.helpers import DATABRICKS_SECRET, MLFLOW_SECRET


@pytest.fixture
def settings(tmp_path: Path) -> Iterator[Settings]:
    """Settings with both secrets, on a fresh data dir (a real SQLite huey queue inside it)."""
    yield Settings(data_dir=tmp_path / "guard", mlflow_secrets=[MLFLOW_SECRET],
                   databricks_secrets=[DATABRICKS_SECRET], ui_base_url="http://mlflow.example:5000")
    intake.close_all()
