"""First contact with a registry, and the progress of a deliberate backfill.

A new deployment watches a registry from the moment the guard first started against it: that moment is
recorded once per registry (:meth:`FirstContact.first_contact`) and the first catch-up sweep starts there,
so the versions a registry held before the guard arrived are not touched. They are checked only by a
deliberate backfill (``guard-sweep --backfill``), whose progress is kept here one row per version, so a
backfill run again continues where it stopped and hands no version out twice.
"""

from __future__ import annotations

import time

from sqlalchemy import Connection, func, select

from listener.store.alias_history import Marks
from listener.store.engine import dialect_insert
from listener.store.schema import backfill_progress as progress
from listener.store.schema import sweep_marks as marks
from listener.store.schema import validations


def first_contact_mark(registry: str) -> str:
    """The name of the mark that holds when the guard first started against ``registry``."""
    return f"first_contact:{registry}"


class FirstContact(Marks):
    """When the guard first met each registry; which versions a backfill has handed out."""

    def first_contact(self, registry: str, now: float | None = None) -> float:
        """The moment (epoch seconds) the guard first started against ``registry``, recorded on first call.

        The earliest of ``now`` and the first validation the store holds for that registry (a deployment
        that validated versions before this mark existed started then). Never moves once recorded, even
        when two hosts start together.
        """
        name = first_contact_mark(registry)

        def work(conn: Connection) -> float:
            earliest = conn.execute(select(func.min(validations.c.created_at))
                                    .where(validations.c.registry == registry)).scalar()
            start = time.time() if now is None else float(now)
            if earliest is not None:
                start = min(start, float(earliest))
            statement = dialect_insert(conn)(marks).values(name=name, value=start, updated_at=self.now(conn))
            conn.execute(statement.on_conflict_do_nothing(index_elements=[marks.c.name]))
            return float(conn.execute(select(marks.c.value).where(marks.c.name == name)).scalar_one())
        return self._write(work, "first_contact")

    def take_for_backfill(self, registry: str, model: str, version: str, job_key: str) -> bool:
        """Record that a backfill hands out ``model`` ``version``; False when one already did."""
        def work(conn: Connection) -> bool:
            statement = dialect_insert(conn)(progress).values(
                registry=registry, model=model, version=str(version), job_key=job_key,
                queued_at=self.now(conn))
            done = conn.execute(statement.on_conflict_do_nothing(
                index_elements=[progress.c.registry, progress.c.model, progress.c.version])
                .returning(progress.c.job_key))
            return done.first() is not None
        return self._write(work, "take_for_backfill")

    def backfilled(self, registry: str) -> dict[tuple[str, str], str]:
        """Every version a backfill handed out: (model, version) -> the job key it was given."""
        query = select(progress.c.model, progress.c.version, progress.c.job_key).where(
            progress.c.registry == registry)
        return self._read(lambda conn: {(r.model, r.version): r.job_key for r in conn.execute(query)},
                          "backfilled")
