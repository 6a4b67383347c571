"""The workspace model registry: the backend's registry plus what a workspace adds to it.

- Each new version gets the registry's OWN copy of its files under ``dbfs:/databricks/mlflow-registry/
  <id>/models/<name>`` (Databricks copies them too); the version is ``PENDING_REGISTRATION`` until the
  copy is complete. ``get-download-uri`` answers with that copy, and the copy is read the way MLflow
  reads ``models:/name/version`` from a workspace: ``model-versions/list-artifacts`` +
  ``get-signed-download-uri``.
- Tag values are limited to 5,000 bytes, as on a workspace.
- Version events fire the registry webhooks (``MODEL_VERSION_CREATED``, ``MODEL_VERSION_TAG_SET``, ...).
"""

from __future__ import annotations

import json
import posixpath
import shutil
import sys
import threading
import time
import uuid
from typing import Any

from flask import Response, request

from tests.support.databricks_workspace.backend import Backend
from tests.support.databricks_workspace.collaboration import Collaboration, need_stage
from tests.support.databricks_workspace.routing import ApiError, Router, body_json, json_response, need
from tests.support.databricks_workspace.storage import REGISTRY_PREFIX, Dbfs, dbfs_path_of
from tests.support.databricks_workspace.tracking import workspace_paths
from tests.support.databricks_workspace.webhooks import Webhooks

TAG_VALUE_LIMIT_BYTES = 5000


class WorkspaceRegistry:
    """Registry copies, registration status and the intercepted registry endpoints."""

    def __init__(
        self,
        backend: Backend,
        dbfs: Dbfs,
        webhooks: Webhooks,
        collaboration: Collaboration,
        registration_delay_s: float,
    ) -> None:
        self.backend, self.dbfs, self.webhooks, self.collab = backend, dbfs, webhooks, collaboration
        self.delay_s = registration_delay_s
        self.lock = threading.Lock()
        self.copies: dict[str, str] = {}  # "name/version" -> dbfs:/ URI of the registry's copy
        self.registering: dict[str, str] = {}  # "name/version" -> PENDING_REGISTRATION | FAILED_REGISTRATION

    # -- registry copies -------------------------------------------------------------------------
    def _copy(self, key: str, source: str, dest: str) -> None:
        src = self.dbfs.local(dbfs_path_of(source))
        if not source.startswith("dbfs:/") or not src.is_dir():
            raise ApiError(400, "INVALID_PARAMETER_VALUE", f"Source {source!r} is not a DBFS folder")
        target = self.dbfs.local(dest)
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copytree(src, target)

    def start_registration(self, name: str, version: str, source: str) -> str:
        """Copy the version's files into the registry's own folder; the status the version has now."""
        key = f"{name}/{version}"
        dest = f"{REGISTRY_PREFIX}/{uuid.uuid4().hex}/models/{name}"
        with self.lock:
            self.copies[key] = f"dbfs:{dest}"
            self.registering[key] = "PENDING_REGISTRATION"

        def copy() -> None:
            try:
                time.sleep(self.delay_s)
                self._copy(key, source, dest)
            except Exception as exc:
                print(f"registration of {key} failed: {exc!r}", file=sys.stderr, flush=True)
                with self.lock:
                    self.registering[key] = "FAILED_REGISTRATION"
                return
            with self.lock:
                self.registering.pop(key, None)

        if self.delay_s <= 0:
            copy()
        else:
            threading.Thread(target=copy, name=f"register-{key}", daemon=True).start()
        with self.lock:
            return self.registering.get(key, "READY")

    def overlay(self, mv: dict[str, Any]) -> None:
        """The fake's registration status on a model version dict from the backend."""
        with self.lock:
            status = self.registering.get(f"{mv.get('name')}/{mv.get('version')}")
        if status:
            mv["status"] = status

    def copy_of(self, name: str, version: str) -> str:
        with self.lock:
            copy = self.copies.get(f"{name}/{version}")
            status = self.registering.get(f"{name}/{version}")
        if copy is None:
            self.backend.model_version(name, version)  # 404 when the version does not exist
            raise ApiError(404, "RESOURCE_DOES_NOT_EXIST", f"No registry copy of {name!r} version {version}")
        if status:
            raise ApiError(400, "INVALID_STATE", f"Model version {name!r} {version} is {status}")
        return copy

    # -- intercepted MLflow endpoints ----------------------------------------------------------------
    def mv_create(self) -> Response:
        resp = self.backend.forward(body=workspace_paths(request.get_data()))
        if resp.status_code != 200:
            return Backend.relay(resp)
        data = resp.json()
        mv = data["model_version"]
        mv["status"] = self.start_registration(mv["name"], mv["version"], mv.get("source", ""))
        # Delivered at creation, while the version may still be PENDING_REGISTRATION: receivers must wait.
        self.webhooks.fire(
            ("MODEL_VERSION_CREATED",),
            mv["name"],
            {
                "version": str(mv["version"]),
                "text": f"A new version {mv['version']} of registered model '{mv['name']}' was created.",
            },
        )
        return json_response(data)

    def mv_read(self, **_: str) -> Response:
        """Reads of versions: the backend's answer with the registration status overlaid."""
        resp = self.backend.forward()
        if resp.status_code != 200:
            return Backend.relay(resp)
        data = json.loads(workspace_paths(resp.content))
        for mv in [
            data.get("model_version") or {},
            *(data.get("model_versions") or []),
            *((data.get("registered_model") or {}).get("latest_versions") or []),
        ]:
            if mv:
                self.overlay(mv)
        return json_response(data)

    def mv_download_uri(self) -> dict[str, Any]:
        name, version = need(dict(request.args), "name", "version")
        return {"artifact_uri": self.copy_of(name, str(version))}

    def mv_set_tag(self) -> Response:
        p = body_json()
        name, version, key = need(p, "name", "version", "key")
        if len(str(p.get("value", "")).encode()) > TAG_VALUE_LIMIT_BYTES:
            raise ApiError(
                400,
                "INVALID_PARAMETER_VALUE",
                f"Tag value exceeds the maximum length of {TAG_VALUE_LIMIT_BYTES} bytes",
            )
        resp = self.backend.forward()
        if resp.status_code == 200:
            self.webhooks.fire(
                ("MODEL_VERSION_TAG_SET",),
                name,
                {
                    "version": str(version),
                    "tags": [{"key": key, "value": p.get("value")}],
                    "text": f"A user set a tag on registered model '{name}' version {version}.",
                },
            )
        return Backend.relay(resp)

    def mv_transition(self) -> Response:
        p = body_json()
        name, version, stage = need(p, "name", "version", "stage")
        stage = need_stage(stage)
        before = self.backend.model_version(name, str(version)).get("current_stage", "None")
        resp = self.backend.forward()
        if resp.status_code == 200:
            self.collab.activity("APPLIED_TRANSITION", name, version, from_stage=before, to_stage=stage)
            self.collab.fire_transitioned(name, str(version), before, stage)
        return Backend.relay(resp)

    def rm_create(self) -> Response:
        resp = self.backend.forward()
        if resp.status_code == 200:
            name = resp.json()["registered_model"]["name"]
            self.webhooks.fire(
                ("REGISTERED_MODEL_CREATED",), name, {"text": f"A new registered model '{name}' was created."}
            )
        return Backend.relay(resp)

    # -- the registry copy as MLflow reads it ---------------------------------------------------------
    def list_artifacts(self) -> dict[str, Any]:
        p = dict(request.args)
        name, version = need(p, "name", "version")
        root = dbfs_path_of(self.copy_of(name, str(version)))
        rel = (p.get("path") or "").strip("/")
        local = self.dbfs.local(posixpath.join(root, rel) if rel else root)
        if local.is_file():
            return {"files": [{"path": rel, "is_dir": False, "file_size": local.stat().st_size}]}
        if not local.is_dir():
            return {"files": []}
        files = []
        for child in sorted(local.iterdir()):
            entry: dict[str, Any] = {
                "path": posixpath.join(rel, child.name) if rel else child.name,
                "is_dir": child.is_dir(),
            }
            if child.is_file():
                entry["file_size"] = child.stat().st_size
            files.append(entry)
        return {"files": files}

    def signed_download_uri(self) -> dict[str, Any]:
        p = dict(request.args)
        name, version, rel = need(p, "name", "version", "path")
        target = posixpath.join(dbfs_path_of(self.copy_of(name, str(version))), rel.strip("/"))
        if not self.dbfs.local(target).is_file():
            raise ApiError(404, "RESOURCE_DOES_NOT_EXIST", f"Artifact {rel!r} does not exist")
        return {"signed_uri": self.dbfs.sign(request.host_url, target, "read"), "headers": []}

    # -- registry webhooks --------------------------------------------------------------------------
    def wh_create(self) -> dict[str, Any]:
        from tests.support.databricks_workspace.webhooks import public_webhook

        return {"webhook": public_webhook(self.webhooks.create(body_json()))}

    def wh_update(self) -> dict[str, Any]:
        from tests.support.databricks_workspace.webhooks import public_webhook

        return {"webhook": public_webhook(self.webhooks.update(body_json()))}

    def wh_list(self) -> dict[str, Any]:
        return {
            "webhooks": self.webhooks.listing(
                set(request.args.getlist("events")), request.args.get("model_name")
            )
        }

    def wh_delete(self) -> dict[str, Any]:
        (wid,) = need(dict(request.args), "id")
        self.webhooks.delete(wid)
        return {}

    def wh_test(self) -> dict[str, Any]:
        p = body_json()
        (wid,) = need(p, "id")
        return self.webhooks.test_delivery(wid, p.get("event"))

    def snapshot(self) -> dict[str, Any]:
        with self.lock:
            return {"registry_copies": dict(self.copies), "registering": dict(self.registering)}

    def overridden(self) -> list[tuple[str, str, Any]]:
        """The registry endpoints the fake answers itself instead of forwarding."""
        mv = "/api/2.0/mlflow/model-versions"
        rm = "/api/2.0/mlflow/registered-models"
        return [
            ("POST", f"{mv}/create", self.mv_create),
            ("GET", f"{mv}/get", self.mv_read),
            ("GET", f"{mv}/search", self.mv_read),
            ("GET", f"{mv}/get-download-uri", self.mv_download_uri),
            ("POST", f"{mv}/set-tag", self.mv_set_tag),
            ("POST", f"{mv}/transition-stage", self.mv_transition),
            ("GET", f"{rm}/get", self.mv_read),
            ("GET", f"{rm}/alias", self.mv_read),
            ("POST", f"{rm}/get-latest-versions", self.mv_read),
            ("GET", f"{rm}/get-latest-versions", self.mv_read),
            ("POST", f"{rm}/create", self.rm_create),
        ]

    def register(self, router: Router) -> None:
        for method, path, handler in self.overridden():
            router.add(method, path, "MLflow workspace registry", handler)
        area = "workspace registry copy (models:/ download)"
        router.add("GET", "/api/2.0/mlflow/model-versions/list-artifacts", area, self.list_artifacts)
        router.add(
            "GET", "/api/2.0/mlflow/model-versions/get-signed-download-uri", area, self.signed_download_uri
        )
        area = "registry webhooks"
        router.add("POST", "/api/2.0/mlflow/registry-webhooks/create", area, self.wh_create)
        router.add("PATCH", "/api/2.0/mlflow/registry-webhooks/update", area, self.wh_update)
        router.add("GET", "/api/2.0/mlflow/registry-webhooks/list", area, self.wh_list)
        router.add("DELETE", "/api/2.0/mlflow/registry-webhooks/delete", area, self.wh_delete)
        router.add("POST", "/api/2.0/mlflow/registry-webhooks/test", area, self.wh_test)
