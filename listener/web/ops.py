"""Probes, metrics and the seal key: ``GET /healthz``, ``/readyz``, ``/metrics``, ``/seal-key.pem``."""

from __future__ import annotations

from typing import Any

from flask import Blueprint, Response

from core.registry.reach import probe
from listener import intake, metrics
from listener.config import Settings
from listener.store import get_store

READY_TIMEOUT_S = 2.0


def tracking_problem(settings: Settings) -> str | None:
    """None when the configured tracking server answers a cheap request, else the reason it does not."""
    uri = settings.tracking_uri
    if not uri:
        return "MLFLOW_TRACKING_URI is not set"
    if uri.startswith("databricks"):
        return workspace_problem()
    elif uri.startswith(("http://", "https://")):
        problem = probe(uri.rstrip("/") + "/health", READY_TIMEOUT_S, healthy_below=300)
    else:
        return None  # a local store: nothing to reach over the network
    return f"tracking server {problem}" if problem else None


def workspace_problem() -> str | None:
    """None when the Databricks workspace answers ``current_user.me()`` with our credentials.

    The SDK's own unified authentication resolves host and credentials (``DATABRICKS_HOST`` with or
    without its scheme, a token, a config profile, OAuth), exactly as the adapter that writes does.
    """
    try:
        from databricks.sdk import WorkspaceClient
        from databricks.sdk.core import Config

        cfg = Config(retry_timeout_seconds=int(READY_TIMEOUT_S) + 1,
                     http_timeout_seconds=int(READY_TIMEOUT_S))
        WorkspaceClient(config=cfg).current_user.me()
    except Exception as exc:  # noqa: BLE001 - any failure means "not ready", reported as text
        text = (str(exc).strip().splitlines() or [type(exc).__name__])[0][:300]
        return f"Databricks workspace not ready: {type(exc).__name__}: {text}"
    return None


def blueprint(settings: Settings) -> Blueprint:
    """The operations endpoints."""
    bp = Blueprint("ops", __name__)

    @bp.get("/healthz")
    def healthz() -> tuple[dict[str, Any], int]:
        return {"status": "ok"}, 200

    @bp.get("/readyz")
    def readyz() -> tuple[dict[str, Any], int]:
        reasons: list[str] = []
        try:
            intake.check_writable(settings)
        except Exception as exc:  # noqa: BLE001 - any failure means "not ready", reported as text
            reasons.append(f"queue not writable: {type(exc).__name__}: {exc}")
        store = get_store(settings.store_url).ready()
        if store:
            reasons.append(store)
        tracking = tracking_problem(settings)
        if tracking:
            reasons.append(tracking)
        if reasons:
            return {"status": "not ready", "reasons": reasons}, 503
        return {"status": "ready"}, 200

    @bp.get("/metrics")
    def metrics_endpoint() -> Response:
        body, content_type = metrics.render(lambda: intake.queue_depth(settings), settings.metrics_dir)
        return Response(body, status=200, content_type=content_type)

    @bp.get("/seal-key.pem")
    def seal_key() -> Response | tuple[dict[str, Any], int]:
        # The public half only: what a third party needs to verify a seal with model_signing.
        if settings.signing_key is None:
            return {"status": "error", "reason": "no signing key is configured (GUARD_SIGNING_KEY): "
                    "this guard makes no signed seals"}, 404
        return Response(settings.signing_key.public_pem(), status=200, content_type="application/x-pem-file")

    return bp
