"""The real ``mlflow server`` behind the fake: it keeps experiments, runs, logged models and the
workspace registry's versions; the fake forwards the MLflow REST API of those to it."""

from __future__ import annotations

from typing import Any

import requests
from flask import Response, request

from tests.support.databricks_workspace.routing import ApiError

# Headers that must not be copied between the two HTTP hops of the forwarder.
HOP_HEADERS = {
    "host",
    "content-length",
    "transfer-encoding",
    "connection",
    "keep-alive",
    "accept-encoding",
    "content-encoding",
    "authorization",
}


class Backend:
    """Calls to the backing ``mlflow server`` (plain HTTP, no credentials: it is local)."""

    def __init__(self, url: str) -> None:
        self.url = url.rstrip("/")
        self.session = requests.Session()

    def forward(self, path: str | None = None, body: bytes | None = None) -> requests.Response:
        """Send the current request on to the backend (same method, query and body)."""
        headers = {k: v for k, v in request.headers.items() if k.lower() not in HOP_HEADERS}
        return self.session.request(
            request.method,
            f"{self.url}{path or request.path}",
            params=list(request.args.items(multi=True)),
            data=request.get_data() if body is None else body,
            headers=headers,
            timeout=60,
        )

    @staticmethod
    def relay(resp: requests.Response) -> Response:
        """The backend's answer, as the fake's answer."""
        return Response(
            resp.content,
            status=resp.status_code,
            content_type=resp.headers.get("Content-Type", "application/json"),
        )

    def call(self, method: str, path: str, **kwargs: Any) -> dict[str, Any]:
        """One backend call; an error answer becomes the same error in the workspace's shape."""
        resp = self.session.request(method, f"{self.url}{path}", timeout=60, **kwargs)
        if resp.status_code != 200:
            try:
                err = resp.json()
            except ValueError:
                err = {"message": resp.text}
            raise ApiError(resp.status_code, err.get("error_code", "INTERNAL_ERROR"), err.get("message", ""))
        return resp.json()

    def model_version(self, name: str, version: str) -> dict[str, Any]:
        try:
            return self.call(
                "GET", "/api/2.0/mlflow/model-versions/get", params={"name": name, "version": version}
            )["model_version"]
        except ApiError as exc:
            raise ApiError(
                404, "RESOURCE_DOES_NOT_EXIST", f"Model version {name!r} {version} does not exist"
            ) from exc

    def transition(self, name: str, version: str, stage: str, archive: bool) -> dict[str, Any]:
        return self.call(
            "POST",
            "/api/2.0/mlflow/model-versions/transition-stage",
            json={
                "name": name,
                "version": version,
                "stage": stage,
                "archive_existing_versions": bool(archive),
            },
        )["model_version"]
