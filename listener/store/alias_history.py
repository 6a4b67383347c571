"""Alias history and sweep marks.

Every alias event and every alias the sweep observes is recorded (model, alias, version, when, source),
so the guard can tell which version held an alias before, for instance to move a protected alias back
off a version that failed. ``version`` None records an alias that was removed.

Sweep marks are named high-water marks (for example the newest version timestamp a sweep has covered).
:meth:`Marks.advance_mark` only ever moves a mark forward, so two hosts sweeping at once cannot move it
back.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from sqlalchemy import Connection, insert, select

from listener.store.database import Database
from listener.store.engine import dialect_insert
from listener.store.schema import alias_events as events
from listener.store.schema import sweep_marks as marks

SOURCE_WEBHOOK = "webhook"
SOURCE_SWEEP = "sweep"
SOURCE_GUARD = "guard"


@dataclass(frozen=True)
class AliasEvent:
    """One recorded alias holder: ``version`` held ``alias`` of ``model`` at ``seen_at`` (epoch seconds)."""

    registry: str
    model: str
    alias: str
    version: str | None
    seen_at: float
    source: str


def _event(row: Any) -> AliasEvent:
    return AliasEvent(row.registry, row.model, row.alias, row.version, float(row.seen_at), row.source)


class Aliases(Database):
    """Record alias events and observations; ask who held an alias."""

    def record_alias(self, registry: str, model: str, alias: str, version: str | None, source: str, *,
                     seen_at: float | None = None, if_changed: bool = False) -> AliasEvent | None:
        """Record that ``version`` holds ``alias`` now (None: the alias was removed).

        ``if_changed``: record only when the newest record names another version (what a periodic sweep
        uses, so the history grows with changes, not with sweeps). Returns the event, or None when
        nothing was recorded.
        """
        version = None if version is None else str(version)

        def work(conn: Connection) -> AliasEvent | None:
            if if_changed:
                newest = conn.execute(_history(registry, model, alias).limit(1)).first()
                if newest is not None and newest.version == version:
                    return None
            when = self.now(conn) if seen_at is None else float(seen_at)
            conn.execute(insert(events).values(registry=registry, model=model, alias=alias, version=version,
                                               seen_at=when, source=source))
            return AliasEvent(registry, model, alias, version, when, source)
        return self._write(work, "record_alias")

    def alias_history(self, registry: str, model: str, alias: str, limit: int = 100) -> list[AliasEvent]:
        """Recorded holders of ``alias``, newest first."""
        query = _history(registry, model, alias).limit(max(1, int(limit)))
        return self._read(lambda conn: [_event(r) for r in conn.execute(query)], "alias_history")

    def alias_holder(self, registry: str, model: str, alias: str) -> AliasEvent | None:
        """The newest record of ``alias`` (its version is None when the alias was removed)."""
        query = _history(registry, model, alias).limit(1)

        def work(conn: Connection) -> AliasEvent | None:
            row = conn.execute(query).first()
            return _event(row) if row else None
        return self._read(work, "alias_holder")

    def previous_holder(self, registry: str, model: str, alias: str,
                        excluding: str | None = None) -> AliasEvent | None:
        """The newest holder of ``alias`` other than ``excluding`` (default: the current holder).

        Removals are skipped: the answer always names a version. None when no other version ever held it.
        """
        def work(conn: Connection) -> AliasEvent | None:
            rows = iter(conn.execute(_history(registry, model, alias)))
            skip = None if excluding is None else str(excluding)
            if skip is None:
                newest = next(rows, None)
                if newest is None:
                    return None
                skip = newest.version
            for row in rows:
                if row.version is not None and row.version != skip:
                    return _event(row)
            return None
        return self._read(work, "previous_holder")


def _history(registry: str, model: str, alias: str) -> Any:
    return (select(events).where(events.c.registry == registry, events.c.model == model,
                                 events.c.alias == alias)
            .order_by(events.c.seen_at.desc(), events.c.id.desc()))


class Marks(Database):
    """Named high-water marks of the sweep."""

    def get_mark(self, name: str, default: float | None = None) -> float | None:
        """The mark called ``name``, or ``default`` when it was never set."""
        value = self._read(lambda conn: conn.execute(select(marks.c.value).where(marks.c.name == name))
                           .scalar(), "get_mark")
        return default if value is None else float(value)

    def set_mark(self, name: str, value: float) -> None:
        """Set the mark ``name`` to ``value`` (forward or back)."""
        self._write(lambda conn: self._upsert_mark(conn, name, value, forward_only=False), "set_mark")

    def advance_mark(self, name: str, value: float) -> float:
        """Move the mark ``name`` forward to ``value`` (never back); returns the mark afterwards."""
        def work(conn: Connection) -> float:
            self._upsert_mark(conn, name, value, forward_only=True)
            return float(conn.execute(select(marks.c.value).where(marks.c.name == name)).scalar_one())
        return self._write(work, "advance_mark")

    def _upsert_mark(self, conn: Connection, name: str, value: float, forward_only: bool) -> None:
        statement = dialect_insert(conn)(marks).values(name=name, value=float(value),
                                                       updated_at=self.now(conn))
        conn.execute(statement.on_conflict_do_update(
            index_elements=[marks.c.name],
            set_={"value": statement.excluded.value, "updated_at": statement.excluded.updated_at},
            where=(marks.c.value < statement.excluded.value) if forward_only else None))
