"""The read model: validations as the status page, the API and the job entry point show them."""

from __future__ import annotations

import json
from datetime import datetime, timezone
from typing import Any

from sqlalchemy import Connection, select

from listener.store.database import Database
from listener.store.schema import validations as v

MAX_LIMIT = 1000


def _iso(ts: float | None) -> str | None:
    if ts is None:
        return None
    return datetime.fromtimestamp(ts, timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def alias_of(request_json: str | None) -> str | None:
    """The alias a validation was about (the request's ``alias``: an alias event, ``@alias``), or None."""
    try:
        request = json.loads(request_json or "")
    except ValueError:
        return None
    alias = request.get("alias") if isinstance(request, dict) else None
    return alias if isinstance(alias, str) and alias else None


def row_dict(row: Any) -> dict[str, Any]:
    """One validation row in the shape every reader gets (timestamps ISO-8601 UTC, report parsed)."""
    report = json.loads(row["report"]) if row["report"] else None
    return {
        "id": row["id"],
        "job_key": row["job_key"],
        "registry": row["registry"],
        "model": row["model"],
        "version": row["version"],
        "trigger": row["trigger"],
        "action": row["action"],
        "alias": alias_of(row["request"]),
        "status": row["status"],
        "summary": row["summary"],
        "error": row["error"],
        "attempts": row["attempts"],
        "created_at": _iso(row["created_at"]),
        "started_at": _iso(row["started_at"]),
        "finished_at": _iso(row["finished_at"]),
        "duration_s": row["duration_s"],
        "report": report,
        # The policy's result, apart from the file comparison (None: no policy applied).
        "policy": (report or {}).get("policy"),
        "ui_url": row["ui_url"],
        "publish_status": row["publish_status"],
        "publish_error": row["publish_error"],
    }


class Results(Database):
    """Reading validations: one by job key, the newest, the newest of a model or of a version."""

    def get(self, job_key: str) -> dict[str, Any] | None:
        """One validation by job key (the delivery key), in the shape of :meth:`recent`."""
        def work(conn: Connection) -> dict[str, Any] | None:
            row = conn.execute(select(v).where(v.c.job_key == job_key)).mappings().first()
            return row_dict(row) if row else None
        return self._read(work, "get")

    def recent(self, limit: int = 50, model: str | None = None) -> list[dict[str, Any]]:
        """Newest validations first (every host's, when the store is shared), optionally of ``model``."""
        limit = max(1, min(int(limit), MAX_LIMIT))
        query = select(v).order_by(v.c.id.desc()).limit(limit)
        if model is not None:
            query = query.where(v.c.model == model)
        return self._read(lambda conn: [row_dict(r) for r in conn.execute(query).mappings()], "recent")

    def latest_for_version(self, registry: str, model: str, version: str,
                           with_verdict: bool = True) -> dict[str, Any] | None:
        """The newest validation of one model version (only finished ones when ``with_verdict``)."""
        query = (select(v).where(v.c.registry == registry, v.c.model == model, v.c.version == str(version))
                 .order_by(v.c.id.desc()).limit(1))
        if with_verdict:
            query = query.where(v.c.verdict.is_not(None))

        def work(conn: Connection) -> dict[str, Any] | None:
            row = conn.execute(query).mappings().first()
            return row_dict(row) if row else None
        return self._read(work, "latest_for_version")
