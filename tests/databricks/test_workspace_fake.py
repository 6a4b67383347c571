"""The unmodified MLflow and databricks-sdk clients, in production configuration, against the workspace fake.

Every flow runs in its own process with exactly ``MLFLOW_TRACKING_URI=databricks``,
``MLFLOW_REGISTRY_URI=databricks`` | ``databricks-uc``, ``DATABRICKS_HOST`` and ``DATABRICKS_TOKEN`` (plus the
S3 endpoint of Unity Catalog storage): what they prove is what MLflow's own Databricks code paths do.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Any

import boto3
import pytest
import requests
from databricks.sdk import WorkspaceClient
from databricks.sdk.core import Config
from databricks.sdk.errors import PermissionDenied

from tests.databricks.endpoint_record import (
    FIXTURE,
    TOKEN,
    UC_MODEL,
    WEBHOOK_SECRET,
    WORKSPACE_MODEL,
    run_flow,
    signature_ok,
)
from tests.support.databricks_workspace import WorkspaceFake
from tests.support.receiver import Receiver

NESTED_KERNEL = "artifacts/nested/weights/layer1/kernel.bin"


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def paths_called(recording: dict[str, Any]) -> set[tuple[str, str]]:
    return {(r["method"], r["path"]) for r in recording["requests"]}


def test_workspace_registry_flow(recordings: dict[str, dict[str, Any]]) -> None:
    rec = recordings["workspace registry"]
    r = rec["result"]
    assert r["status"] == "READY"
    assert r["source"].startswith("dbfs:/databricks/mlflow-tracking/") and "/logged_models/" in r["source"]
    assert r["download_uri"].startswith("dbfs:/databricks/mlflow-registry/")
    # MLflow's own models:/ download, the version's source and the logged model all hold the same files.
    assert r["registry_tree"] == r["source_tree"] == r["model_tree"]
    assert r["registry_tree"][NESTED_KERNEL] == r["nested_tree"]["weights/layer1/kernel.bin"]
    assert r["run_extras_tree"] == r["nested_tree"]
    assert r["tags_after_set"] == {"validation.status": "PASSED"} and r["tags_after_delete"] == {}
    assert "unsupported for models in the Workspace Model Registry" in r["alias_refused"]
    called = paths_called(rec)
    # models:/name/version from a workspace registry: list-artifacts + signed download URIs, not DBFS REST.
    assert ("GET", "/api/2.0/mlflow/model-versions/list-artifacts") in called
    assert ("GET", "/api/2.0/mlflow/model-versions/get-signed-download-uri") in called
    # Run artifacts: the Files API with presigned download URLs.
    assert ("PUT", "/api/2.0/fs/files{path}") in called and (
        "POST",
        "/api/2.0/fs/create-download-url",
    ) in called


def test_dbfs_rest_download_turns_an_empty_file_into_braces(recordings: dict[str, dict[str, Any]]) -> None:
    """MLflow's DBFS REST repository answers an empty 200 body with ``{}``: a bare ``dbfs:/`` download of the
    registry copy changes empty files, so it is not how the registry copy may be read."""
    r = recordings["workspace registry"]["result"]
    assert r["registry_tree"]["artifacts/nested/empty.txt"] == sha256(b"")
    assert r["dbfs_rest_tree"]["artifacts/nested/empty.txt"] == sha256(b"{}")
    assert {k: v for k, v in r["dbfs_rest_tree"].items() if k != "artifacts/nested/empty.txt"} == {
        k: v for k, v in r["registry_tree"].items() if k != "artifacts/nested/empty.txt"
    }


def test_registry_copy_is_separate_from_the_run(
    workspace_fake: WorkspaceFake, recordings: dict[str, dict[str, Any]]
) -> None:
    r = recordings["workspace registry"]["result"]
    # The download URI names the registry's own folder, not the run's.
    copy = workspace_fake.registry_copy(WORKSPACE_MODEL, r["version"])
    assert workspace_fake.dbfs_local(r["download_uri"]) == copy and "mlflow-registry" in copy.parts
    run_folder = workspace_fake.dbfs_local(r["source"])
    assert run_folder.is_dir() and run_folder.resolve() != copy.resolve()
    kernel = copy / NESTED_KERNEL
    original = kernel.read_bytes()
    kernel.write_bytes(bytes([original[0] ^ 0xFF]) + original[1:])
    try:
        registry = run_flow(
            workspace_fake, "databricks", "download", f"models:/{WORKSPACE_MODEL}/{r['version']}"
        )
        source = run_flow(workspace_fake, "databricks", "download", r["source"])
    finally:
        kernel.write_bytes(original)
    changed = {k for k in r["registry_tree"] if registry["tree"].get(k) != r["registry_tree"][k]}
    assert changed == {NESTED_KERNEL}
    assert source["tree"] == r["source_tree"]


def test_unity_catalog_flow(workspace_fake: WorkspaceFake, recordings: dict[str, dict[str, Any]]) -> None:
    rec = recordings["unity catalog"]
    r = rec["result"]
    assert r["status"] == "READY"
    assert r["download_uri"].startswith(f"s3://{workspace_fake.bucket}/models/")
    assert r["registry_tree"] == r["model_tree"] == r["alias_tree"]
    assert r["registry_tree"][NESTED_KERNEL] == r["nested_tree"]["weights/layer1/kernel.bin"]
    assert r["alias_version"] == r["version"]
    assert r["tags_after_set"] == {"validation.status": "PASSED"} and r["tags_after_delete"] == {}
    assert r["aliases_after_delete"] == []
    grants = [(g["name"], g["operation"]) for g in workspace_fake.state()["uc_credential_grants"]]
    assert (UC_MODEL, "MODEL_VERSION_OPERATION_READ_WRITE") in grants
    assert (UC_MODEL, "MODEL_VERSION_OPERATION_READ") in grants
    assert (
        "POST",
        "/api/2.0/mlflow/unity-catalog/model-versions/generate-temporary-credentials",
    ) in paths_called(rec)
    keys = {
        o["Key"]
        for o in s3_client(workspace_fake).list_objects_v2(
            Bucket=workspace_fake.bucket, Prefix=r["download_uri"].split("/", 3)[3]
        )["Contents"]
    }
    assert any(k.endswith("/" + NESTED_KERNEL) for k in keys)


def s3_client(fake: WorkspaceFake) -> Any:
    return boto3.client(
        "s3",
        endpoint_url=fake.s3.endpoint_url,
        region_name="us-east-1",
        aws_access_key_id="testing",
        aws_secret_access_key="testing",
    )


def test_unity_catalog_storage_change_is_seen(
    workspace_fake: WorkspaceFake, recordings: dict[str, dict[str, Any]]
) -> None:
    r = recordings["unity catalog"]["result"]
    s3 = s3_client(workspace_fake)
    key = f"{r['download_uri'].split('/', 3)[3]}/{NESTED_KERNEL}"
    original = s3.get_object(Bucket=workspace_fake.bucket, Key=key)["Body"].read()
    s3.put_object(Bucket=workspace_fake.bucket, Key=key, Body=bytes([original[0] ^ 0xFF]) + original[1:])
    try:
        got = run_flow(workspace_fake, "databricks-uc", "download", f"models:/{UC_MODEL}/{r['version']}")
    finally:
        s3.put_object(Bucket=workspace_fake.bucket, Key=key, Body=original)
    assert {k for k in r["registry_tree"] if got["tree"].get(k) != r["registry_tree"][k]} == {NESTED_KERNEL}


def test_sdk_model_registry_flow(
    workspace_fake: WorkspaceFake, fake_webhook_receiver: Receiver, recordings: dict[str, dict[str, Any]]
) -> None:
    r = recordings["databricks-sdk model_registry"]["result"]
    assert r["me"] == "workspace-user@example.com"
    assert r["open_before"] == [["REQUESTED_TRANSITION", "Staging"]]
    assert (r["rejected"], r["approved"]) == ("REJECTED_REQUEST", "APPROVED_REQUEST")
    assert r["stage_after"] == "Production" and r["open_after"] == 0
    assert r["webhook_listed"] and r["after_delete"] == []
    assert r["test_status"] == 200 and json.loads(r["test_body"])["status"] == "ignored"
    state = workspace_fake.state()
    assert any(
        c["comment"] == "validation: PASSED" and c["model_name"] == WORKSPACE_MODEL for c in state["comments"]
    )
    delivery = next(
        d for d in fake_webhook_receiver.received if json.loads(d["raw"])["webhook_id"] == r["webhook_id"]
    )
    body = json.loads(delivery["raw"])
    # The documented payload of a workspace registry webhook, signed over the raw body.
    assert set(body) == {"event", "webhook_id", "event_timestamp", "model_name", "version", "text"}
    assert body["event"] == "MODEL_VERSION_CREATED" and isinstance(body["event_timestamp"], int)
    assert signature_ok(WEBHOOK_SECRET, delivery["raw"], delivery["headers"].get("X-Databricks-Signature"))
    assert delivery["headers"].get("Authorization") == "Bearer hook-auth"


def test_readiness_probe_reaches_the_workspace(recordings: dict[str, dict[str, Any]]) -> None:
    assert recordings["readiness probe"]["result"]["status"] == 200
    assert paths_called(recordings["readiness probe"]) == {("GET", "/")}


def test_fallback_when_the_files_api_refuses(recordings: dict[str, dict[str, Any]]) -> None:
    rec = recordings["fallback when the Files API refuses"]
    r = rec["result"]
    assert {
        k.removeprefix("artifacts/nested/"): v
        for k, v in r["model_tree"].items()
        if k.startswith("artifacts/nested/")
    } == r["nested_tree"]
    called = paths_called(rec)
    assert ("POST", "/api/2.0/mlflow/logged-models/{model_id}/artifacts/credentials-for-upload") in called
    assert ("POST", "/api/2.0/mlflow/artifacts/credentials-for-write") in called


def test_every_endpoint_the_clients_call_is_implemented_and_listed(
    workspace_fake: WorkspaceFake, recordings: dict[str, dict[str, Any]]
) -> None:
    unimplemented = [
        (flow, r["method"], r["path"])
        for flow, rec in recordings.items()
        for r in rec["requests"]
        if not r["implemented"]
    ]
    assert unimplemented == []
    listed = {(e["method"], e["path"]) for e in json.loads(FIXTURE.read_text())["endpoints"]}
    called = set().union(*(paths_called(rec) for rec in recordings.values()))
    assert called - listed == set(), "regenerate with: python -m tests.databricks.endpoint_record"
    implemented = {(e["method"], e["path"]) for e in workspace_fake.endpoints()}
    assert listed - implemented == set()


def test_unknown_endpoint_is_501_and_recorded(workspace_fake: WorkspaceFake) -> None:
    resp = requests.get(
        workspace_fake.url + "/api/2.0/mlflow/not-an-endpoint",
        timeout=10,
        headers={"Authorization": f"Bearer {TOKEN}"},
    )
    assert resp.status_code == 501 and resp.json()["error_code"] == "NOT_IMPLEMENTED"
    assert {"method": "GET", "path": "/api/2.0/mlflow/not-an-endpoint"} in [
        {"method": r["method"], "path": r["path"]} for r in workspace_fake.unimplemented_requests()
    ]
    workspace_fake.clear_recorded_requests()


def test_authentication(workspace_fake: WorkspaceFake) -> None:
    url = workspace_fake.url + "/api/2.0/mlflow/comments/create"
    assert requests.post(url, json={}, timeout=10).status_code == 401
    assert (
        requests.post(url, json={}, timeout=10, headers={"Authorization": "Bearer wrong"}).status_code == 403
    )


def sdk_client(fake: WorkspaceFake) -> WorkspaceClient:
    return WorkspaceClient(
        config=Config(host=fake.url, token=TOKEN, config_file=os.devnull, retry_timeout_seconds=30)
    )


def test_injected_faults(workspace_fake: WorkspaceFake, recordings: dict[str, dict[str, Any]]) -> None:
    version = recordings["workspace registry"]["result"]["version"]
    route = "/api/2.0/mlflow/comments/create"
    reg = sdk_client(workspace_fake).model_registry
    workspace_fake.clear_recorded_requests()
    workspace_fake.inject_fault("POST", route, 503, count=2, retry_after=0)
    assert reg.create_comment(name=WORKSPACE_MODEL, version=version, comment="after 503s").comment.id
    assert [r["status"] for r in workspace_fake.recorded_requests() if r["path"] == route] == [503, 503, 200]
    workspace_fake.inject_fault("POST", route, 403)
    with pytest.raises(PermissionDenied):
        reg.create_comment(name=WORKSPACE_MODEL, version=version, comment="refused")
    workspace_fake.inject_fault("POST", route, 502, kind="html")
    workspace_fake.inject_fault("POST", route, 429, retry_after=1)
    headers = {"Authorization": f"Bearer {TOKEN}"}
    body = {"name": WORKSPACE_MODEL, "version": version, "comment": "raw"}
    html = requests.post(workspace_fake.url + route, json=body, headers=headers, timeout=10)
    assert html.status_code == 502 and html.headers["Content-Type"].startswith("text/html")
    limited = requests.post(workspace_fake.url + route, json=body, headers=headers, timeout=10)
    assert limited.status_code == 429 and limited.headers["Retry-After"] == "1"
    assert (
        requests.post(workspace_fake.url + route, json=body, headers=headers, timeout=10).status_code == 200
    )
    comments = [c["comment"] for c in workspace_fake.state()["comments"]]
    assert "after 503s" in comments and "refused" not in comments
    workspace_fake.clear_recorded_requests()


def test_fixture_lists_the_flows_of_every_endpoint() -> None:
    rows = json.loads(Path(FIXTURE).read_text())["endpoints"]
    assert rows and all(r["flows"] and r["implemented"] for r in rows)
