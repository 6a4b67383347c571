"""Client flows against a Databricks workspace, through the unmodified MLflow and databricks-sdk clients.

Run as its own process with exactly the production environment (``MLFLOW_TRACKING_URI=databricks``,
``MLFLOW_REGISTRY_URI``, ``DATABRICKS_HOST``, ``DATABRICKS_TOKEN``; for Unity Catalog also the S3 endpoint
of its storage): ``python tests/databricks/client_flows.py FLOW [ARGS...]``. Each flow prints one JSON
object on its last stdout line. It imports nothing of this project, so what it proves is the clients'.
"""

from __future__ import annotations

import hashlib
import json
import os
import sys
import tempfile
from pathlib import Path
from typing import Any

NESTED = {
    "weights/layer1/kernel.bin": os.urandom(3000),
    "weights/layer1/bias.bin": b"\x00\x01" * 10,
    "weights/vocab.txt": b"a\nb\nc\n",
    "empty.txt": b"",
}


def tree_digest(root: str | Path) -> dict[str, str]:
    """SHA-256 of every file under ``root``, by relative path (``registered_model_meta`` left out)."""
    root = Path(root)
    return {
        str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(root.rglob("*"))
        if p.is_file() and p.name != "registered_model_meta"
    }


def _model_dir(work: Path) -> Path:
    src = work / "nested"
    for rel, data in NESTED.items():
        (src / rel).parent.mkdir(parents=True, exist_ok=True)
        (src / rel).write_bytes(data)
    return src


def log_model(experiment: str) -> dict[str, Any]:
    """A small pyfunc model with nested folders in a run, plus the same folder as plain run artifacts."""
    import mlflow
    import mlflow.pyfunc
    from mlflow.models import ModelSignature
    from mlflow.types import ColSpec, Schema

    class Echo(mlflow.pyfunc.PythonModel):
        def predict(self, context, model_input, params=None):
            return model_input

    work = Path(tempfile.mkdtemp())
    src = _model_dir(work)
    mlflow.set_experiment(experiment)
    signature = ModelSignature(
        inputs=Schema([ColSpec("double", "x")]), outputs=Schema([ColSpec("double", "x")])
    )
    with mlflow.start_run() as run:
        info = mlflow.pyfunc.log_model(
            name="model",
            python_model=Echo(),
            artifacts={"nested": str(src)},
            signature=signature,
            pip_requirements=["mlflow"],
        )
        mlflow.log_artifacts(str(src), "extras")
    local = mlflow.artifacts.download_artifacts(artifact_uri=info.model_uri, dst_path=str(work / "logged"))
    return {
        "run_id": run.info.run_id,
        "model_uri": info.model_uri,
        "model_id": info.model_id,
        "artifact_uri": run.info.artifact_uri,
        "model_tree": tree_digest(local),
        "nested_tree": tree_digest(src),
    }


def workspace(experiment: str, name: str) -> dict[str, Any]:
    """Workspace registry: log, register, read, download ``models:/``, run artifacts, tags, aliases."""
    import mlflow
    from mlflow import MlflowClient

    logged = log_model(experiment)
    mv = mlflow.register_model(logged["model_uri"], name, await_registration_for=30)
    client = MlflowClient()
    got = client.get_model_version(name, mv.version)
    download_uri = client.get_model_version_download_uri(name, mv.version)
    work = Path(tempfile.mkdtemp())
    registry_copy = mlflow.artifacts.download_artifacts(
        f"models:/{name}/{mv.version}", dst_path=str(work / "reg")
    )
    source_copy = mlflow.artifacts.download_artifacts(artifact_uri=got.source, dst_path=str(work / "src"))
    run_extras = mlflow.artifacts.download_artifacts(
        run_id=logged["run_id"], artifact_path="extras", dst_path=str(work / "run")
    )
    dbfs_rest = mlflow.artifacts.download_artifacts(artifact_uri=download_uri, dst_path=str(work / "dbfs"))
    client.set_model_version_tag(name, mv.version, "validation.status", "PASSED")
    tags_after_set = dict(client.get_model_version(name, mv.version).tags)
    client.delete_model_version_tag(name, mv.version, "validation.status")
    try:  # MLflow refuses aliases on the workspace registry itself, before any request
        client.set_registered_model_alias(name, "champion", mv.version)
        alias_refused = ""
    except Exception as exc:
        alias_refused = str(exc)
    return {
        **logged,
        "version": str(mv.version),
        "status": got.status,
        "source": got.source,
        "download_uri": download_uri,
        "registry_tree": tree_digest(registry_copy),
        "source_tree": tree_digest(source_copy),
        "run_extras_tree": tree_digest(run_extras),
        "dbfs_rest_tree": tree_digest(dbfs_rest),
        "alias_refused": alias_refused,
        "tags_after_set": tags_after_set,
        "tags_after_delete": dict(client.get_model_version(name, mv.version).tags),
    }


def download(uri: str) -> dict[str, Any]:
    """Download one URI the way MLflow does for the configured registry; its tree."""
    import mlflow

    return {"tree": tree_digest(mlflow.artifacts.download_artifacts(uri, dst_path=tempfile.mkdtemp()))}


def unity_catalog(experiment: str, name: str) -> dict[str, Any]:
    """Unity Catalog: log, register (upload with temporary credentials), read, download, tags, aliases."""
    import mlflow
    from mlflow import MlflowClient

    logged = log_model(experiment)
    mv = mlflow.register_model(logged["model_uri"], name)
    client = MlflowClient()
    got = client.get_model_version(name, mv.version)
    client.set_model_version_tag(name, mv.version, "validation.status", "PASSED")
    client.set_registered_model_alias(name, "champion", mv.version)
    tags_after_set = dict(client.get_model_version(name, mv.version).tags)
    by_alias = client.get_model_version_by_alias(name, "champion")
    via_alias = mlflow.artifacts.download_artifacts(f"models:/{name}@champion", dst_path=tempfile.mkdtemp())
    client.delete_model_version_tag(name, mv.version, "validation.status")
    client.delete_registered_model_alias(name, "champion")
    registry_copy = mlflow.artifacts.download_artifacts(
        f"models:/{name}/{mv.version}", dst_path=tempfile.mkdtemp()
    )
    return {
        **logged,
        "version": str(mv.version),
        "status": got.status,
        "source": got.source,
        "download_uri": client.get_model_version_download_uri(name, mv.version),
        "registry_tree": tree_digest(registry_copy),
        "alias_tree": tree_digest(via_alias),
        "alias_version": str(by_alias.version),
        "tags_after_set": tags_after_set,
        "tags_after_delete": dict(client.get_model_version(name, mv.version).tags),
        "aliases_after_delete": list(client.get_registered_model(name).aliases),
    }


def sdk(name: str, version: str, webhook_url: str, secret: str) -> dict[str, Any]:
    """databricks-sdk ``WorkspaceClient().model_registry`` with unified auth from the environment."""
    from databricks.sdk import WorkspaceClient
    from databricks.sdk.service.ml import HttpUrlSpec, RegistryWebhookEvent

    w = WorkspaceClient()
    reg = w.model_registry
    me = w.current_user.me().user_name
    comment = reg.create_comment(name=name, version=version, comment="validation: PASSED").comment
    reg.create_transition_request(name=name, version=version, stage="Staging", comment="please")
    open_before = [
        (r.activity_type.value, r.to_stage) for r in reg.list_transition_requests(name=name, version=version)
    ]
    rejected = reg.reject_transition_request(
        name=name, version=version, stage="Staging", comment="no"
    ).activity
    reg.create_transition_request(name=name, version=version, stage="Production")
    approved = reg.approve_transition_request(
        name=name, version=version, stage="Production", archive_existing_versions=False, comment="yes"
    ).activity
    hook = reg.create_webhook(
        events=[RegistryWebhookEvent.MODEL_VERSION_CREATED],
        model_name=name,
        http_url_spec=HttpUrlSpec(url=webhook_url, secret=secret, authorization="Bearer hook-auth"),
        description="guard",
    ).webhook
    tested = reg.test_registry_webhook(id=hook.id, event=RegistryWebhookEvent.MODEL_VERSION_CREATED)
    listed = [h.id for h in reg.list_webhooks(model_name=name)]
    reg.delete_webhook(id=hook.id)
    return {
        "me": me,
        "comment_id": comment.id,
        "open_before": open_before,
        "rejected": rejected.activity_type.value,
        "approved": approved.activity_type.value,
        "stage_after": reg.get_model_version(name=name, version=version).model_version.current_stage,
        "open_after": len(list(reg.list_transition_requests(name=name, version=version))),
        "webhook_id": hook.id,
        "webhook_listed": hook.id in listed,
        "test_status": tested.status_code,
        "test_body": tested.body,
        "after_delete": [h.id for h in reg.list_webhooks(model_name=name)],
    }


FLOWS = {
    "workspace": workspace,
    "unity-catalog": unity_catalog,
    "download": download,
    "sdk": sdk,
    "log-model": log_model,
}


def main() -> None:
    flow, args = sys.argv[1], sys.argv[2:]
    print(json.dumps(FLOWS[flow](*args)))


if __name__ == "__main__":
    main()
