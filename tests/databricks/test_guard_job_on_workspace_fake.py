"""``guard-job`` in production configuration against the workspace fake: workspace registry and Unity Catalog.

The job is started as Databricks starts it (``--event_message=<json>`` from a job webhook or a model
update trigger, ``--model_name=`` / ``--model_version=`` from a deployment job) with exactly the environment
docs/databricks.md gives: ``MLFLOW_TRACKING_URI=databricks``, ``MLFLOW_REGISTRY_URI``, ``DATABRICKS_HOST``,
``DATABRICKS_TOKEN`` (plus the guard's own data folder and retry pacing).
"""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import pytest

from listener.worker.entry import requests_from_event
from tests.databricks.documented_env import mismatches
from tests.databricks.endpoint_record import UC_MODEL, WORKSPACE_MODEL, production_env
from tests.support.databricks_workspace import WorkspaceFake

VENV_BIN = Path(sys.executable).parent
NESTED_KERNEL = "artifacts/nested/weights/layer1/kernel.bin"
MARKER = "[mlflow-version-guard]"


def job_env(fake: WorkspaceFake, registry_uri: str, gate: bool = False,
            data_dir: Path | None = None) -> dict[str, str]:
    """The documented environment of ``guard-job`` for ``registry_uri`` (gating only when ``gate``)."""
    env = production_env(fake, registry_uri)
    env.update({"PATH": f"{VENV_BIN}:{env['PATH']}",
                "GUARD_DATA_DIR": str(data_dir or Path(tempfile.mkdtemp(prefix="guard-job-"))),
                "GUARD_RETRY_BASE_S": "0.2", "GUARD_RETRY_MAX_S": "1", "GUARD_DATABRICKS_RETRY_TIMEOUT": "5"})
    if gate:
        env["GUARD_GATE_TRANSITIONS"] = "true"
    return env


def guard_job(fake: WorkspaceFake, registry_uri: str, args: list[str], gate: bool = False,
              data_dir: Path | None = None) -> subprocess.CompletedProcess:
    """The ``guard-job`` console script, with the documented environment for ``registry_uri``."""
    env = job_env(fake, registry_uri, gate, data_dir)
    return subprocess.run([str(VENV_BIN / "guard-job"), *args], env=env, capture_output=True, text=True,
                          timeout=600, cwd=tempfile.mkdtemp(prefix="guard-job-cwd-"))


def webhook_payload(event: str, version: str, **extra: Any) -> str:
    """A registry webhook payload as a Databricks job webhook passes it (``--event_message=``)."""
    payload = {"event": event, "webhook_id": "wh-1", "event_timestamp": int(time.time() * 1000),
               "model_name": WORKSPACE_MODEL, "version": version, **extra}
    return "--event_message=" + json.dumps(payload)


def own_comments(fake: WorkspaceFake, name: str, version: str) -> list[str]:
    return [c["comment"] for c in fake.state()["comments"]
            if c["model_name"] == name and c["version"] == str(version) and c["comment"].startswith(MARKER)]


def workspace_tags(fake: WorkspaceFake, name: str, version: str) -> dict[str, str]:
    from mlflow import MlflowClient

    return dict(MlflowClient(tracking_uri=f"{fake.backend.url}").get_model_version(name, version).tags)


def open_request_stages(fake: WorkspaceFake, version: str) -> list[dict[str, Any]]:
    kinds = ("APPROVED_REQUEST", "REJECTED_REQUEST")
    return [a for a in fake.state()["activities"] if a["model_name"] == WORKSPACE_MODEL
            and a["version"] == str(version) and a["activity_type"] in kinds]


def request_transition(fake: WorkspaceFake, version: str, stage: str = "Production") -> None:
    from databricks.sdk import WorkspaceClient
    from databricks.sdk.core import Config

    w = WorkspaceClient(config=Config(host=fake.url, token=fake.token, config_file="/dev/null"))
    w.model_registry.create_transition_request(name=WORKSPACE_MODEL, version=str(version), stage=stage)


@pytest.fixture
def ws_version(recordings: dict[str, dict[str, Any]]) -> str:
    return str(recordings["workspace registry"]["result"]["version"])


@pytest.fixture
def uc_version(recordings: dict[str, dict[str, Any]]) -> str:
    return str(recordings["unity catalog"]["result"]["version"])


def test_created_event_posts_passed_comment_and_tags(workspace_fake: WorkspaceFake, ws_version: str) -> None:
    before = len(own_comments(workspace_fake, WORKSPACE_MODEL, ws_version))
    run = guard_job(workspace_fake, "databricks", [webhook_payload("MODEL_VERSION_CREATED", ws_version)])
    assert run.returncode == 0, run.stderr[-3000:]
    comments = own_comments(workspace_fake, WORKSPACE_MODEL, ws_version)
    assert len(comments) == before + 1 and "PASSED" in comments[-1]
    assert workspace_tags(workspace_fake, WORKSPACE_MODEL, ws_version)["validation.status"] == "PASSED"


def test_tampered_copy_rejects_the_request_intact_copy_approves_it(workspace_fake: WorkspaceFake,
                                                                  ws_version: str) -> None:
    kernel = workspace_fake.registry_copy(WORKSPACE_MODEL, ws_version) / NESTED_KERNEL
    original = kernel.read_bytes()
    request_transition(workspace_fake, ws_version)
    request_event = webhook_payload("TRANSITION_REQUEST_CREATED", ws_version, to_stage="Production")
    kernel.write_bytes(bytes([original[0] ^ 0xFF]) + original[1:])
    before = len(own_comments(workspace_fake, WORKSPACE_MODEL, ws_version))
    try:
        run = guard_job(workspace_fake, "databricks", [request_event], gate=True)
    finally:
        kernel.write_bytes(original)
    assert run.returncode == 1, run.stderr[-3000:]
    comments = own_comments(workspace_fake, WORKSPACE_MODEL, ws_version)
    assert len(comments) == before + 1 and "FAILED" in comments[-1] and "kernel.bin" in comments[-1]
    assert open_request_stages(workspace_fake, ws_version)[-1]["activity_type"] == "REJECTED_REQUEST"

    request_transition(workspace_fake, ws_version)
    run = guard_job(workspace_fake, "databricks", [request_event], gate=True)
    assert run.returncode == 0, run.stderr[-3000:]
    comments = own_comments(workspace_fake, WORKSPACE_MODEL, ws_version)
    assert len(comments) == before + 2 and "PASSED" in comments[-1]
    assert open_request_stages(workspace_fake, ws_version)[-1]["activity_type"] == "APPROVED_REQUEST"


@pytest.mark.parametrize("event, extra", [
    ("TRANSITION_REQUEST_TO_ARCHIVED_CREATED", {}),
    ("TRANSITION_REQUEST_CREATED", {"to_stage": "Archived"}),
    ("COMMENT_CREATED", {"comment": f"{MARKER}\nValidation PASSED"}),
    ("MODEL_VERSION_TAG_SET", {"tags": [{"key": "validation.status", "value": "PASSED"}]}),
])
def test_job_ignores_what_the_listener_ignores(workspace_fake: WorkspaceFake, ws_version: str, event: str,
                                               extra: dict[str, Any]) -> None:
    before = len(own_comments(workspace_fake, WORKSPACE_MODEL, ws_version))
    run = guard_job(workspace_fake, "databricks", [webhook_payload(event, ws_version, **extra)], gate=True)
    assert run.returncode == 0, run.stderr[-3000:]
    assert "skipped" in run.stderr and run.stdout == ""
    assert len(own_comments(workspace_fake, WORKSPACE_MODEL, ws_version)) == before


def test_unity_catalog_trigger_batch(workspace_fake: WorkspaceFake, uc_version: str) -> None:
    aliases = workspace_fake.state()["uc_aliases"].get(UC_MODEL, {})
    alias = next((a for a, v in aliases.items() if str(v) == uc_version), None)
    updates = [{"full_name": UC_MODEL, "version": uc_version},
               {"full_name": UC_MODEL, "version": "9999"},
               {"full_name": UC_MODEL, "version": uc_version, "alias_name": alias or "champion"},
               {"full_name": UC_MODEL}]  # MODEL_CREATED: a model, no version
    event = json.dumps({"updates": updates})
    [ready, missing, alias_set] = requests_from_event(event, "databricks")
    assert (ready["action"], alias_set["action"], alias_set["alias"]) == \
        ("seal_and_check", "check", alias or "champion")
    run = guard_job(workspace_fake, "databricks-uc", [f"--event_message={event}"])
    assert run.returncode == 2, run.stderr[-3000:]
    verdicts = ("PASSED", "FAILED", "ERROR")
    statuses = [line.split()[0] for line in run.stdout.splitlines() if line.startswith(verdicts)]
    assert statuses == ["PASSED", "ERROR", "PASSED"], run.stdout[-3000:]
    assert "names no model version" in run.stderr
    # Only the missing version's ERROR has nowhere to go; both verdicts of version 1 fit UC's tag limit.
    assert run.stderr.count("warning: verdict not written onto the version") == 1, run.stderr[-3000:]
    st = workspace_fake.state()
    assert st["uc_versions"][UC_MODEL][uc_version]["_tags"]["validation.status"] == "PASSED"
    if alias is not None:
        assert str(st["uc_aliases"][UC_MODEL][alias]) == uc_version


def test_deployment_job_parameters(workspace_fake: WorkspaceFake, uc_version: str) -> None:
    params = [f"--model_name={UC_MODEL}", f"--model_version={uc_version}"]
    run = guard_job(workspace_fake, "databricks-uc", params)
    assert run.returncode == 0, run.stderr[-3000:]
    assert run.stdout.startswith(f"PASSED {UC_MODEL} version {uc_version}")
    missing = guard_job(workspace_fake, "databricks-uc", [f"--model_name={UC_MODEL}", "--model_version=9998"])
    assert missing.returncode == 2 and missing.stdout.startswith("ERROR")


@pytest.mark.parametrize("status, kind", [(429, "json"), (503, "json"), (502, "html")])
def test_transient_comment_failures_post_once(workspace_fake: WorkspaceFake, ws_version: str, status: int,
                                              kind: str) -> None:
    before = len(own_comments(workspace_fake, WORKSPACE_MODEL, ws_version))
    workspace_fake.inject_fault("POST", "/api/2.0/mlflow/comments/create", status, count=2, kind=kind)
    try:
        run = guard_job(workspace_fake, "databricks", [webhook_payload("MODEL_VERSION_CREATED", ws_version)])
    finally:
        workspace_fake.clear_faults()
    assert run.returncode == 0, run.stderr[-3000:]
    assert "not written onto the version" not in run.stderr
    assert len(own_comments(workspace_fake, WORKSPACE_MODEL, ws_version)) == before + 1


def test_forbidden_comment_keeps_the_verdict(workspace_fake: WorkspaceFake, ws_version: str) -> None:
    before = len(own_comments(workspace_fake, WORKSPACE_MODEL, ws_version))
    workspace_fake.inject_fault("POST", "/api/2.0/mlflow/comments/create", 403, count=50,
                                error_code="PERMISSION_DENIED")
    data_dir = Path(tempfile.mkdtemp(prefix="guard-job-403-"))
    try:
        run = guard_job(workspace_fake, "databricks", [webhook_payload("MODEL_VERSION_CREATED", ws_version)],
                        data_dir=data_dir)
    finally:
        workspace_fake.clear_faults()
    assert run.stdout.startswith(f"PASSED {WORKSPACE_MODEL} version {ws_version}"), run.stderr[-3000:]
    assert "not written onto the version" in run.stderr
    assert len(own_comments(workspace_fake, WORKSPACE_MODEL, ws_version)) == before
    from listener.config import Settings
    from listener.store import get_store

    [row] = get_store(Settings(data_dir=data_dir).store_url).recent()
    assert row["status"] == "PASSED" and row["publish_status"] not in (None, "PUBLISHED")


def test_readyz_asks_the_workspace_through_the_sdk(workspace_fake: WorkspaceFake, tmp_path: Path,
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    from listener.config import Settings
    from listener.web import create_app

    for key, value in {"DATABRICKS_HOST": workspace_fake.url, "DATABRICKS_TOKEN": workspace_fake.token,
                       "DATABRICKS_CONFIG_FILE": "/dev/null"}.items():
        monkeypatch.setenv(key, value)
    settings = Settings(tracking_uri="databricks", registry_uri="databricks", registry_kind="databricks",
                        data_dir=tmp_path)
    assert create_app(settings).test_client().get("/readyz").status_code == 200
    monkeypatch.setenv("DATABRICKS_TOKEN", "dapi-wrong-token")
    answer = create_app(settings).test_client().get("/readyz")
    assert answer.status_code == 503 and "Databricks workspace not ready" in " ".join(answer.json["reasons"])


@pytest.mark.parametrize("registry_uri, label", [
    ("databricks-uc", "guard-job, Unity Catalog"),
    ("databricks", "guard-job, workspace registry job webhook"),
])
def test_the_job_runs_with_the_documented_environment(workspace_fake: WorkspaceFake, registry_uri: str,
                                                      label: str) -> None:
    envs = [job_env(workspace_fake, registry_uri, gate) for gate in (False, True)]
    if registry_uri == "databricks-uc":
        envs = envs[:1]  # Unity Catalog has nothing to gate: its tests never set GUARD_GATE_TRANSITIONS
    assert mismatches(label, envs) == []


def test_the_documented_environment_check_sees_a_different_environment() -> None:
    found = mismatches("guard-job, Unity Catalog", [{"MLFLOW_TRACKING_URI": "http://127.0.0.1:5000",
                                                      "GUARD_GATE_TRANSITIONS": "true"}])
    assert any("MLFLOW_TRACKING_URI='http://127.0.0.1:5000'" in p for p in found)
    assert any("GUARD_GATE_TRANSITIONS is set by the tests but not in the documented row" in p for p in found)
    assert any("MLFLOW_REGISTRY_URI is in the documented row" in p for p in found)


def test_the_guard_called_only_implemented_endpoints(workspace_fake: WorkspaceFake) -> None:
    # Runs after the tests above in this module: every request the product made reached a real route.
    assert workspace_fake.unimplemented_requests() == []
