"""``check-model-version`` in production configuration against the workspace fake.

What a user of a workspace runs: ``MLFLOW_TRACKING_URI=databricks``, ``MLFLOW_REGISTRY_URI``,
``DATABRICKS_HOST``, ``DATABRICKS_TOKEN`` and nothing else. The versions are the ones the client flows
registered (see ``recordings``); the registry's copy is read the way MLflow reads ``models:/``.
"""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

from tests.databricks.endpoint_record import UC_MODEL, WORKSPACE_MODEL, production_env
from tests.support.databricks_workspace import WorkspaceFake

VENV_BIN = Path(sys.executable).parent
NESTED_KERNEL = "artifacts/nested/weights/layer1/kernel.bin"


def check_version(fake: WorkspaceFake, registry_uri: str, model: str, version: str) -> tuple[int, dict, str]:
    """Run the CLI as a user would; exit status, report, stderr."""
    work = Path(tempfile.mkdtemp(prefix="guard-cli-"))
    env = production_env(fake, registry_uri)
    env["PATH"] = f"{VENV_BIN}:{env['PATH']}"
    proc = subprocess.run(
        [
            str(VENV_BIN / "check-model-version"),
            "--model",
            model,
            "--version-or-stage",
            version,
            "--report-file",
            str(work / "report.json"),
        ],
        env=env,
        cwd=work,
        capture_output=True,
        text=True,
        timeout=600,
    )
    report = json.loads((work / "report.json").read_text()) if (work / "report.json").exists() else {}
    return proc.returncode, report, proc.stderr


def differing_files(report: dict[str, Any]) -> str:
    return json.dumps(report.get("Reg_Model_Comparison") or report.get("Comparison") or report)[:4000]


def test_identical_workspace_version_passes(
    workspace_fake: WorkspaceFake, recordings: dict[str, dict[str, Any]]
) -> None:
    version = recordings["workspace registry"]["result"]["version"]
    status, report, stderr = check_version(workspace_fake, "databricks", WORKSPACE_MODEL, version)
    assert status == 0, (stderr[-3000:], differing_files(report))


def test_identical_unity_catalog_version_passes(
    workspace_fake: WorkspaceFake, recordings: dict[str, dict[str, Any]]
) -> None:
    version = recordings["unity catalog"]["result"]["version"]
    status, report, stderr = check_version(workspace_fake, "databricks-uc", UC_MODEL, version)
    assert status == 0, (stderr[-3000:], differing_files(report))


def test_tampered_workspace_registry_copy_fails(
    workspace_fake: WorkspaceFake, recordings: dict[str, dict[str, Any]]
) -> None:
    version = recordings["workspace registry"]["result"]["version"]
    kernel = workspace_fake.registry_copy(WORKSPACE_MODEL, version) / NESTED_KERNEL
    original = kernel.read_bytes()
    kernel.write_bytes(bytes([original[0] ^ 0xFF]) + original[1:])
    try:
        status, report, stderr = check_version(workspace_fake, "databricks", WORKSPACE_MODEL, version)
    finally:
        kernel.write_bytes(original)
    assert status == 1, stderr[-3000:]
    assert "kernel.bin" in json.dumps(report)
