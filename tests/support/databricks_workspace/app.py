"""The workspace fake's Flask app: authentication, the route table, faults, recording, test controls.

Test controls live under ``/fake/`` (never recorded, never authenticated):
``GET /fake/state``, ``GET /fake/requests``, ``DELETE /fake/requests``, ``GET /fake/endpoints``,
``POST /fake/faults`` (``{"method", "path" (route template), "status", "count", "kind": "json"|"html"}``),
``DELETE /fake/faults``.
"""

from __future__ import annotations

import hmac
from pathlib import Path
from typing import Any

from flask import Flask, Response, request

from tests.support.databricks_workspace.backend import Backend
from tests.support.databricks_workspace.collaboration import FAKE_USER, Collaboration
from tests.support.databricks_workspace.files_api import FilesApi
from tests.support.databricks_workspace.routing import (
    ApiError,
    Faults,
    Recorder,
    Router,
    body_json,
    json_response,
)
from tests.support.databricks_workspace.storage import Dbfs
from tests.support.databricks_workspace.tracking import Tracking
from tests.support.databricks_workspace.unity_catalog import UnityCatalog
from tests.support.databricks_workspace.webhooks import Webhooks

WORKSPACE_ID = "1234567890123456"
UNAUTHENTICATED_AREAS = {"signed URLs (cloud storage)", "workspace"}


def create_app(
    backend_url: str,
    root: Path,
    *,
    token: str | None,
    s3_bucket: str,
    s3_credentials: dict[str, str],
    registration_delay_s: float = 0.0,
) -> Flask:
    """The fake: MLflow calls forwarded to ``backend_url``, DBFS under ``root``, UC storage in ``s3_bucket``.

    ``token``: the only bearer token accepted (any non-empty one when None).
    """
    from tests.support.databricks_workspace.workspace_registry import WorkspaceRegistry

    app = Flask("databricks_workspace_fake")
    backend, dbfs, webhooks = Backend(backend_url), Dbfs(root), Webhooks()
    collab = Collaboration(backend, webhooks)
    registry = WorkspaceRegistry(backend, dbfs, webhooks, collab, registration_delay_s)
    uc = UnityCatalog(s3_bucket, s3_credentials)
    recorder, faults, router = Recorder(), Faults(), Router()

    router.add(
        "GET",
        "/",
        "workspace",
        lambda: Response("<html><title>Databricks</title></html>", content_type="text/html"),
    )
    router.add(
        "GET",
        "/.well-known/databricks-config",
        "workspace",
        lambda: {"workspace_id": WORKSPACE_ID, "oidc_endpoint": f"{request.host_url.rstrip('/')}/oidc"},
    )
    router.add(
        "GET",
        "/api/2.0/preview/scim/v2/Me",
        "identity",
        lambda: {"id": "1", "userName": FAKE_USER, "active": True, "emails": [{"value": FAKE_USER}]},
    )
    collab.register(router)
    registry.register(router)
    uc.register(router)
    FilesApi(dbfs).register(router)
    Tracking(backend, dbfs).register(router, overridden={(m, p) for m, p, _ in registry.overridden()})

    def authenticate() -> None:
        auth = request.headers.get("Authorization", "")
        if not auth.startswith("Bearer ") or not auth[7:].strip():
            raise ApiError(401, "UNAUTHENTICATED", "Credential was not sent or was of an unsupported type")
        if token is not None and not hmac.compare_digest(auth[7:].strip(), token):
            raise ApiError(403, "PERMISSION_DENIED", "Invalid access token")

    @app.errorhandler(ApiError)
    def on_api_error(exc: ApiError) -> Response:
        return json_response({"error_code": exc.code, "message": exc.message}, exc.status)

    # -- test controls ----------------------------------------------------------------------------
    @app.get("/fake/state")
    def fake_state() -> dict[str, Any]:
        return {
            **collab.snapshot(),
            **registry.snapshot(),
            **webhooks.snapshot(),
            **uc.snapshot(),
            "dbfs_root": str(dbfs.base),
        }

    @app.get("/fake/requests")
    def fake_requests() -> Response:
        return json_response(recorder.snapshot())

    @app.delete("/fake/requests")
    def fake_requests_clear() -> dict[str, Any]:
        recorder.clear()
        return {}

    @app.get("/fake/endpoints")
    def fake_endpoints() -> Response:
        return json_response(router.table())

    @app.post("/fake/faults")
    def fake_fault_add() -> dict[str, Any]:
        p = body_json()
        faults.add(
            p["method"],
            p["path"],
            int(p["status"]),
            int(p.get("count", 1)),
            p.get("kind", "json"),
            p.get("error_code"),
            p.get("retry_after"),
        )
        return {}

    @app.delete("/fake/faults")
    def fake_fault_clear() -> dict[str, Any]:
        faults.clear()
        return {}

    # -- everything else: the workspace -----------------------------------------------------------------
    @app.route("/", defaults={"path": ""}, methods=["GET", "POST", "PUT", "PATCH", "DELETE", "HEAD"])
    @app.route("/<path:path>", methods=["GET", "POST", "PUT", "PATCH", "DELETE", "HEAD"])
    def dispatch(path: str) -> Any:
        method, full = request.method, request.path
        found = router.match(method, full)
        if found is None:
            recorder.record(method, full, 501, implemented=False)
            return json_response(
                {
                    "error_code": "NOT_IMPLEMENTED",
                    "message": f"The workspace fake does not implement {method} {full}",
                },
                501,
            )
        route, path_params = found
        fault = faults.take(method, route.template)
        if fault is not None:
            recorder.record(method, route.template, fault.status_code, implemented=True)
            return fault
        try:
            if route.area not in UNAUTHENTICATED_AREAS:
                authenticate()
            result = route.handler(**path_params)
        except ApiError as exc:
            recorder.record(method, route.template, exc.status, implemented=exc.status != 501)
            raise
        resp = result if isinstance(result, Response) else json_response(result)
        recorder.record(method, route.template, resp.status_code, implemented=True)
        return resp

    return app
