"""Alerts sent about verdicts: one row per verdict (its job key), so each alert goes out once.

The row is created by whichever process finishes the verdict first (a retried job or a second host
finds it there and sends nothing); each attempt to send takes a short lease on it, so two processes
never send the same alert at once. A failed attempt leaves the row pending with the time of the next
attempt; after the last one it is ``failed``.
"""

from __future__ import annotations

import json
from typing import Any

from sqlalchemy import Connection, or_, select, update

from listener.store.database import Database
from listener.store.engine import dialect_insert
from listener.store.schema import notifications as table
from listener.store.schema import validations

NOTIFY_PENDING = "pending"
NOTIFY_SENT = "sent"
NOTIFY_FAILED = "failed"
# How long one attempt may hold an alert before another process may try it.
LEASE_S = 120.0
# A lease: the attempts made so far and the URL indexes still owed the message (None: all of them).
Lease = tuple[int, set[int] | None]


class Notifications(Database):
    """Create, lease and settle the one alert of each verdict."""

    def open_notification(self, job_key: str) -> bool:
        """Create the alert of ``job_key``'s verdict; False when it exists already (sent or under way)."""
        def work(conn: Connection) -> bool:
            now = self.now(conn)
            statement = dialect_insert(conn)(table).values(job_key=job_key, status=NOTIFY_PENDING, attempts=0,
                                                            next_at=now, created_at=now)
            created = conn.execute(statement.on_conflict_do_nothing(index_elements=[table.c.job_key])
                                   .returning(table.c.job_key))
            return created.first() is not None
        return self._write(work, "open_notification")

    def lease_notification(self, job_key: str, lease_s: float = LEASE_S) -> Lease | None:
        """Take the alert for one attempt when it is pending and due.

        Returns the attempts made so far and the indexes of the URLs still owed the message (None: all).
        None when it was sent or given up, is not due yet, or another process holds it now.
        """
        def work(conn: Connection) -> Lease | None:
            now = self.now(conn)
            taken = conn.execute(
                update(table).where(table.c.job_key == job_key, table.c.status == NOTIFY_PENDING,
                                    table.c.next_at <= now,
                                    or_(table.c.lease_until.is_(None), table.c.lease_until < now))
                .values(lease_until=now + lease_s))
            if taken.rowcount != 1:
                return None
            row = conn.execute(select(table.c.attempts, table.c.owed).where(table.c.job_key == job_key)).one()
            return int(row.attempts), (None if row.owed is None else set(json.loads(row.owed)))
        return self._write(work, "lease_notification")

    def settle_notification(self, job_key: str, *, sent: bool, error: str | None = None,
                            retry_at: float | None = None, owed: set[int] | None = None) -> None:
        """Record an attempt: sent, failed for good (``retry_at`` None) or to be tried at ``retry_at``
        for the URLs ``owed`` (indexes into ``GUARD_NOTIFY``; the others have it)."""
        def work(conn: Connection) -> None:
            now = self.now(conn)
            values: dict[str, Any] = {"attempts": table.c.attempts + 1, "lease_until": None, "error": error,
                                      "owed": None if owed is None else json.dumps(sorted(owed))}
            if sent:
                values.update(status=NOTIFY_SENT, sent_at=now)
            elif retry_at is None:
                values.update(status=NOTIFY_FAILED)
            else:
                values.update(next_at=retry_at)
            conn.execute(update(table).where(table.c.job_key == job_key).values(**values))
        self._write(work, "settle_notification")

    def notification(self, job_key: str) -> dict[str, Any] | None:
        """The alert row of ``job_key`` (status, attempts, error, ...), or None."""
        def work(conn: Connection) -> dict[str, Any] | None:
            row = conn.execute(select(table).where(table.c.job_key == job_key)).mappings().first()
            return dict(row) if row else None
        return self._read(work, "notification")

    def verdict_of(self, job_key: str) -> tuple[dict[str, Any], str | None] | None:
        """The stored verdict of a job (``Verdict.to_dict()``) and its version page, or None."""
        query = select(validations.c.verdict, validations.c.ui_url).where(validations.c.job_key == job_key)

        def work(conn: Connection) -> tuple[dict[str, Any], str | None] | None:
            row = conn.execute(query).first()
            return (json.loads(row.verdict), row.ui_url) if row is not None and row.verdict else None
        return self._read(work, "verdict_of")

    def due_notifications(self, limit: int = 100) -> list[str]:
        """Pending alerts due now that nobody holds (their process died, or a retry is due)."""
        def work(conn: Connection) -> list[str]:
            now = self.now(conn)
            query = (select(table.c.job_key).where(
                table.c.status == NOTIFY_PENDING, table.c.next_at <= now,
                or_(table.c.lease_until.is_(None), table.c.lease_until < now))
                .order_by(table.c.next_at).limit(limit))
            return [r.job_key for r in conn.execute(query)]
        return self._read(work, "due_notifications")
