"""Routes, errors, the request recorder and fault injection of the workspace fake.

Every request is matched against an explicit route table of path templates (``{name}`` is one path
segment, ``{path}`` the rest of the path). A request no route matches is answered ``501`` with a JSON
error and recorded as *unimplemented*: a test asserts that the clients never met one.
"""

from __future__ import annotations

import json
import re
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from flask import Response, request


class ApiError(Exception):
    """An error answered in the Databricks REST shape ``{"error_code", "message"}``."""

    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(message)
        self.status, self.code, self.message = status, code, message


def json_response(payload: Any, status: int = 200) -> Response:
    """A JSON answer (Databricks always answers JSON on its REST endpoints)."""
    return Response(json.dumps(payload), status=status, content_type="application/json")


def body_json() -> dict[str, Any]:
    """The request's JSON object, or a 400 in the workspace's words."""
    data = request.get_json(silent=True, force=True)
    if data is None and not request.get_data():
        return {}
    if not isinstance(data, dict):
        raise ApiError(400, "MALFORMED_REQUEST", "Request body must be a JSON object")
    return data


def params() -> dict[str, Any]:
    """Fields of a request: query string merged with the JSON body (clients use both forms)."""
    merged: dict[str, Any] = dict(request.args.items())
    if request.method in ("POST", "PATCH", "PUT", "DELETE") and request.mimetype in ("application/json", ""):
        merged.update(body_json())
    return merged


def need(p: dict[str, Any], *names: str) -> list[Any]:
    """The values of required fields, or ``INVALID_PARAMETER_VALUE`` naming the first missing one."""
    missing = [n for n in names if p.get(n) in (None, "")]
    if missing:
        raise ApiError(400, "INVALID_PARAMETER_VALUE", f"Missing required field: {missing[0]}")
    return [p[n] for n in names]


Handler = Callable[..., Any]


@dataclass
class Route:
    """One endpoint: method, path template, the area of the workspace it belongs to, its handler."""

    method: str
    template: str
    area: str
    handler: Handler
    regex: re.Pattern[str] = field(init=False)

    def __post_init__(self) -> None:
        pattern = re.escape(self.template).replace(r"\{path\}", "(?P<path>/.*)")
        pattern = re.sub(r"\\\{(\w+)\\\}", r"(?P<\1>[^/]+)", pattern)
        self.regex = re.compile(f"^{pattern}$")


class Router:
    """The route table; :meth:`match` finds the route of a request."""

    def __init__(self) -> None:
        self.routes: list[Route] = []

    def add(self, method: str, template: str, area: str, handler: Handler) -> None:
        """Register ``handler`` for ``method template``; a later route never shadows an earlier one."""
        self.routes.append(Route(method, template, area, handler))

    def match(self, method: str, path: str) -> tuple[Route, dict[str, str]] | None:
        """The first route for ``method path`` and its path parameters."""
        for route in self.routes:
            if route.method != method:
                continue
            m = route.regex.match(path)
            if m:
                return route, m.groupdict()
        return None

    def table(self) -> list[dict[str, str]]:
        """Every implemented endpoint (method, template, area), for the endpoint document."""
        return [{"method": r.method, "path": r.template, "area": r.area} for r in self.routes]


class Recorder:
    """Every request the fake answered: method, route template (or raw path), status, client."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.entries: list[dict[str, Any]] = []

    def record(self, method: str, template: str, status: int, implemented: bool) -> None:
        entry = {
            "method": method,
            "path": template,
            "status": status,
            "implemented": implemented,
            "user_agent": request.headers.get("User-Agent", ""),
            "at": time.time(),
        }
        with self.lock:
            self.entries.append(entry)

    def snapshot(self) -> list[dict[str, Any]]:
        with self.lock:
            return list(self.entries)

    def clear(self) -> None:
        with self.lock:
            self.entries.clear()


HTML_502 = (
    "<html><head><title>502 Bad Gateway</title></head><body><center><h1>502 Bad Gateway</h1>"
    "</center><hr><center>nginx</center></body></html>"
)


class Faults:
    """Injected failures: answer the next ``count`` calls of one endpoint with a chosen failure.

    ``kind``: ``json`` (the Databricks error shape, e.g. 429 / 503 / 403) or ``html`` (a proxy's HTML
    page, e.g. a 502 from a load balancer). Endpoints are named by method and route template.
    """

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.plans: list[dict[str, Any]] = []

    def add(
        self,
        method: str,
        path: str,
        status: int,
        count: int = 1,
        kind: str = "json",
        error_code: str | None = None,
        retry_after: int | None = None,
    ) -> None:
        with self.lock:
            self.plans.append(
                {
                    "method": method.upper(),
                    "path": path,
                    "status": status,
                    "count": count,
                    "kind": kind,
                    "error_code": error_code,
                    "retry_after": retry_after,
                }
            )

    def clear(self) -> None:
        with self.lock:
            self.plans.clear()

    def take(self, method: str, template: str) -> Response | None:
        """The failure to answer instead of the endpoint, if one is planned (and use it up)."""
        with self.lock:
            for plan in self.plans:
                if plan["count"] > 0 and plan["method"] == method and plan["path"] == template:
                    plan["count"] -= 1
                    return self._response(plan)
        return None

    @staticmethod
    def _response(plan: dict[str, Any]) -> Response:
        headers = {"Retry-After": str(plan["retry_after"])} if plan["retry_after"] is not None else {}
        if plan["kind"] == "html":
            return Response(HTML_502, status=plan["status"], content_type="text/html", headers=headers)
        codes = {429: "REQUEST_LIMIT_EXCEEDED", 403: "PERMISSION_DENIED", 503: "TEMPORARILY_UNAVAILABLE"}
        code = plan["error_code"] or codes.get(plan["status"], "INTERNAL_ERROR")
        return Response(
            json.dumps({"error_code": code, "message": "injected by the workspace fake"}),
            status=plan["status"],
            content_type="application/json",
            headers=headers,
        )
