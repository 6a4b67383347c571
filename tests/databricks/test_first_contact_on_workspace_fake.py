"""First contact with a Databricks workspace registry that already holds versions: no comment, no tag.

``guard-sweep`` in production configuration (``MLFLOW_TRACKING_URI=databricks``, ``DATABRICKS_HOST`` at the
workspace fake), a workspace fake of its own so the registry holds exactly this test's versions.
"""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from core.seal.keys import generate_key_pair
from tests.databricks.endpoint_record import TOKEN, production_env, run_flow
from tests.support.databricks_workspace import WorkspaceFake
from tests.support.procs import MotoS3Server

VENV_BIN = Path(sys.executable).parent
MODELS = ("guard-first-contact-a", "guard-first-contact-b")
MARKER = "[mlflow-version-guard]"  # the guard's own comments start with it


@pytest.fixture(scope="module")
def own_fake(tmp_path_factory: pytest.TempPathFactory, workspace_s3: MotoS3Server) -> Iterator[WorkspaceFake]:
    srv = WorkspaceFake(tmp_path_factory.mktemp("dbx-first-contact"), workspace_s3, token=TOKEN).start()
    yield srv
    srv.stop()


def _register(fake: WorkspaceFake, model: str) -> str:
    result = run_flow(fake, "databricks", "workspace", "/Shared/guard-first-contact", model)
    assert "version" in result, result
    return str(result["version"])


def _sweep(fake: WorkspaceFake, data_dir: Path, key: Path) -> dict:
    env = production_env(fake, "databricks")
    env.update({"PATH": f"{VENV_BIN}:{env['PATH']}", "GUARD_DATA_DIR": str(data_dir),
                "GUARD_SIGNING_KEY": str(key), "GUARD_RETRY_BASE_S": "0.2", "GUARD_RETRY_MAX_S": "1",
                "GUARD_DATABRICKS_RETRY_TIMEOUT": "5"})
    done = subprocess.run([str(VENV_BIN / "guard-sweep"), "--run"], env=env, capture_output=True, text=True,
                          timeout=600, cwd=tempfile.mkdtemp(prefix="guard-sweep-cwd-"))
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads(done.stdout.strip().splitlines()[-1])


def _guard_comments(fake: WorkspaceFake) -> list[tuple[str, str]]:
    return [(c["model_name"], c["version"]) for c in fake.state()["comments"]
            if c["comment"].startswith(MARKER)]


def _guard_tags(fake: WorkspaceFake, model: str, version: str) -> dict[str, str]:
    from mlflow import MlflowClient

    tags = MlflowClient(tracking_uri=fake.backend.url).get_model_version(model, version).tags
    return {k: v for k, v in tags.items() if k.startswith("validation.")}


def test_first_sweep_posts_no_comment_on_versions_that_were_there_before(own_fake: WorkspaceFake,
                                                                         tmp_path: Path) -> None:
    before = [(model, _register(own_fake, model)) for model in MODELS for _ in range(2)]
    key = tmp_path / "seal-key.pem"
    generate_key_pair(key)
    data_dir = tmp_path / "guard"

    first = _sweep(own_fake, data_dir, key)

    assert first["caught_up"] == [] and first["aliases_changed"] == [] and first["reverified"] == []
    assert _guard_comments(own_fake) == []
    assert all(_guard_tags(own_fake, model, version) == {} for model, version in before)

    # A version registered afterwards, whose webhook never came: the next sweep checks it, and only it.
    late = _register(own_fake, MODELS[0])
    second = _sweep(own_fake, data_dir, key)
    assert second["caught_up"] == [f"sweep:databricks:{MODELS[0]}:{late}:model_version.created"]
    assert _guard_comments(own_fake) == [(MODELS[0], late)]
    assert _guard_tags(own_fake, MODELS[0], late)["validation.status"] == "PASSED"
    assert all(_guard_tags(own_fake, model, version) == {} for model, version in before)
    assert own_fake.unimplemented_requests() == []
