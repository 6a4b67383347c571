"""The webhook listener: a Flask app factory (``gunicorn 'listener.app:create_app()'``).

HTTP only: verify and parse a delivery (``listener.events``), store the job (``listener.queue``), answer.
No comparison happens here; the worker does that from the queue.
"""

from __future__ import annotations

import json
import logging
import math
import os
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from datetime import datetime, timezone
from typing import Any
from urllib.parse import quote, urlparse

from flask import Flask, Response, jsonify, render_template, request
from werkzeug.datastructures import EnvironHeaders
from werkzeug.exceptions import ClientDisconnected, HTTPException, RequestEntityTooLarge
from werkzeug.http import HTTP_STATUS_CODES

from listener import metrics
from listener import queue as job_queue
from listener.config import ROUTES, Settings
from listener.events import Decision, check_model_name, parse_databricks_delivery, parse_mlflow_delivery

log = logging.getLogger("listener.app")

READY_TIMEOUT_S = 2.0
DEFAULT_PAGE_LIMIT = 50
MAX_PAGE_LIMIT = 500
_READ_CHUNK = 64 * 1024
# Compact like Flask's jsonify; one encoder for all answers (json.dumps with options builds one per call).
_JSON_ENCODER = json.JSONEncoder(separators=(",", ":"))


def _settings_from(config: Settings | dict[str, Any] | None) -> Settings:
    if isinstance(config, Settings):
        return config
    return Settings.from_env(**(config or {}))


def _warn_about_secrets(settings: Settings) -> None:
    for route in ROUTES:
        if settings.secrets_for(route):
            continue
        if settings.allows_unsigned(route):
            log.warning("POST /webhooks/%s accepts UNSIGNED deliveries (GUARD_ALLOW_UNSIGNED): anyone who "
                        "can reach it can trigger validations; configure a secret instead", route)
        else:
            log.warning("POST /webhooks/%s has no secret configured: every delivery will be refused with 401",
                        route)


def _read_body(limit: int) -> bytes | None:
    """The raw request body, or None when it is larger than ``limit`` (never reads more than limit+1)."""
    length = request.content_length
    if length is not None and length > limit:
        return None
    stream = request.stream
    chunks: list[bytes] = []
    total = 0
    # Read at most limit+1 bytes: enough to know the body is too large, whatever Content-Length said.
    while total <= limit:
        chunk = stream.read(min(_READ_CHUNK, limit + 1 - total))
        if not chunk:
            break
        chunks.append(chunk)
        total += len(chunk)
    if total > limit:
        return None
    return b"".join(chunks)


def _json(status: int, body: dict[str, Any]) -> Response:
    response = jsonify(body)
    response.status_code = status
    return response


def _answer_bytes(body: dict[str, Any]) -> bytes:
    """A webhook answer's body: the same bytes as ``jsonify`` (compact JSON and a newline).

    Webhook answers hold only strings, numbers and None, so Flask's JSON provider (its ``default`` hook
    and response-building indirection) is not needed on the path every delivery takes.
    """
    return (_JSON_ENCODER.encode(body) + "\n").encode("ascii")


def _webhook_json(status: int, body: dict[str, Any]) -> Response:
    """A webhook answer as a Flask response (the route's own path)."""
    return Response(_answer_bytes(body), status=status, mimetype="application/json")


# "202 ACCEPTED" etc.: the status lines werkzeug would send, for the direct path.
_STATUS_LINES = {code: f"{code} {name.upper()}" for code, name in HTTP_STATUS_CODES.items()}


class DirectWebhookIntake:
    """WSGI front of the Flask app that takes ordinary webhook deliveries without Flask's request cycle.

    A delivery is a POST of a small JSON body, and answering it is the listener's hot path: Flask's request
    and app contexts, URL matching, response object and hooks cost more CPU than verifying and storing the
    delivery. A POST to a webhook route whose body the server delimits itself (``wsgi.input_terminated``,
    as gunicorn sets) with a Content-Length within the limit is read here in one call and handed to the
    same ``take`` the Flask route uses, so verification, queueing, metrics and answers are one piece of
    code. Every other request (other routes and methods, chunked or oversized bodies, servers that do not
    terminate the input) goes on to Flask unchanged.
    """

    def __init__(self, flask_wsgi: Callable[..., Any], take: Callable[[str, Any, bytes], tuple[int, dict]],
                 max_body_bytes: int) -> None:
        self._next = flask_wsgi
        self._take = take
        self._max_body_bytes = max_body_bytes
        self._routes = {f"/webhooks/{route}": route for route in ROUTES}

    def _direct_length(self, environ: dict[str, Any]) -> int | None:
        """The body length when this request is one the direct path takes, else None."""
        if environ.get("REQUEST_METHOD") != "POST" or not environ.get("wsgi.input_terminated"):
            return None
        raw = environ.get("CONTENT_LENGTH")
        if not raw or not (raw.isascii() and raw.isdigit()) or environ.get("HTTP_TRANSFER_ENCODING"):
            return None
        length = int(raw)
        return length if length <= self._max_body_bytes else None

    def __call__(self, environ: dict[str, Any], start_response: Callable[..., Any]) -> Any:
        route = self._routes.get(environ.get("PATH_INFO", ""))
        length = self._direct_length(environ) if route is not None else None
        if route is None or length is None:
            return self._next(environ, start_response)
        try:
            body = environ["wsgi.input"].read(length)
        except (OSError, ValueError):
            # The client went away mid-body: Flask's answer to werkzeug's ClientDisconnected, counted alike.
            gone = ClientDisconnected()
            metrics.record_delivery(route, gone.code)
            return self._respond(start_response, gone.code, {"status": "error", "reason": gone.description})
        try:
            status, answer = self._take(route, EnvironHeaders(environ), body)
        except Exception:
            # What the Flask app's error handler answers for an unexpected error.
            log.exception("unhandled error on %s %s", environ.get("REQUEST_METHOD"), environ.get("PATH_INFO"))
            status, answer = 500, {"status": "error", "reason": "internal error"}
        return self._respond(start_response, status, answer)

    @staticmethod
    def _respond(start_response: Callable[..., Any], status: int, body: dict[str, Any]) -> list[bytes]:
        data = _answer_bytes(body)
        start_response(_STATUS_LINES[status], [("Content-Type", "application/json"),
                                               ("Content-Length", str(len(data)))])
        return [data]


def _safe_http_url(url: Any) -> str | None:
    if isinstance(url, str) and urlparse(url).scheme in ("http", "https"):
        return url
    return None


def _version_ui_url(settings: Settings, row: dict[str, Any]) -> str | None:
    """Link to the version in the registry UI: the row's own link if it is http(s), else built here."""
    url = _safe_http_url(row.get("ui_url"))
    if url:
        return url
    base = _safe_http_url(settings.ui_base_url)
    if not base or not row.get("model") or not row.get("version"):
        return None
    name, version = quote(str(row["model"]), safe=""), quote(str(row["version"]), safe="")
    if row.get("registry") == "databricks":
        return f"{base.rstrip('/')}/ml/models/{name}/versions/{version}"
    return f"{base.rstrip('/')}/#/models/{name}/versions/{version}"


def _when(value: Any) -> str:
    if isinstance(value, (int, float)) and math.isfinite(value):
        return datetime.fromtimestamp(value, timezone.utc).strftime("%Y-%m-%d %H:%M:%S UTC")
    return str(value) if value else ""


def _duration(value: Any) -> str:
    if isinstance(value, (int, float)) and math.isfinite(value):
        return f"{value:.1f} s" if value < 120 else f"{value / 60:.1f} min"
    return ""


def _tracking_reachable(settings: Settings) -> str | None:
    """None when the tracking server answers a cheap request, else the reason it does not."""
    uri = settings.tracking_uri
    if not uri:
        return "MLFLOW_TRACKING_URI is not set"
    if uri.startswith("databricks"):
        host = os.environ.get("DATABRICKS_HOST")
        if not host:
            return "DATABRICKS_HOST is not set"
        probe, any_answer = host.rstrip("/") + "/", True
    elif uri.startswith(("http://", "https://")):
        probe, any_answer = uri.rstrip("/") + "/health", False
    else:
        return None  # a local store: nothing to reach over the network
    try:
        with urllib.request.urlopen(probe, timeout=READY_TIMEOUT_S) as resp:  # noqa: S310 - configured URI
            if 200 <= resp.status < 300:
                return None
            return f"tracking server answered {resp.status}"
    except urllib.error.HTTPError as exc:
        # Any HTTP answer proves a Databricks workspace is up (without credentials it is 401/403).
        if any_answer and exc.code < 500:
            return None
        return f"tracking server answered {exc.code}"
    except (urllib.error.URLError, OSError, ValueError) as exc:
        reason = getattr(exc, "reason", exc)
        return f"tracking server unreachable: {reason}"


def _results_store(settings: Settings) -> Any | None:
    try:
        from listener.results import ResultsStore
    except ImportError:
        return None
    return ResultsStore(settings.data_dir / "results.db")


def create_app(config: Settings | dict[str, Any] | None = None) -> Flask:
    """Build the listener app. ``config``: Settings, a dict of Settings overrides, or None (environment)."""
    settings = _settings_from(config)
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    app = Flask(__name__)
    app.config["GUARD_SETTINGS"] = settings
    # Belt and braces with _read_body: werkzeug itself refuses to stream more than this.
    app.config["MAX_CONTENT_LENGTH"] = settings.max_body_bytes
    app.json.sort_keys = False
    _warn_about_secrets(settings)
    job_queue.get_huey(settings)  # open (and create) the queue now, not on the first delivery

    parsers: dict[str, Callable[[Any, bytes], Decision]] = {
        "mlflow": lambda headers, body: parse_mlflow_delivery(
            headers, body, settings.mlflow_secrets, time.time(), settings.timestamp_tolerance_s,
            allow_unsigned=settings.allows_unsigned("mlflow")),
        "databricks": lambda headers, body: parse_databricks_delivery(
            headers, body, settings.databricks_secrets, time.time(), settings.timestamp_tolerance_s,
            authorization=settings.databricks_authorization,
            allow_unsigned=settings.allows_unsigned("databricks")),
    }

    def take(route: str, headers: Any, body: bytes) -> tuple[int, dict[str, Any]]:
        """Verify and parse one delivery, store its job when it triggers one, count the answer."""
        status, answer = decide(route, headers, body)
        metrics.record_delivery(route, status)
        return status, answer

    def decide(route: str, headers: Any, body: bytes) -> tuple[int, dict[str, Any]]:
        """The answer to one delivery; its job is stored durably before a 202 (and only for a 202)."""
        decision = parsers[route](headers, body)
        if decision.status_code != 202 or decision.request is None:
            return decision.status_code, decision.body
        try:
            task_id, duplicate = job_queue.submit(settings, decision.request)
        except Exception:
            # Not taken: a 503 makes the registry deliver again later.
            log.exception("could not store the job of delivery %s", decision.request.delivery_key)
            return 503, {"status": "error", "reason": "queue unavailable, try again later"}
        if duplicate:
            return 200, {"status": "duplicate", "id": task_id}
        log.info("queued %s %s v%s (%s) as %s", route, decision.request.model, decision.request.version,
                 decision.request.trigger, task_id)
        return 202, {"status": "queued", "id": task_id}

    def webhook(route: str) -> Response:
        """The Flask route: deliveries the direct path leaves to Flask (chunked, oversized, other servers)."""
        try:
            body = _read_body(settings.max_body_bytes)
        except RequestEntityTooLarge:
            body = None
        if body is None:
            metrics.record_delivery(route, 413)
            return _webhook_json(413, {"status": "rejected",
                                       "reason": f"body larger than {settings.max_body_bytes} bytes"})
        return _webhook_json(*take(route, request.headers, body))

    @app.post("/webhooks/mlflow")
    def webhook_mlflow() -> Response:
        return webhook("mlflow")

    @app.post("/webhooks/databricks")
    def webhook_databricks() -> Response:
        return webhook("databricks")

    @app.get("/healthz")
    def healthz() -> Response:
        return _json(200, {"status": "ok"})

    @app.get("/readyz")
    def readyz() -> Response:
        reasons: list[str] = []
        try:
            job_queue.check_writable(settings)
        except Exception as exc:  # noqa: BLE001 - any failure means "not ready", reported as text
            reasons.append(f"queue not writable: {type(exc).__name__}: {exc}")
        tracking = _tracking_reachable(settings)
        if tracking:
            reasons.append(tracking)
        if reasons:
            return _json(503, {"status": "not ready", "reasons": reasons})
        return _json(200, {"status": "ready"})

    @app.get("/metrics")
    def metrics_endpoint() -> Response:
        body, content_type = metrics.render(lambda: job_queue.queue_depth(settings))
        return Response(body, status=200, content_type=content_type)

    def listing_args() -> tuple[int, str | None] | Response:
        raw_limit = request.args.get("limit", str(DEFAULT_PAGE_LIMIT))
        if not raw_limit.isdigit() or not 1 <= int(raw_limit) <= MAX_PAGE_LIMIT:
            return _json(400, {"status": "rejected", "reason": f"limit must be 1..{MAX_PAGE_LIMIT}"})
        model = request.args.get("model") or None
        if model is not None and check_model_name(model):
            return _json(400, {"status": "rejected", "reason": check_model_name(model)})
        return int(raw_limit), model

    def recent(limit: int, model: str | None) -> list[dict[str, Any]] | None:
        """Rows from the results store, or None when it cannot be read (logged)."""
        try:
            store = _results_store(settings)
            return store.recent(limit=limit, model=model) if store is not None else []
        except Exception:
            log.exception("could not read the results store")
            return None

    @app.get("/api/validations")
    def api_validations() -> Response:
        args = listing_args()
        if isinstance(args, Response):
            return args
        rows = recent(*args)
        if rows is None:
            return _json(503, {"status": "error", "reason": "results store unavailable"})
        for row in rows:
            row["ui_url"] = _version_ui_url(settings, row)
        return _json(200, {"validations": rows})

    @app.get("/")
    def status_page() -> Any:
        args = listing_args()
        if isinstance(args, Response):
            return args
        limit, model = args
        found = recent(limit, model)
        rows = [{**row, "ui_url": _version_ui_url(settings, row),
                 "when": _when(row.get("finished_at") or row.get("started_at") or row.get("created_at")),
                 "took": _duration(row.get("duration_s"))}
                for row in found or []]
        page = render_template("status.html", rows=rows, model=model, unavailable=found is None)
        return page, (503 if found is None else 200)

    @app.errorhandler(HTTPException)
    def http_error(exc: HTTPException) -> Response:
        status = exc.code or 500
        if request.path.startswith("/webhooks/") and request.path[len("/webhooks/"):] in ROUTES:
            metrics.record_delivery(request.path[len("/webhooks/"):], status)
        return _json(status, {"status": "error", "reason": exc.description or exc.name})

    @app.errorhandler(Exception)
    def unexpected_error(exc: Exception) -> Response:
        log.exception("unhandled error on %s %s", request.method, request.path)
        return _json(500, {"status": "error", "reason": "internal error"})

    app.wsgi_app = DirectWebhookIntake(app.wsgi_app, take, settings.max_body_bytes)  # type: ignore[method-assign]
    return app
