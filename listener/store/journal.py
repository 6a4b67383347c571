"""The job journal: one row per validation job, written when a worker claims it.

The queue removes a job when a worker takes it, so this row is what lets another consumer find a job
whose worker died (:meth:`Journal.take_unfinished`). With a shared store (PostgreSQL) that consumer may
be on another host: a job is recovered once its owner's heartbeat is older than ``stale_after``. Claims
of one model version are serialised (SQLite: the write lock; PostgreSQL: a transaction-scoped advisory
lock on the version), so two hosts never both start a check of the same version.

Nothing secret is stored: the request holds model name, version, event name and delivery id only.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Connection, case, func, insert, select, text, update

from core.status import STATUSES
from listener.store.database import Database
from listener.store.engine import is_sqlite
from listener.store.owners import STALE_AFTER_S, owner_alive
from listener.store.schema import validations as v
from listener.verdict import Verdict
from listener.verdict_tags import render_report_json

# In-progress states; the final ones are the verdict statuses PASSED / FAILED / ERROR.
QUEUED = "QUEUED"
RUNNING = "RUNNING"
RETRYING = "RETRYING"
# Final, with no verdict of its own: another job's verdict on the version already answers this one.
SKIPPED = "SKIPPED"

PUBLISH_PENDING = "PENDING"
PUBLISH_DONE = "PUBLISHED"
PUBLISH_FAILED = "FAILED"


@dataclass
class Claim:
    """Outcome of :meth:`Journal.claim`.

    state: ``run`` (you own the job now), ``done`` (already finished and published, or skipped: nothing
    to do), ``busy`` (a live worker is on this very job), ``locked`` (a live worker is checking another
    job of the same model version). ``verdict`` is set when the check is done but publishing is not.
    """

    state: str
    row_id: int | None = None
    attempts: int = 0
    publish_attempts: int = 0
    verdict: Verdict | None = None


@dataclass(frozen=True)
class FinishedCheck:
    """Another job's verdict on a model version: which job, what it was asked to do, when it was stored."""

    job_key: str
    action: str | None
    status: str
    finished_at: float


def advisory_key(*parts: str) -> int:
    """A signed 64-bit PostgreSQL advisory lock key for ``parts`` (stable across hosts and releases)."""
    digest = hashlib.sha256("\x1f".join(parts).encode()).digest()
    return int.from_bytes(digest[:8], "big", signed=True)


class Journal(Database):
    """Claim, heartbeat, release, verdict and publish records, and recovery of abandoned jobs."""

    def _serialise_version(self, conn: Connection, registry: str, model: str, version: str) -> None:
        if not is_sqlite(conn.engine):
            conn.execute(text("SELECT pg_advisory_xact_lock(:k)"),
                         {"k": advisory_key("claim", registry, model, version)})

    def claim(self, request: dict[str, Any], owner: str, *, job_key: str | None = None,
              ui_url: str | None = None, stale_after: float = STALE_AFTER_S) -> Claim:
        """Atomically take the job for ``owner``; see :class:`Claim` for the outcomes.

        A job is not handed out while another job of the same registry/model/version is held by a live
        worker, on any host sharing the store.
        """
        key = job_key or request["delivery_key"]
        registry, model, version = request["registry"], request["model"], str(request["version"])

        def work(conn: Connection) -> Claim:
            self._serialise_version(conn, registry, model, version)
            now = self.now(conn)
            row = conn.execute(select(v).where(v.c.job_key == key)).mappings().first()
            if row is not None:
                if row["owner"] and row["owner"] != owner and owner_alive(row["owner"], row["heartbeat"],
                                                                           now, stale_after):
                    return Claim("busy", row["id"])
                if row["status"] == SKIPPED or (row["status"] in STATUSES
                                                and row["publish_status"] != PUBLISH_PENDING):
                    return Claim("done", row["id"])
            others = conn.execute(
                select(v.c.owner, v.c.heartbeat).where(
                    v.c.registry == registry, v.c.model == model, v.c.version == version,
                    v.c.job_key != key, v.c.owner.is_not(None))).all()
            if any(owner_alive(o.owner, o.heartbeat, now, stale_after) for o in others):
                return Claim("locked", row["id"] if row is not None else None)
            if row is None:
                row_id = conn.execute(insert(v).values(
                    job_key=key, registry=registry, model=model, version=version,
                    trigger=request.get("trigger"), action=request.get("action"),
                    request=json.dumps(request), status=RUNNING, created_at=now, started_at=now,
                    owner=owner, heartbeat=now, ui_url=ui_url, attempts=0,
                    publish_attempts=0).returning(v.c.id)).scalar_one()
                return Claim("run", int(row_id))
            verdict = Verdict.from_dict(json.loads(row["verdict"])) if row["verdict"] else None
            status = row["status"] if verdict is not None else RUNNING
            conn.execute(update(v).where(v.c.id == row["id"]).values(
                owner=owner, heartbeat=now, status=status, requeued_at=None,
                started_at=func.coalesce(v.c.started_at, now), ui_url=func.coalesce(ui_url, v.c.ui_url)))
            return Claim("run", row["id"], row["attempts"], row["publish_attempts"], verdict)

        return self._write(work, "claim")

    def heartbeat(self, job_key: str, owner: str) -> bool:
        """Refresh the owner's heartbeat; False when ``owner`` no longer holds the job."""
        def work(conn: Connection) -> bool:
            now = self.now(conn)
            result = conn.execute(update(v).where(v.c.job_key == job_key, v.c.owner == owner)
                                  .values(heartbeat=now))
            return result.rowcount == 1
        return self._write(work, "heartbeat")

    def release(self, job_key: str, owner: str, *, retrying: bool = False, error: str | None = None,
                attempts: int | None = None) -> None:
        """Give the job up (always called when a worker leaves a job, finished or not)."""
        values: dict[str, Any] = {"owner": None, "heartbeat": None}
        if retrying:
            values["status"] = _keep_final_status(RETRYING)
            values["error"] = func.coalesce(error, v.c.error)
            values["attempts"] = func.coalesce(attempts, v.c.attempts)
        statement = update(v).where(v.c.job_key == job_key, v.c.owner == owner).values(**values)
        self._write(lambda conn: conn.execute(statement), "release")

    def record_verdict(self, job_key: str, verdict: Verdict, attempts: int | None = None) -> None:
        """Store the verdict (before publishing it, so it is never lost); publishing becomes pending."""
        report = json.dumps(json.loads(render_report_json(verdict)))
        verdict_json = json.dumps(verdict.to_dict())

        def work(conn: Connection) -> None:
            conn.execute(update(v).where(v.c.job_key == job_key).values(
                status=verdict.status, summary=verdict.summary, error=verdict.error,
                finished_at=self.now(conn), duration_s=verdict.duration_s, report=report,
                verdict=verdict_json, publish_status=PUBLISH_PENDING,
                attempts=func.coalesce(attempts, v.c.attempts)))
        self._write(work, "record_verdict")

    def finished_checks(self, registry: str, model: str, version: str, *,
                        excluding: str) -> list[FinishedCheck]:
        """The verdicts other jobs stored on one model version, oldest first (``excluding``: this job)."""
        query = (select(v.c.job_key, v.c.action, v.c.status, v.c.finished_at)
                 .where(v.c.registry == registry, v.c.model == model, v.c.version == str(version),
                        v.c.job_key != excluding, v.c.verdict.is_not(None))
                 .order_by(v.c.id))
        return self._read(lambda conn: [FinishedCheck(r.job_key, r.action, r.status,
                                                      float(r.finished_at or 0))
                                        for r in conn.execute(query)], "finished_checks")

    def record_skipped(self, job_key: str, owner: str, answer: FinishedCheck) -> None:
        """Close the job ``owner`` holds as :data:`SKIPPED`: ``answer``, another job's verdict, answers it.

        Final and with nothing to publish; the row names the job that answered it.
        """
        summary = f"skipped: already checked by job {answer.job_key} ({answer.status})"

        def work(conn: Connection) -> None:
            conn.execute(update(v).where(v.c.job_key == job_key, v.c.owner == owner).values(
                status=SKIPPED, summary=summary, finished_at=self.now(conn), publish_status=None))
        self._write(work, "record_skipped")

    def record_publish(self, job_key: str, *, ok: bool, error: str | None = None,
                       final: bool = False) -> int:
        """Record a publish attempt; returns the number of attempts so far.

        ``ok`` → published; a failure stays pending (to be retried) unless ``final``.
        """
        status = PUBLISH_DONE if ok else (PUBLISH_FAILED if final else PUBLISH_PENDING)

        def work(conn: Connection) -> int:
            count = conn.execute(update(v).where(v.c.job_key == job_key).values(
                publish_status=status, publish_error=None if ok else error,
                publish_attempts=v.c.publish_attempts + 1).returning(v.c.publish_attempts)).scalar()
            return int(count or 0)
        return self._write(work, "record_publish")

    def unfinished(self, stale_after: float = STALE_AFTER_S) -> list[tuple[str, dict[str, Any]]]:
        """Jobs nobody is working on that still need work: no verdict yet, or verdict not published.

        Returns ``(job_key, request_dict)`` pairs, oldest first. Read only; recovery uses
        :meth:`take_unfinished`.
        """
        def work(conn: Connection) -> list[tuple[str, dict[str, Any]]]:
            now = self.now(conn)
            return [(r.job_key, json.loads(r.request)) for r in conn.execute(_unfinished_query())
                    if not owner_alive(r.owner, r.heartbeat, now, stale_after)]
        return self._read(work, "unfinished")

    def take_unfinished(self, stale_after: float = STALE_AFTER_S,
                        grace_s: float | None = None) -> list[tuple[str, dict[str, Any]]]:
        """The unfinished jobs to re-enqueue, each handed to one caller only.

        Every job returned is marked as re-enqueued; for ``grace_s`` seconds (default ``stale_after``)
        no other consumer, on any host, gets it again. A job that is claimed clears the mark; one that
        the queue lost comes back after the grace.
        """
        grace = stale_after if grace_s is None else grace_s

        def work(conn: Connection) -> list[tuple[str, dict[str, Any]]]:
            if not is_sqlite(conn.engine):
                conn.execute(text("SELECT pg_advisory_xact_lock(:k)"), {"k": advisory_key("recovery")})
            now = self.now(conn)
            taken: list[tuple[str, dict[str, Any]]] = []
            for r in conn.execute(_unfinished_query()).all():
                if owner_alive(r.owner, r.heartbeat, now, stale_after):
                    continue
                if r.requeued_at is not None and now - r.requeued_at < grace:
                    continue
                taken.append((r.job_key, json.loads(r.request)))
            if taken:
                conn.execute(update(v).where(v.c.job_key.in_([k for k, _ in taken])).values(requeued_at=now))
            return taken
        return self._write(work, "take_unfinished")


    def unpublished(self, exclude_error: str | None = None,
                    limit: int = 1000) -> list[tuple[str, dict[str, Any]]]:
        """Finished jobs whose publish gave up (``FAILED``), oldest first: ``(job_key, request_dict)``.

        ``exclude_error``: leave out rows whose publish error is exactly this (a verdict kept off the
        version on purpose).
        """
        query = (select(v.c.job_key, v.c.request).where(v.c.verdict.is_not(None),
                                                        v.c.publish_status == PUBLISH_FAILED)
                 .order_by(v.c.id).limit(max(1, int(limit))))
        if exclude_error is not None:
            query = query.where((v.c.publish_error.is_(None)) | (v.c.publish_error != exclude_error))
        return self._read(lambda conn: [(r.job_key, json.loads(r.request)) for r in conn.execute(query)],
                          "unpublished")


def _unfinished_query() -> Any:
    return (select(v.c.job_key, v.c.request, v.c.owner, v.c.heartbeat, v.c.requeued_at)
            .where(v.c.status.in_([QUEUED, RUNNING, RETRYING]) | (v.c.publish_status == PUBLISH_PENDING))
            .order_by(v.c.id))


def _keep_final_status(in_progress: str) -> Any:
    return case((v.c.status.in_(STATUSES), v.c.status), else_=in_progress)
