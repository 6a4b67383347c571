"""``GET /`` and ``GET /api/validations``: recent validations from the results store (HTML, JSON)."""

from __future__ import annotations

import logging
import math
from datetime import datetime, timezone
from typing import Any
from urllib.parse import urlparse

from flask import Blueprint, render_template, request

from listener.config import Settings
from listener.protocol.request import Rejected, check_model_name
from listener.registries import version_url
from listener.store import get_store

log = logging.getLogger("listener.web.status")

DEFAULT_PAGE_LIMIT = 50
MAX_PAGE_LIMIT = 500


def when(value: Any) -> str:
    """A timestamp as the page shows it (UTC, to the second)."""
    if isinstance(value, (int, float)) and math.isfinite(value):
        return datetime.fromtimestamp(value, timezone.utc).strftime("%Y-%m-%d %H:%M:%S UTC")
    return str(value) if value else ""


def duration(value: Any) -> str:
    """A check's duration with a precision that still says something for short ones (``0.03 s``)."""
    if not isinstance(value, (int, float)) or not math.isfinite(value):
        return ""
    if value < 0.01:
        return f"{value:.3f} s"
    if value < 10:
        return f"{value:.2f} s"
    return f"{value:.1f} s" if value < 120 else f"{value / 60:.1f} min"


def _http_url(url: Any) -> str | None:
    return url if isinstance(url, str) and urlparse(url).scheme in ("http", "https") else None


def row_link(settings: Settings, row: dict[str, Any]) -> str | None:
    """Link to the version in the registry UI: the row's own link if it is http(s), else built here."""
    url = _http_url(row.get("ui_url"))
    if url or not row.get("model") or not row.get("version"):
        return url
    return version_url(settings, str(row.get("registry") or "mlflow"), str(row["model"]), str(row["version"]))


def blueprint(settings: Settings) -> Blueprint:
    """The status page and its JSON twin."""
    bp = Blueprint("status", __name__, template_folder="templates")

    def listing_args() -> tuple[int, str | None]:
        raw_limit = request.args.get("limit", str(DEFAULT_PAGE_LIMIT))
        if not raw_limit.isdigit() or not 1 <= int(raw_limit) <= MAX_PAGE_LIMIT:
            raise Rejected(400, f"limit must be 1..{MAX_PAGE_LIMIT}")
        model = request.args.get("model") or None
        reason = check_model_name(model) if model is not None else None
        if reason:
            raise Rejected(400, reason)
        return int(raw_limit), model

    def recent(limit: int, model: str | None) -> list[dict[str, Any]] | None:
        """Rows from the results store, or None when it cannot be read (logged)."""
        try:
            rows = get_store(settings.store_url).recent(limit=limit, model=model)
        except Exception:
            log.exception("could not read the results store")
            return None
        for row in rows:
            row["ui_url"] = row_link(settings, row)
        return rows

    @bp.get("/api/validations")
    def api_validations() -> tuple[dict[str, Any], int]:
        rows = recent(*listing_args())
        if rows is None:
            return {"status": "error", "reason": "results store unavailable"}, 503
        return {"validations": rows}, 200

    @bp.get("/")
    def status_page() -> tuple[str, int]:
        limit, model = listing_args()
        found = recent(limit, model)
        rows = [{**row, "took": duration(row.get("duration_s")),
                 "when": when(row.get("finished_at") or row.get("started_at") or row.get("created_at"))}
                for row in found or []]
        page = render_template("status.html", rows=rows, model=model, unavailable=found is None)
        return page, (503 if found is None else 200)

    return bp
