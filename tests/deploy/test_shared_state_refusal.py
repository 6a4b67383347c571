"""Every process of a deployment refuses to start with a shared store and a per-host seal folder."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from tests.deploy.stack import REPO_ROOT, VENV_BIN, guard_env, procfile
from tests.support.procs import free_port

REFUSAL = "GUARD_SEAL_STORE is a folder of this host"


@pytest.mark.parametrize("command", [
    procfile()["web"], procfile()["worker"], f"{VENV_BIN}/guard-sweep",
    f"{VENV_BIN}/guard-job --model_name churn --model_version 1",
])
def test_a_shared_store_with_a_per_host_seal_folder_is_refused_at_start(command: str, tmp_path: Path):
    # Refused before the database is ever contacted: nothing listens on this port.
    env = guard_env(GUARD_STORE=f"postgresql://guard:pw@127.0.0.1:{free_port()}/guard",
                    GUARD_SEAL_STORE=str(tmp_path / "seals"), GUARD_DATA_DIR=str(tmp_path / "data"),
                    MLFLOW_TRACKING_URI="http://127.0.0.1:9", GUNICORN_BIND=f"127.0.0.1:{free_port()}",
                    WEB_CONCURRENCY="1")
    run = subprocess.run(["/bin/sh", "-c", command], env=env, cwd=REPO_ROOT, capture_output=True, text=True,
                         timeout=300)
    assert run.returncode != 0, run.stdout + run.stderr
    assert REFUSAL in run.stderr and "docs/shared-state.md" in run.stderr, run.stderr[-3000:]
    assert "pw@" not in run.stderr
    assert not (tmp_path / "seals").exists()
