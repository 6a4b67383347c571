"""Results store and job journal: one SQLite row per validation job.

The row is written when a worker claims the job (before any check starts), updated as the job runs,
retries and finishes, and read by the status page. Because the queue removes a job when a worker takes
it, this row is also what lets a restarted worker find jobs whose worker died (see
:meth:`ResultsStore.unfinished`). SQLite in WAL mode with a busy timeout is safe for several processes
(gunicorn workers, huey consumer threads) on one host.

Nothing secret is stored: the request holds model name, version, event name and delivery id only.
"""

from __future__ import annotations

import json
import os
import socket
import sqlite3
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from listener.config import Settings
from listener.verdict import STATUSES, Verdict

# In-progress states; the final ones are the verdict statuses PASSED / FAILED / ERROR.
QUEUED = "QUEUED"
RUNNING = "RUNNING"
RETRYING = "RETRYING"

PUBLISH_PENDING = "PENDING"
PUBLISH_DONE = "PUBLISHED"
PUBLISH_FAILED = "FAILED"

# A running job's owner refreshes its heartbeat every few seconds; older than this = owner is gone.
STALE_AFTER_S = 30.0

_SCHEMA = """
CREATE TABLE IF NOT EXISTS validations (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    job_key TEXT NOT NULL UNIQUE,
    registry TEXT NOT NULL,
    model TEXT NOT NULL,
    version TEXT NOT NULL,
    trigger TEXT,
    action TEXT,
    request TEXT NOT NULL,
    status TEXT NOT NULL,
    summary TEXT,
    error TEXT,
    attempts INTEGER NOT NULL DEFAULT 0,
    created_at REAL NOT NULL,
    started_at REAL,
    finished_at REAL,
    duration_s REAL,
    report TEXT,
    verdict TEXT,
    ui_url TEXT,
    publish_status TEXT,
    publish_attempts INTEGER NOT NULL DEFAULT 0,
    publish_error TEXT,
    owner TEXT,
    heartbeat REAL
);
CREATE INDEX IF NOT EXISTS validations_model ON validations (model, id);
CREATE INDEX IF NOT EXISTS validations_version ON validations (registry, model, version, status);
"""


def _iso(ts: float | None) -> str | None:
    if ts is None:
        return None
    return datetime.fromtimestamp(ts, timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def owner_id() -> str:
    """A fresh owner token ``host:pid:nonce`` for one execution of one job.

    Host and pid tell whether the worker still lives; the nonce keeps two threads of one process apart.
    """
    return f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:12]}"


def pid_alive(pid: int) -> bool:
    """True while process ``pid`` of this host exists and is not a zombie (exited, not yet reaped)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except (OSError, IndexError):
        return True  # no /proc (or the process just went): os.kill said it exists


def owner_alive(owner: str | None, heartbeat: float | None, now: float,
                stale_after: float = STALE_AFTER_S) -> bool:
    """True when the worker that holds a job is still working on it.

    A fresh heartbeat is required in every case; on this host the process must also exist, so a worker
    killed with SIGKILL is recognised at once instead of after the heartbeat goes stale.
    """
    if not owner or heartbeat is None or now - heartbeat > stale_after:
        return False
    host, _, rest = owner.partition(":")
    pid = rest.partition(":")[0]
    if host == socket.gethostname() and pid.isdigit():
        return pid_alive(int(pid))
    return True


@dataclass
class Claim:
    """Outcome of :meth:`ResultsStore.claim`.

    state: ``run`` (you own the job now), ``done`` (already finished and published, nothing to do),
    ``busy`` (a live worker is on this very job), ``locked`` (a live worker is checking another job of
    the same model version). ``verdict`` is set when the check is done but publishing is not.
    """

    state: str
    row_id: int | None = None
    attempts: int = 0
    publish_attempts: int = 0
    verdict: Verdict | None = None


class ResultsStore:
    """Validations kept in SQLite at ``path`` (normally ``<GUARD_DATA_DIR>/results.db``)."""

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        conn = sqlite3.connect(self.path, timeout=30.0)
        try:
            # WAL lets readers (the status page) run while a worker writes; it is a property of the file.
            conn.execute("PRAGMA journal_mode=WAL")
            conn.executescript(_SCHEMA)
        finally:
            conn.close()

    @contextmanager
    def _connect(self, immediate: bool = False) -> Iterator[sqlite3.Connection]:
        # One short-lived connection per operation: safe across threads and forked processes.
        conn = sqlite3.connect(self.path, timeout=30.0, isolation_level=None)
        try:
            conn.row_factory = sqlite3.Row
            conn.execute("PRAGMA synchronous=NORMAL")
            conn.execute("BEGIN IMMEDIATE" if immediate else "BEGIN")
            try:
                yield conn
            except BaseException:
                conn.execute("ROLLBACK")
                raise
            conn.execute("COMMIT")
        finally:
            conn.close()

    # ------------------------------------------------------------------------------------- journal

    def claim(self, request: dict[str, Any], owner: str, *, job_key: str | None = None,
              ui_url: str | None = None, stale_after: float = STALE_AFTER_S) -> Claim:
        """Atomically take the job for ``owner``; see :class:`Claim` for the outcomes.

        The per-version lock lives here too: a job is not handed out while another job of the same
        registry/model/version is held by a live worker.
        """
        key = job_key or request["delivery_key"]
        now = time.time()
        with self._connect(immediate=True) as conn:
            row = conn.execute("SELECT * FROM validations WHERE job_key=?", (key,)).fetchone()
            if row is not None:
                if row["owner"] and row["owner"] != owner and owner_alive(row["owner"], row["heartbeat"],
                                                                           now, stale_after):
                    return Claim("busy", row["id"])
                if row["status"] in STATUSES and row["publish_status"] != PUBLISH_PENDING:
                    return Claim("done", row["id"])
            others = conn.execute(
                "SELECT owner, heartbeat FROM validations WHERE registry=? AND model=? AND version=? "
                "AND job_key<>? AND owner IS NOT NULL",
                (request["registry"], request["model"], str(request["version"]), key)).fetchall()
            if any(owner_alive(o["owner"], o["heartbeat"], now, stale_after) for o in others):
                return Claim("locked", row["id"] if row is not None else None)
            if row is None:
                cur = conn.execute(
                    "INSERT INTO validations (job_key, registry, model, version, trigger, action, request, "
                    "status, created_at, started_at, owner, heartbeat, ui_url) "
                    "VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?)",
                    (key, request["registry"], request["model"], str(request["version"]),
                     request.get("trigger"), request.get("action"), json.dumps(request), RUNNING, now, now,
                     owner, now, ui_url))
                return Claim("run", cur.lastrowid)
            verdict = Verdict.from_dict(json.loads(row["verdict"])) if row["verdict"] else None
            status = row["status"] if verdict is not None else RUNNING
            conn.execute(
                "UPDATE validations SET owner=?, heartbeat=?, status=?, started_at=COALESCE(started_at, ?), "
                "ui_url=COALESCE(?, ui_url) WHERE id=?", (owner, now, status, now, ui_url, row["id"]))
            return Claim("run", row["id"], row["attempts"], row["publish_attempts"], verdict)

    def heartbeat(self, job_key: str, owner: str) -> None:
        """Refresh the owner's heartbeat (called periodically while a check runs)."""
        with self._connect() as conn:
            conn.execute("UPDATE validations SET heartbeat=? WHERE job_key=? AND owner=?",
                         (time.time(), job_key, owner))

    def release(self, job_key: str, owner: str, *, retrying: bool = False, error: str | None = None,
                attempts: int | None = None) -> None:
        """Give the job up (always called when a worker leaves a job, finished or not)."""
        with self._connect(immediate=True) as conn:
            if retrying:
                conn.execute(
                    "UPDATE validations SET owner=NULL, heartbeat=NULL, status=CASE WHEN status IN "
                    "('PASSED','FAILED','ERROR') THEN status ELSE ? END, error=COALESCE(?, error), "
                    "attempts=COALESCE(?, attempts) WHERE job_key=? AND owner=?",
                    (RETRYING, error, attempts, job_key, owner))
            else:
                conn.execute("UPDATE validations SET owner=NULL, heartbeat=NULL WHERE job_key=? AND owner=?",
                             (job_key, owner))

    def record_verdict(self, job_key: str, verdict: Verdict, attempts: int | None = None) -> None:
        """Store the verdict (before publishing it, so it is never lost); publishing becomes pending."""
        with self._connect(immediate=True) as conn:
            conn.execute(
                "UPDATE validations SET status=?, summary=?, error=?, finished_at=?, duration_s=?, report=?, "
                "verdict=?, publish_status=?, attempts=COALESCE(?, attempts) WHERE job_key=?",
                (verdict.status, verdict.summary, verdict.error, time.time(), verdict.duration_s,
                 json.dumps(_report(verdict)), json.dumps(verdict.to_dict()), PUBLISH_PENDING, attempts,
                 job_key))

    def record_publish(self, job_key: str, *, ok: bool, error: str | None = None,
                       final: bool = False) -> int:
        """Record a publish attempt; returns the number of attempts so far.

        ``ok`` → published; a failure stays pending (to be retried) unless ``final``.
        """
        status = PUBLISH_DONE if ok else (PUBLISH_FAILED if final else PUBLISH_PENDING)
        with self._connect(immediate=True) as conn:
            conn.execute(
                "UPDATE validations SET publish_status=?, publish_error=?, "
                "publish_attempts=publish_attempts+1 WHERE job_key=?",
                (status, None if ok else error, job_key))
            row = conn.execute("SELECT publish_attempts FROM validations WHERE job_key=?",
                               (job_key,)).fetchone()
        return int(row["publish_attempts"]) if row else 0

    def unfinished(self, stale_after: float = STALE_AFTER_S) -> list[tuple[str, dict[str, Any]]]:
        """Jobs nobody is working on that still need work: no verdict yet, or verdict not published.

        Returns ``(job_key, request_dict)`` pairs, oldest first.
        """
        now = time.time()
        with self._connect() as conn:
            rows = conn.execute(
                "SELECT job_key, request, owner, heartbeat FROM validations WHERE status IN (?,?,?) "
                "OR publish_status=? ORDER BY id", (QUEUED, RUNNING, RETRYING, PUBLISH_PENDING)).fetchall()
        return [(r["job_key"], json.loads(r["request"])) for r in rows
                if not owner_alive(r["owner"], r["heartbeat"], now, stale_after)]

    # ------------------------------------------------------------------------------------- reading

    def get(self, job_key: str) -> dict[str, Any] | None:
        """One validation by job key (the delivery key), in the shape of :meth:`recent`."""
        with self._connect() as conn:
            row = conn.execute("SELECT * FROM validations WHERE job_key=?", (job_key,)).fetchone()
        return _row_dict(row) if row else None

    def recent(self, limit: int = 50, model: str | None = None) -> list[dict[str, Any]]:
        """Newest validations first, optionally only those of ``model``."""
        limit = max(1, min(int(limit), 1000))
        with self._connect() as conn:
            if model is None:
                rows = conn.execute("SELECT * FROM validations ORDER BY id DESC LIMIT ?", (limit,)).fetchall()
            else:
                rows = conn.execute("SELECT * FROM validations WHERE model=? ORDER BY id DESC LIMIT ?",
                                    (model, limit)).fetchall()
        return [_row_dict(r) for r in rows]


def open_store(settings: Settings) -> ResultsStore:
    """The results store of ``settings``: every caller opens it here, so the store is chosen in one place."""
    return ResultsStore(Path(settings.data_dir) / "results.db")


def _report(verdict: Verdict) -> dict[str, Any]:
    from listener.verdict import render_report_json

    return json.loads(render_report_json(verdict))


def _row_dict(row: sqlite3.Row) -> dict[str, Any]:
    return {
        "id": row["id"],
        "job_key": row["job_key"],
        "registry": row["registry"],
        "model": row["model"],
        "version": row["version"],
        "trigger": row["trigger"],
        "action": row["action"],
        "status": row["status"],
        "summary": row["summary"],
        "error": row["error"],
        "attempts": row["attempts"],
        "created_at": _iso(row["created_at"]),
        "started_at": _iso(row["started_at"]),
        "finished_at": _iso(row["finished_at"]),
        "duration_s": row["duration_s"],
        "report": json.loads(row["report"]) if row["report"] else None,
        "ui_url": row["ui_url"],
        "publish_status": row["publish_status"],
        "publish_error": row["publish_error"],
    }
