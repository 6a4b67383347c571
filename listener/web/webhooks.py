"""``POST /webhooks/<registry>``: read the body, hand it to the registry's parser, enqueue, answer."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Mapping
from typing import Any

from flask import Blueprint, Response, request
from werkzeug.exceptions import ClientDisconnected, RequestEntityTooLarge

from listener import intake, metrics
from listener.config import ROUTES, Settings
from listener.protocol import parse_databricks_delivery, parse_mlflow_delivery
from listener.protocol.request import Ignored, Rejected, ValidationRequest
from listener.store import get_store

log = logging.getLogger("listener.web.webhooks")

_READ_CHUNK = 64 * 1024
PATHS = {f"/webhooks/{route}": route for route in ROUTES}


def read_body(limit: int) -> bytes:
    """The whole request body: 413 when larger than ``limit`` (never reads more than limit+1 bytes), 400
    when the client sent less than its Content-Length or went away or stalled mid-body."""
    length = request.content_length
    if length is not None and length > limit:
        raise Rejected(413, f"body larger than {limit} bytes")
    try:
        stream = request.stream
    except RequestEntityTooLarge as exc:
        raise Rejected(413, f"body larger than {limit} bytes") from exc
    chunks: list[bytes] = []
    total = 0
    try:
        while total <= limit:
            chunk = stream.read(min(_READ_CHUNK, limit + 1 - total))
            if not chunk:
                break
            chunks.append(chunk)
            total += len(chunk)
    except (OSError, ValueError) as exc:
        # The connection broke or the server's body-read timeout struck (a client holding a body open).
        raise ClientDisconnected("the client went away or stalled before sending the whole body") from exc
    if total > limit:
        raise Rejected(413, f"body larger than {limit} bytes")
    if length is not None and total < length:
        # Servers that delimit the body themselves (gunicorn) hand over what arrived before the client
        # half-closed: that is not the delivery that was signed and sent.
        raise ClientDisconnected(f"the body ended after {total} of its {length} bytes (Content-Length)")
    return b"".join(chunks)


def parsers(settings: Settings) -> dict[str, Callable[[Mapping[str, str], bytes], ValidationRequest]]:
    """The protocol parser of each route, bound to the configured secrets and tolerance."""
    return {
        "mlflow": lambda headers, body: parse_mlflow_delivery(
            headers, body, settings.mlflow_secrets, time.time(), settings.timestamp_tolerance_s,
            allow_unsigned=settings.allows_unsigned("mlflow")),
        "databricks": lambda headers, body: parse_databricks_delivery(
            headers, body, settings.databricks_secrets, time.time(), settings.timestamp_tolerance_s,
            authorization=settings.databricks_authorization,
            allow_unsigned=settings.allows_unsigned("databricks")),
    }


def blueprint(settings: Settings) -> Blueprint:
    """The webhook routes; every answer on them is counted in ``guard_deliveries_total``."""
    bp = Blueprint("webhooks", __name__)
    parse = parsers(settings)

    def take(route: str) -> tuple[dict[str, Any], int]:
        """Verify and parse one delivery; its job is stored durably before a 202 (and only for a 202)."""
        job = parse[route](request.headers, read_body(settings.max_body_bytes))
        store = get_store(settings.store_url)
        if job.trigger == "MODEL_VERSION_TRANSITIONED_STAGE" and store.claim_own_approval(
                job.registry, job.model, job.version, job.to_stage):
            raise Ignored(f"{job.model} version {job.version} moved to {job.to_stage} by the guard's own "
                          "approval: it was validated just before")
        try:
            task_id, duplicate = intake.submit(settings, job)
        except Exception:
            # Not taken: a 503 makes the registry deliver again later.
            log.exception("could not store the job of delivery %s", job.delivery_key)
            return {"status": "error", "reason": "queue unavailable, try again later"}, 503
        if duplicate:
            return {"status": "duplicate", "id": task_id}, 200
        log.info("queued %s %s v%s (%s) as %s", route, job.model, job.version, job.trigger, task_id)
        return {"status": "queued", "id": task_id}, 202

    for route in ROUTES:
        bp.add_url_rule(f"/webhooks/{route}", endpoint=route, view_func=lambda route=route: take(route),
                        methods=["POST"])

    @bp.after_app_request
    def count(response: Response) -> Response:
        # After the error handlers too: refusals, 404/405 and 500s on a webhook path are answers as well.
        route = PATHS.get(request.path)
        if route is not None:
            metrics.record_delivery(route, response.status_code)
        return response

    return bp
