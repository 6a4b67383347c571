"""The MLflow REST API of the workspace tracking server: forwarded to the backend, except artifacts.

Experiments, runs and logged models are kept by the backing ``mlflow server`` (its default artifact root
is ``dbfs:/databricks/mlflow-tracking``). Their artifacts are the workspace's: listed from the fake's
DBFS and reached through signed URLs from the credential endpoints of
``DatabricksMlflowArtifactsService``, as on Databricks.
"""

from __future__ import annotations

import posixpath
import re
from typing import Any

from flask import Response, request

from tests.support.databricks_workspace.backend import Backend
from tests.support.databricks_workspace.routing import ApiError, Router, body_json, need
from tests.support.databricks_workspace.storage import Dbfs, dbfs_path_of

# The backend names a logged model's folder `<exp>/models/<id>`; a workspace `<exp>/logged_models/<id>`,
# which is what MLflow's Databricks artifact repositories recognise.
_LOGGED_MODEL_FOLDER = re.compile(rb"(dbfs:/databricks/mlflow-tracking/[^/\"]+)/models/(m-[0-9a-f]+)")


def workspace_paths(body: bytes) -> bytes:
    """Backend answers with logged-model locations in the workspace's layout."""
    return _LOGGED_MODEL_FOLDER.sub(rb"\1/logged_models/\2", body)


def forwarded_endpoints() -> list[tuple[str, str]]:
    """(method, path template) of every endpoint of MLflow's tracking and registry REST services."""
    from mlflow.protos.model_registry_pb2 import ModelRegistryService
    from mlflow.protos.service_pb2 import MlflowService
    from mlflow.utils.rest_utils import _REST_API_PATH_PREFIX, extract_api_info_for_service

    out: list[tuple[str, str]] = []
    for service in (MlflowService, ModelRegistryService):
        for endpoint, method in extract_api_info_for_service(service, _REST_API_PATH_PREFIX).values():
            out.append((method, endpoint))
    # Fixed paths before templates, so `logged-models/search` is not taken for `logged-models/{model_id}`.
    return sorted(set(out), key=lambda mt: ("{" in mt[1], mt[1], mt[0]))


class Tracking:
    """Forwarding of the tracking and registry API, and the workspace's artifact endpoints."""

    def __init__(self, backend: Backend, dbfs: Dbfs) -> None:
        self.backend, self.dbfs = backend, dbfs

    def forward(self, **_: str) -> Response:
        resp = self.backend.forward()
        return Response(
            workspace_paths(resp.content),
            status=resp.status_code,
            content_type=resp.headers.get("Content-Type", "application/json"),
        )

    # -- roots -----------------------------------------------------------------------------------
    def run_root(self, run_id: str) -> str:
        return self.backend.call("GET", "/api/2.0/mlflow/runs/get", params={"run_id": run_id})["run"]["info"][
            "artifact_uri"
        ]

    def logged_model_root(self, model_id: str) -> str:
        model = self.backend.call("GET", f"/api/2.0/mlflow/logged-models/{model_id}")["model"]
        return workspace_paths(model["info"]["artifact_uri"].encode()).decode()

    def listing(self, root: str, path: str) -> dict[str, Any]:
        """``files`` under ``root/path`` (paths relative to ``root``), as ListArtifacts answers."""
        target = posixpath.join(dbfs_path_of(root), path) if path else dbfs_path_of(root)
        local = self.dbfs.local(target)
        files: list[dict[str, Any]] = []
        if local.is_file():
            files = [{"path": path, "is_dir": False, "file_size": local.stat().st_size}]
        elif local.is_dir():
            for child in sorted(local.iterdir()):
                rel = posixpath.join(path, child.name) if path else child.name
                entry: dict[str, Any] = {"path": rel, "is_dir": child.is_dir()}
                if child.is_file():
                    entry["file_size"] = child.stat().st_size
                files.append(entry)
        return {"root_uri": root, "files": files}

    def credential(self, root: str, rel: str, op: str) -> dict[str, Any]:
        target = posixpath.join(dbfs_path_of(root), rel)
        if op == "read" and not self.dbfs.local(target).is_file():
            raise ApiError(404, "RESOURCE_DOES_NOT_EXIST", f"Artifact {rel!r} does not exist")
        return {
            "path": rel,
            "signed_uri": self.dbfs.sign(request.host_url, target, op),
            "type": "AWS_PRESIGNED_URL",
            "headers": [],
        }

    # -- runs ------------------------------------------------------------------------------------
    def run_list_artifacts(self) -> dict[str, Any]:
        p = dict(request.args)
        (run_id,) = need({"run_id": p.get("run_id") or p.get("run_uuid")}, "run_id")
        return self.listing(self.run_root(run_id), p.get("path", "") or "")

    def _run_credentials(self, op: str) -> dict[str, Any]:
        p = body_json()
        run_id, paths = need(p, "run_id", "path")
        root = self.run_root(run_id)
        paths = paths if isinstance(paths, list) else [paths]
        return {"credential_infos": [{"run_id": run_id, **self.credential(root, rel, op)} for rel in paths]}

    def run_credentials_read(self) -> dict[str, Any]:
        return self._run_credentials("read")

    def run_credentials_write(self) -> dict[str, Any]:
        return self._run_credentials("write")

    # -- logged models ---------------------------------------------------------------------------
    def logged_model_list_artifacts(self, model_id: str) -> dict[str, Any]:
        return self.listing(self.logged_model_root(model_id), request.args.get("artifact_directory_path", ""))

    def _logged_model_credentials(self, model_id: str, op: str) -> dict[str, Any]:
        p = body_json()
        (paths,) = need(p, "paths")
        root = self.logged_model_root(model_id)
        return {
            "credentials": [
                {"model_id": model_id, "credential_info": self.credential(root, rel, op)} for rel in paths
            ]
        }

    def logged_model_credentials_upload(self, model_id: str) -> dict[str, Any]:
        return self._logged_model_credentials(model_id, "write")

    def logged_model_credentials_download(self, model_id: str) -> dict[str, Any]:
        return self._logged_model_credentials(model_id, "read")

    def register(self, router: Router, overridden: set[tuple[str, str]]) -> None:
        """Artifact endpoints first, then every MLflow REST endpoint not in ``overridden``, forwarded."""
        area = "MLflow tracking artifacts"
        router.add("GET", "/api/2.0/mlflow/artifacts/list", area, self.run_list_artifacts)
        router.add("POST", "/api/2.0/mlflow/artifacts/credentials-for-read", area, self.run_credentials_read)
        router.add(
            "POST", "/api/2.0/mlflow/artifacts/credentials-for-write", area, self.run_credentials_write
        )
        router.add(
            "GET",
            "/api/2.0/mlflow/logged-models/{model_id}/artifacts/directories",
            area,
            self.logged_model_list_artifacts,
        )
        router.add(
            "POST",
            "/api/2.0/mlflow/logged-models/{model_id}/artifacts/credentials-for-upload",
            area,
            self.logged_model_credentials_upload,
        )
        router.add(
            "POST",
            "/api/2.0/mlflow/logged-models/{model_id}/artifacts/credentials-for-download",
            area,
            self.logged_model_credentials_download,
        )
        taken = overridden | {(r.method, r.template) for r in router.routes}
        for method, template in forwarded_endpoints():
            if (method, template) not in taken:
                area = (
                    "MLflow registry (forwarded)"
                    if "/model-versions/" in template or "/registered-models/" in template
                    else "MLflow tracking (forwarded)"
                )
                router.add(method, template, area, self.forward)
