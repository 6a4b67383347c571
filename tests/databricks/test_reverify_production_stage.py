"""Re-verification of Production-stage versions on the Databricks workspace registry (``GUARD_REVERIFY=
production-stage``), with ``guard-sweep --run`` in production configuration against the workspace fake.

The workspace registry has stages and no aliases, so what it serves is selected by stage. A workspace fake
of its own (its own registry behind it) keeps the sweep's catch-up to this test's versions: a sweep reads
the whole registry.
"""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from core.seal.keys import generate_key_pair
from tests.databricks.endpoint_record import TOKEN, production_env, run_flow
from tests.support.databricks_workspace import WorkspaceFake
from tests.support.procs import MotoS3Server

VENV_BIN = Path(sys.executable).parent
MODEL = "guard-reverify-stage-model"
MARKER = "[mlflow-version-guard]"  # the guard's own comments start with it
NESTED_KERNEL = "artifacts/nested/weights/layer1/kernel.bin"  # a nested file of the flow's model
INTERVAL_S = 2


@pytest.fixture(scope="module")
def own_fake(tmp_path_factory: pytest.TempPathFactory, workspace_s3: MotoS3Server) -> Iterator[WorkspaceFake]:
    srv = WorkspaceFake(tmp_path_factory.mktemp("dbx-reverify"), workspace_s3, token=TOKEN).start()
    yield srv
    srv.stop()


def register(fake: WorkspaceFake) -> str:
    """One new version of :data:`MODEL`, registered by MLflow's own client in production configuration."""
    result = run_flow(fake, "databricks", "workspace", "/Shared/guard-reverify", MODEL)
    assert "version" in result, result
    return str(result["version"])


def to_production(fake: WorkspaceFake, version: str) -> None:
    from databricks.sdk import WorkspaceClient
    from databricks.sdk.core import Config

    w = WorkspaceClient(config=Config(host=fake.url, token=fake.token, config_file="/dev/null"))
    w.model_registry.transition_stage(name=MODEL, version=version, stage="Production",
                                      archive_existing_versions=False)


def sweep(fake: WorkspaceFake, data_dir: Path, key: Path) -> dict:
    """``guard-sweep --run`` in the documented workspace environment, re-verifying Production versions."""
    env = production_env(fake, "databricks")
    env.update({"PATH": f"{VENV_BIN}:{env['PATH']}", "GUARD_DATA_DIR": str(data_dir),
                "GUARD_SIGNING_KEY": str(key), "GUARD_REVERIFY": "production-stage",
                "GUARD_REVERIFY_INTERVAL": str(INTERVAL_S), "GUARD_RETRY_BASE_S": "0.2",
                "GUARD_RETRY_MAX_S": "1", "GUARD_DATABRICKS_RETRY_TIMEOUT": "5",
                # The versions are registered before the guard's first sweep, which is to catch them up:
                # a new deployment otherwise starts watching at its first contact, after them.
                "GUARD_SWEEP_SINCE": "all"})
    done = subprocess.run([str(VENV_BIN / "guard-sweep"), "--run"], env=env, capture_output=True, text=True,
                          timeout=600, cwd=tempfile.mkdtemp(prefix="guard-sweep-cwd-"))
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads(done.stdout.strip().splitlines()[-1])


def workspace_tags(fake: WorkspaceFake, version: str) -> dict[str, str]:
    from mlflow import MlflowClient

    return dict(MlflowClient(tracking_uri=fake.backend.url).get_model_version(MODEL, version).tags)


def comments(fake: WorkspaceFake, version: str) -> list[str]:
    return [c["comment"] for c in fake.state()["comments"]
            if c["model_name"] == MODEL and c["version"] == version and c["comment"].startswith(MARKER)]


def flip_first_byte(path: Path) -> None:
    data = path.read_bytes()
    path.write_bytes(bytes([data[0] ^ 0xFF]) + data[1:])


def test_production_version_changed_after_passed_fails_on_reverification(own_fake: WorkspaceFake,
                                                                        tmp_path: Path) -> None:
    production, staging = register(own_fake), register(own_fake)
    to_production(own_fake, production)
    key = tmp_path / "seal-key.pem"
    generate_key_pair(key)
    data_dir = tmp_path / "guard"

    # No webhook at all: the sweep catches both versions up (sealed, PASSED) and starts their clock.
    first = sweep(own_fake, data_dir, key)
    assert sorted(first["caught_up"]) == sorted(
        f"sweep:databricks:{MODEL}:{v}:model_version.created" for v in (production, staging))
    assert first["reverified"] == []
    for version in (production, staging):
        assert workspace_tags(own_fake, version)["validation.status"] == "PASSED"
        assert len(comments(own_fake, version)) == 1 and "PASSED" in comments(own_fake, version)[0]

    # Both registry copies change; no event tells anyone. Only the Production version is re-checked.
    for version in (production, staging):
        flip_first_byte(own_fake.registry_copy(MODEL, version) / NESTED_KERNEL)
    time.sleep(INTERVAL_S + 0.5)  # the next re-verification period has begun for every version
    second = sweep(own_fake, data_dir, key)
    assert second["caught_up"] == [] and second["aliases_changed"] == []
    [reverified] = second["reverified"]
    assert reverified.startswith(f"sweep:databricks:{MODEL}:{production}:reverify:")

    assert workspace_tags(own_fake, production)["validation.status"] == "FAILED"
    posted = comments(own_fake, production)
    assert len(posted) == 2 and "FAILED" in posted[-1] and "kernel.bin" in posted[-1]
    assert workspace_tags(own_fake, staging)["validation.status"] == "PASSED"
    assert len(comments(own_fake, staging)) == 1
    assert own_fake.unimplemented_requests() == []  # every endpoint the sweep called is implemented
