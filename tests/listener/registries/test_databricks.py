"""DatabricksAdapter against the workspace stand-in: the worker's pipeline in-process, the real SDK client."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest
from mlflow import MlflowClient

from core.errors import CheckError, NotFoundError, TransientError
from core.seal import Manifest
from listener.config import Settings
from listener.protocol import ValidationRequest
from listener.registries.databricks import (
    COMMENT_MARKER,
    DatabricksAdapter,
    render_databricks_comment,
    sdk_error,
)
from listener.verdict import FAILED, PASSED, Verdict
from listener.worker.job import run_validation
from tests.support.databricks_fixtures import NESTED_FILE, register_model
from tests.support.databricks_standin import DatabricksStandIn


@pytest.fixture
def settings(standin: DatabricksStandIn, dbx_env: dict[str, str], tmp_path: Path) -> Settings:
    return Settings(tracking_uri=standin.url, data_dir=tmp_path / "guard", gate_transitions=True,
                    registry_kind="databricks")


def request(model: str, version: str, trigger: str, *, to_stage: str | None = None,
            gate: bool = False) -> ValidationRequest:
    action = "seal_and_check" if trigger == "MODEL_VERSION_CREATED" else "check"
    return ValidationRequest(registry="databricks", model=model, version=version, trigger=trigger,
                             action=action, to_stage=to_stage, alias=None, gate=gate,
                             delivery_key=f"databricks:{model}:{version}:{trigger}:{time.time()}",
                             received_at=time.time())


def comments(standin: DatabricksStandIn, model: str, version: str) -> list[str]:
    return [c["comment"] for c in standin.state()["comments"]
            if c["model_name"] == model and c["version"] == version]


def is_own_comment(text: str) -> bool:
    return text.splitlines()[0] == COMMENT_MARKER


def differing_paths(verdict: Verdict) -> list[str]:
    return [d["path"] for d in [*verdict.differences, *verdict.seal_differences]]


def activities(standin: DatabricksStandIn, model: str, version: str) -> list[dict]:
    return [a for a in standin.state()["activities"] if a["model_name"] == model and a["version"] == version]


def test_created_then_gated_requests(standin: DatabricksStandIn, settings: Settings, tmp_path: Path) -> None:
    model = "adapter-gate"
    v = register_model(standin.url, model, tmp_path)
    adapter = DatabricksAdapter(settings)
    client = MlflowClient(tracking_uri=standin.url)

    # Creation: sealed and checked against the registry's own copy -> PASSED comment and tags.
    verdict = run_validation(request(model, v, "MODEL_VERSION_CREATED"), settings, adapter=adapter)
    assert verdict.status == PASSED, verdict
    adapter.publish(verdict)
    [text] = comments(standin, model, v)
    assert text.splitlines()[0] == COMMENT_MARKER and is_own_comment(text)
    assert "Validation PASSED" in text and verdict.seal_digest in text
    tags = client.get_model_version(model, v).tags
    assert tags["validation.status"] == PASSED
    assert Manifest.from_json(tags["validation.manifest"]).tree_digest == verdict.seal_digest

    # Untampered transition request, gating on -> approved with the comment, version moves.
    reg = adapter.workspace.model_registry
    reg.create_transition_request(name=model, version=v, stage="Staging")
    verdict = run_validation(request(model, v, "TRANSITION_REQUEST_CREATED", to_stage="Staging", gate=True),
                             settings, adapter=adapter)
    assert verdict.status == PASSED, verdict
    adapter.publish(verdict)
    assert client.get_model_version(model, v).current_stage == "Staging"
    approved = activities(standin, model, v)[-1]
    assert approved["activity_type"] == "APPROVED_REQUEST" and is_own_comment(approved["comment"])
    assert reg.list_transition_requests(name=model, version=v) == []

    # Tamper with the registry's copy; a request to Production is rejected, naming the file.
    copy = standin.registry_copy(model, v)
    (copy / NESTED_FILE).write_bytes(b"tampered")
    reg.create_transition_request(name=model, version=v, stage="Production")
    verdict = run_validation(request(model, v, "TRANSITION_REQUEST_TO_PRODUCTION_CREATED",
                                     to_stage="production", gate=True), settings, adapter=adapter)
    assert verdict.status == FAILED and NESTED_FILE in differing_paths(verdict), verdict
    adapter.publish(verdict)
    rejected = activities(standin, model, v)[-1]
    assert rejected["activity_type"] == "REJECTED_REQUEST" and rejected["to_stage"] == "Production"
    assert NESTED_FILE in rejected["comment"] and "Validation FAILED" in rejected["comment"]
    assert client.get_model_version(model, v).current_stage == "Staging"
    last = comments(standin, model, v)[-1]
    assert "Validation FAILED" in last and NESTED_FILE in last
    assert client.get_model_version(model, v).tags["validation.status"] == FAILED
    assert len(comments(standin, model, v)) == 3  # one per validation


def test_gating_off_comments_only(standin: DatabricksStandIn, settings: Settings, tmp_path: Path) -> None:
    model = "adapter-nogate"
    v = register_model(standin.url, model, tmp_path)
    settings.gate_transitions = False
    adapter = DatabricksAdapter(settings)
    adapter.workspace.model_registry.create_transition_request(name=model, version=v, stage="Staging")
    verdict = run_validation(request(model, v, "TRANSITION_REQUEST_CREATED", to_stage="Staging", gate=True),
                             settings, adapter=adapter)
    adapter.publish(verdict)
    assert len(comments(standin, model, v)) == 1
    assert [r.to_stage for r in adapter.workspace.model_registry.list_transition_requests(
        name=model, version=v)] == ["Staging"]


def _verdict(model: str, version: str, status: str = PASSED, **kw) -> Verdict:
    return Verdict(status=status, model=model, version=version, registry="databricks",
                   trigger="TRANSITION_REQUEST_CREATED", summary="identical", to_stage="Staging", gate=True,
                   delivery_key=f"databricks:{model}:{version}:{time.time()}", **kw)


def test_transient_failures_retry_without_duplicate_comments(standin: DatabricksStandIn, settings: Settings,
                                                             tmp_path: Path,
                                                             monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("GUARD_DATABRICKS_RETRY_TIMEOUT", "1")
    model = "adapter-retry"
    v = register_model(standin.url, model, tmp_path)
    adapter = DatabricksAdapter(settings)
    adapter.workspace.model_registry.create_transition_request(name=model, version=v, stage="Staging")
    verdict = _verdict(model, v)

    standin.inject_fault("/api/2.0/mlflow/comments/create", 503, count=50)
    with pytest.raises(TransientError):
        adapter.publish(verdict)
    assert comments(standin, model, v) == []
    standin.clear_faults()

    standin.inject_fault("/api/2.0/mlflow/transition-requests/approve", 500, count=1)
    with pytest.raises(TransientError):
        adapter.publish(verdict)  # comment posted, approval failed
    adapter.publish(verdict)      # the retry approves without a second comment
    assert len(comments(standin, model, v)) == 1
    assert activities(standin, model, v)[-1]["activity_type"] == "APPROVED_REQUEST"
    # Publishing the same verdict again changes nothing; the request is no longer open.
    adapter.publish(verdict)
    assert len(comments(standin, model, v)) == 1


def test_error_verdict_rejects_the_request(standin: DatabricksStandIn, settings: Settings,
                                           tmp_path: Path) -> None:
    model = "adapter-error"
    v = register_model(standin.url, model, tmp_path)
    adapter = DatabricksAdapter(settings)
    adapter.workspace.model_registry.create_transition_request(name=model, version=v, stage="Production")
    verdict = Verdict.error_verdict(model=model, version=v, registry="databricks",
                                    trigger="TRANSITION_REQUEST_CREATED", reason="artifact store unreachable",
                                    to_stage="Production", gate=True, delivery_key=f"k-{time.time()}")
    adapter.publish(verdict)
    rejected = activities(standin, model, v)[-1]
    assert rejected["activity_type"] == "REJECTED_REQUEST"
    assert "Validation ERROR" in rejected["comment"] and "artifact store unreachable" in rejected["comment"]


def test_permanent_errors_are_not_retried(standin: DatabricksStandIn, settings: Settings,
                                          monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DATABRICKS_TOKEN", "wrong-token-value")
    adapter = DatabricksAdapter(settings)
    with pytest.raises(CheckError) as info:
        adapter.publish(_verdict("no-such-model", "1"))
    assert not isinstance(info.value, TransientError)
    assert "wrong-token-value" not in str(info.value)


def test_unreachable_workspace_is_transient(settings: Settings, monkeypatch: pytest.MonkeyPatch) -> None:
    from tests.support.procs import free_port

    monkeypatch.setenv("DATABRICKS_HOST", f"http://127.0.0.1:{free_port()}")
    settings.databricks_retry_timeout_s = 1
    with pytest.raises(TransientError):
        DatabricksAdapter(settings).publish(_verdict("m", "1"))


def test_tags_fit_the_workspace_limit_and_comment_is_marked() -> None:
    files = {f"dir/file-{i:05d}.bin": [i, "ab" * 32] for i in range(400)}
    from core.manifest import Manifest as M
    from core.tree import FileDigest

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


def test_unity_catalog_gets_tags_and_description(standin: DatabricksStandIn, settings: Settings,
                                                 tmp_path: Path) -> None:
    model = "main.ml.adapter_uc"
    v = register_model(standin.url, model, tmp_path)
    client = MlflowClient(tracking_uri=standin.url)
    client.update_model_version(model, v, description="Owner's notes.")
    adapter = DatabricksAdapter(settings, unity_catalog=True)
    verdict = run_validation(request(model, v, "MODEL_VERSION_CREATED"), settings, adapter=adapter)
    adapter.publish(verdict)
    mv = client.get_model_version(model, v)
    assert mv.tags["validation.status"] == PASSED
    assert mv.description.endswith("\n\nOwner's notes.") and "<!-- validation:start -->" in mv.description
    assert mv.description.split(" ", 1)[0] in ("PASSED", "FAILED", "ERROR")  # the verdict comes first
    assert comments(standin, model, v) == []  # no comments API for Unity Catalog models
    assert DatabricksAdapter(Settings(tracking_uri="databricks", registry_uri="databricks-uc",
                                      data_dir=tmp_path), client=client).unity_catalog


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
    assert version_url(workspace, "databricks", "churn", "3") == \
        "https://adb-1.azuredatabricks.net/#mlflow/models/churn/versions/3"
    assert version_url(uc, "databricks", "main.ml.churn", "3") == \
        "https://adb-1.azuredatabricks.net/explore/data/models/main/ml/churn/version/3"
