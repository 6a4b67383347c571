"""DatabricksAdapter on the workspace fake, built as the product builds it: ``Settings.from_env()`` in
production configuration (``MLFLOW_TRACKING_URI=databricks``, ``MLFLOW_REGISTRY_URI=databricks`` |
``databricks-uc``, ``DATABRICKS_HOST``, ``DATABRICKS_TOKEN``), then ``get_adapter``; the worker's pipeline
runs in process through the unmodified MLflow and databricks-sdk clients."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import pytest

from core.errors import CheckError, NotFoundError, TransientError
from core.seal.digest import Manifest
from core.status import FAILED, PASSED
from listener.config import Settings
from listener.protocol import ValidationRequest
from listener.registries import get_adapter
from listener.registries.databricks import (
    COMMENT_MARKER,
    DatabricksAdapter,
    render_databricks_comment,
    sdk_error,
)
from listener.verdict import Verdict
from listener.worker.job import run_validation
from tests.databricks.endpoint_record import UC_MODEL
from tests.support.databricks_fixtures import NESTED_KERNEL, activities, new_workspace_version
from tests.support.databricks_workspace import WorkspaceFake
from tests.support.procs import free_port

COMMENTS = "/api/2.0/mlflow/comments/create"
APPROVE = "/api/2.0/mlflow/transition-requests/approve"


def production_settings(monkeypatch: pytest.MonkeyPatch, tmp_path: Path, **env: str) -> Settings:
    """Settings as the listener reads them, with the guard's own variables ``env`` on top of dbx_env's."""
    monkeypatch.setenv("GUARD_DATA_DIR", str(tmp_path / "guard"))
    monkeypatch.setenv("GUARD_GATE_TRANSITIONS", "true")
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    return Settings.from_env()


@pytest.fixture
def settings(dbx_env: dict[str, str], monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Settings:
    return production_settings(monkeypatch, tmp_path)


def request(model: str, version: str, trigger: str, *, to_stage: str | None = None,
            gate: bool = False) -> ValidationRequest:
    action = "seal_and_check" if trigger == "MODEL_VERSION_CREATED" else "check"
    return ValidationRequest(registry="databricks", model=model, version=version, trigger=trigger,
                             action=action, to_stage=to_stage, alias=None, gate=gate,
                             delivery_key=f"databricks:{model}:{version}:{trigger}:{time.time()}",
                             received_at=time.time())


def comments(fake: WorkspaceFake, model: str, version: str) -> list[str]:
    """Every comment on the version (ours or anyone's)."""
    return [c["comment"] for c in fake.state()["comments"]
            if c["model_name"] == model and c["version"] == str(version)]


def is_own_comment(text: str) -> bool:
    return text.splitlines()[0] == COMMENT_MARKER


def differing_paths(verdict: Verdict) -> list[str]:
    return [d["path"] for d in [*verdict.differences, *verdict.seal_differences]]


def test_settings_build_the_workspace_registry_adapter(settings: Settings) -> None:
    adapter = get_adapter("databricks", settings)
    assert isinstance(adapter, DatabricksAdapter) and not adapter.unity_catalog
    assert (settings.tracking_uri, settings.registry_uri, settings.registry_kind) == \
        ("databricks", "databricks", "databricks")


def test_created_then_gated_requests(workspace_fake: WorkspaceFake, recordings: dict[str, Any],
                                     settings: Settings) -> None:
    model = "adapter-gate"
    v = new_workspace_version(workspace_fake, recordings, model)
    adapter = get_adapter("databricks", settings)

    # Creation: sealed and checked against the registry's own copy -> PASSED comment and tags.
    verdict = run_validation(request(model, v, "MODEL_VERSION_CREATED"), settings, adapter=adapter)
    assert verdict.status == PASSED, verdict
    adapter.publish(verdict)
    [text] = comments(workspace_fake, model, v)
    assert is_own_comment(text)
    assert "Validation PASSED" in text and verdict.seal_digest in text
    tags = adapter.read_version(model, v).tags
    assert tags["validation.status"] == PASSED
    assert Manifest.from_json(tags["validation.manifest"]).tree_digest == verdict.seal_digest

    # Untampered transition request, gating on -> approved with the comment, version moves.
    reg = adapter.workspace.model_registry
    reg.create_transition_request(name=model, version=v, stage="Staging")
    verdict = run_validation(request(model, v, "TRANSITION_REQUEST_CREATED", to_stage="Staging", gate=True),
                             settings, adapter=adapter)
    assert verdict.status == PASSED, verdict
    adapter.publish(verdict)
    assert adapter.read_version(model, v).current_stage == "Staging"
    approved = activities(workspace_fake, model, v)[-1]
    assert approved["activity_type"] == "APPROVED_REQUEST" and is_own_comment(approved["comment"])
    assert reg.list_transition_requests(name=model, version=v) == []

    # Tamper with the registry's copy; a request to Production is rejected, naming the file.
    (workspace_fake.registry_copy(model, v) / NESTED_KERNEL).write_bytes(b"tampered")
    reg.create_transition_request(name=model, version=v, stage="Production")
    verdict = run_validation(request(model, v, "TRANSITION_REQUEST_TO_PRODUCTION_CREATED",
                                     to_stage="production", gate=True), settings, adapter=adapter)
    assert verdict.status == FAILED and NESTED_KERNEL in differing_paths(verdict), verdict
    adapter.publish(verdict)
    rejected = activities(workspace_fake, model, v)[-1]
    assert rejected["activity_type"] == "REJECTED_REQUEST" and rejected["to_stage"] == "Production"
    assert NESTED_KERNEL in rejected["comment"] and "Validation FAILED" in rejected["comment"]
    assert adapter.read_version(model, v).current_stage == "Staging"
    last = comments(workspace_fake, model, v)[-1]
    assert "Validation FAILED" in last and NESTED_KERNEL in last
    assert adapter.read_version(model, v).tags["validation.status"] == FAILED
    assert len(comments(workspace_fake, model, v)) == 3  # one per validation


def test_gating_off_comments_only(workspace_fake: WorkspaceFake, recordings: dict[str, Any],
                                  dbx_env: dict[str, str], monkeypatch: pytest.MonkeyPatch,
                                  tmp_path: Path) -> None:
    model = "adapter-nogate"
    v = new_workspace_version(workspace_fake, recordings, model)
    settings = production_settings(monkeypatch, tmp_path, GUARD_GATE_TRANSITIONS="false")
    adapter = get_adapter("databricks", settings)
    adapter.workspace.model_registry.create_transition_request(name=model, version=v, stage="Staging")
    verdict = run_validation(request(model, v, "TRANSITION_REQUEST_CREATED", to_stage="Staging", gate=True),
                             settings, adapter=adapter)
    adapter.publish(verdict)
    assert len(comments(workspace_fake, model, v)) == 1
    assert [r.to_stage for r in adapter.workspace.model_registry.list_transition_requests(
        name=model, version=v)] == ["Staging"]
    assert activities(workspace_fake, model, v, "APPROVED_REQUEST") == []
    assert activities(workspace_fake, model, v, "REJECTED_REQUEST") == []


def _verdict(model: str, version: str, status: str = PASSED, **kw: Any) -> Verdict:
    return Verdict(status=status, model=model, version=version, registry="databricks",
                   trigger="TRANSITION_REQUEST_CREATED", summary="identical", to_stage="Staging", gate=True,
                   delivery_key=f"databricks:{model}:{version}:{time.time()}", **kw)


def test_transient_failures_retry_without_duplicate_comments(workspace_fake: WorkspaceFake,
                                                             recordings: dict[str, Any],
                                                             dbx_env: dict[str, str],
                                                             monkeypatch: pytest.MonkeyPatch,
                                                             tmp_path: Path) -> None:
    model = "adapter-retry"
    v = new_workspace_version(workspace_fake, recordings, model)
    settings = production_settings(monkeypatch, tmp_path, GUARD_DATABRICKS_RETRY_TIMEOUT="1")
    adapter = get_adapter("databricks", settings)
    adapter.workspace.model_registry.create_transition_request(name=model, version=v, stage="Staging")
    verdict = _verdict(model, v)

    # The workspace keeps answering 503: the SDK gives up after its retry timeout, the job retries later.
    workspace_fake.inject_fault("POST", COMMENTS, 503, count=50, retry_after=0)
    try:
        with pytest.raises(TransientError):
            adapter.publish(verdict)
    finally:
        workspace_fake.clear_faults()
    assert comments(workspace_fake, model, v) == []

    workspace_fake.inject_fault("POST", APPROVE, 500, count=1)
    try:
        with pytest.raises(TransientError):
            adapter.publish(verdict)  # comment posted, approval failed
    finally:
        workspace_fake.clear_faults()
    adapter.publish(verdict)      # the retry approves without a second comment
    assert len(comments(workspace_fake, model, v)) == 1
    assert activities(workspace_fake, model, v)[-1]["activity_type"] == "APPROVED_REQUEST"
    # Publishing the same verdict again changes nothing; the request is no longer open.
    adapter.publish(verdict)
    assert len(comments(workspace_fake, model, v)) == 1
    assert len(activities(workspace_fake, model, v, "APPROVED_REQUEST")) == 1


def test_error_verdict_rejects_the_request(workspace_fake: WorkspaceFake, recordings: dict[str, Any],
                                           settings: Settings) -> None:
    model = "adapter-error"
    v = new_workspace_version(workspace_fake, recordings, model)
    adapter = get_adapter("databricks", settings)
    adapter.workspace.model_registry.create_transition_request(name=model, version=v, stage="Production")
    verdict = Verdict.error_verdict(model=model, version=v, registry="databricks",
                                    trigger="TRANSITION_REQUEST_CREATED", reason="artifact store unreachable",
                                    to_stage="Production", gate=True, delivery_key=f"k-{time.time()}")
    adapter.publish(verdict)
    rejected = activities(workspace_fake, model, v)[-1]
    assert rejected["activity_type"] == "REJECTED_REQUEST"
    assert "Validation ERROR" in rejected["comment"] and "artifact store unreachable" in rejected["comment"]
    assert adapter.read_version(model, v).current_stage == "None"


def test_permanent_errors_are_not_retried(workspace_fake: WorkspaceFake, dbx_env: dict[str, str],
                                          monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    settings = production_settings(monkeypatch, tmp_path, DATABRICKS_TOKEN="wrong-token-value")
    adapter = get_adapter("databricks", settings)
    workspace_fake.clear_recorded_requests()
    with pytest.raises(CheckError) as info:
        adapter.publish(_verdict("no-such-model", "1"))
    assert not isinstance(info.value, TransientError)
    assert "wrong-token-value" not in str(info.value)
    # Refused once (403), not asked again.
    assert [r["status"] for r in workspace_fake.recorded_requests()
            if r["path"].startswith("/api/2.0/mlflow/")] == [403]


def test_unreachable_workspace_is_transient(dbx_env: dict[str, str], monkeypatch: pytest.MonkeyPatch,
                                            tmp_path: Path) -> None:
    settings = production_settings(monkeypatch, tmp_path, DATABRICKS_HOST=f"http://127.0.0.1:{free_port()}",
                                   GUARD_DATABRICKS_RETRY_TIMEOUT="1")
    with pytest.raises(TransientError):
        get_adapter("databricks", settings).publish(_verdict("m", "1"))


def test_tags_fit_the_workspace_limit_and_comment_is_marked() -> None:
    files = {f"dir/file-{i:05d}.bin": [i, "ab" * 32] for i in range(400)}
    from core.compare.tree import FileDigest
    from core.seal.manifest import Manifest as M

    big = M.build({p: FileDigest(s, h) for p, (s, h) in files.items()})
    diffs = [{"path": f"dir/\u00e9-{i}", "kind": "changed", "detail": {}} for i in range(300)]
    verdict = _verdict("m", "1", status=FAILED, differences=diffs, new_seal_json=big.to_compact_json(),
                       seal_digest=big.tree_digest)
    adapter = DatabricksAdapter.__new__(DatabricksAdapter)
    adapter.tag_limit = 5000
    tags = adapter.render_tags(verdict)
    assert all(len(v.encode()) <= 5000 for v in tags.values())
    assert Manifest.from_json(tags["validation.manifest"]).tree_digest == big.tree_digest
    assert json.loads(tags["validation.report"])["differences_total"] == 300
    text = render_databricks_comment(verdict)
    assert is_own_comment(text) and len(text) <= 65535 and "dir/\u00e9-0" in text
    assert not is_own_comment("Validation PASSED: someone pasting our words")


def test_unity_catalog_gets_tags_and_description(workspace_fake: WorkspaceFake, recordings: dict[str, Any],
                                                 dbx_env: dict[str, str], monkeypatch: pytest.MonkeyPatch,
                                                 tmp_path: Path) -> None:
    v = str(recordings["unity catalog"]["result"]["version"])
    settings = production_settings(monkeypatch, tmp_path, MLFLOW_REGISTRY_URI="databricks-uc")
    adapter = get_adapter("databricks", settings)
    assert isinstance(adapter, DatabricksAdapter) and adapter.unity_catalog and adapter.tag_limit == 1000
    adapter.client.update_model_version(UC_MODEL, v, description="Owner's notes.")
    verdict = run_validation(request(UC_MODEL, v, "MODEL_VERSION_CREATED"), settings, adapter=adapter)
    assert verdict.status == PASSED, verdict
    adapter.publish(verdict)
    mv = adapter.read_version(UC_MODEL, v)
    assert mv.tags["validation.status"] == PASSED
    assert all(len(value) <= 1000 for value in mv.tags.values())
    assert mv.description.endswith("\n\nOwner's notes.") and "<!-- validation:start -->" in mv.description
    assert mv.description.split(" ", 1)[0] == PASSED  # the verdict comes first
    assert comments(workspace_fake, UC_MODEL, v) == []  # no comments API for Unity Catalog models
    assert workspace_fake.state()["uc_versions"][UC_MODEL][v]["_tags"]["validation.status"] == PASSED


@pytest.mark.parametrize(("exc", "kind"), [
    ("TooManyRequests", TransientError), ("TemporarilyUnavailable", TransientError),
    ("InternalError", TransientError), ("DeadlineExceeded", TransientError),
    ("PermissionDenied", CheckError), ("Unauthenticated", CheckError), ("InvalidParameterValue", CheckError),
    ("NotFound", NotFoundError),
])
def test_sdk_errors_are_classified(exc: str, kind: type) -> None:
    from databricks.sdk import errors as dbx

    err = sdk_error(getattr(dbx, exc)("boom"), "publishing")
    assert type(err) is kind and str(err).startswith("publishing: ") and str(err).endswith("boom")


def test_network_errors_are_transient() -> None:
    import requests
    from databricks.sdk.errors import DatabricksError

    assert isinstance(sdk_error(requests.ConnectionError("refused"), "x"), TransientError)
    assert isinstance(sdk_error(TimeoutError("Timed out after 0:00:30"), "x"), TransientError)
    assert isinstance(sdk_error(DatabricksError("upstream connection refused"), "x"), TransientError)
    assert not isinstance(sdk_error(DatabricksError("unsupported thing"), "x"), TransientError)


def test_tag_limit_and_links_per_registry_kind(tmp_path: Path) -> None:
    from listener.registries import version_url

    workspace = Settings(tracking_uri="databricks", registry_uri="databricks", data_dir=tmp_path,
                         databricks_host="adb-1.azuredatabricks.net", registry_kind="databricks")
    uc = Settings(tracking_uri="databricks", registry_uri="databricks-uc", data_dir=tmp_path,
                  databricks_host="https://adb-1.azuredatabricks.net", registry_kind="databricks")
    assert DatabricksAdapter(workspace).tag_limit == 5000
    assert DatabricksAdapter(uc).tag_limit == 1000
    assert DatabricksAdapter(uc).unity_catalog and not DatabricksAdapter(workspace).unity_catalog
    assert version_url(workspace, "databricks", "churn", "3") == \
        "https://adb-1.azuredatabricks.net/#mlflow/models/churn/versions/3"
    assert version_url(uc, "databricks", "main.ml.churn", "3") == \
        "https://adb-1.azuredatabricks.net/explore/data/models/main/ml/churn/version/3"
