"""A lock per model version, held across hosts that share the store.

A lock is a row (``version_locks``) with an owner and an expiry, refreshed by the job's heartbeat: a host
that dies frees the version once the expiry passes, like the Redis lock it can replace. It behaves the
same on SQLite (one host) and PostgreSQL (any number), and survives a database restart, which a
session-scoped advisory lock would not. Expiry is judged by the database's clock.
"""

from __future__ import annotations

from sqlalchemy import Connection, delete, select, update

from listener.store.database import Database
from listener.store.engine import dialect_insert
from listener.store.schema import version_locks as locks

LOCK_TTL_S = 30.0


def version_lock_key(registry: str, model: str, version: str) -> str:
    """The name of the lock of one model version."""
    return f"{registry}:{model}:{version}"


class Locks(Database):
    """Take, refresh and give up named locks with an expiry."""

    def acquire_lock(self, key: str, owner: str, ttl_s: float = LOCK_TTL_S) -> bool:
        """Take ``key`` for ``owner`` unless someone else holds it unexpired; re-taking your own is fine."""
        def work(conn: Connection) -> bool:
            now = self.now(conn)
            statement = dialect_insert(conn)(locks).values(lock_key=key, owner=owner, expires_at=now + ttl_s)
            statement = statement.on_conflict_do_update(
                index_elements=[locks.c.lock_key],
                set_={"owner": statement.excluded.owner, "expires_at": statement.excluded.expires_at},
                where=(locks.c.expires_at < now) | (locks.c.owner == owner))
            conn.execute(statement)
            holder = conn.execute(select(locks.c.owner).where(locks.c.lock_key == key)).scalar()
            return holder == owner
        return self._write(work, "acquire_lock")

    def refresh_lock(self, key: str, owner: str, ttl_s: float = LOCK_TTL_S) -> bool:
        """Push the expiry of ``owner``'s lock back; False when it is no longer ``owner``'s."""
        def work(conn: Connection) -> bool:
            now = self.now(conn)
            result = conn.execute(update(locks).where(locks.c.lock_key == key, locks.c.owner == owner)
                                  .values(expires_at=now + ttl_s))
            return result.rowcount == 1
        return self._write(work, "refresh_lock")

    def release_lock(self, key: str, owner: str) -> bool:
        """Give ``owner``'s lock up; False when it had expired and been taken by someone else, or was gone."""
        def work(conn: Connection) -> bool:
            result = conn.execute(delete(locks).where(locks.c.lock_key == key, locks.c.owner == owner))
            return result.rowcount == 1
        return self._write(work, "release_lock")

    def lock_holder(self, key: str) -> str | None:
        """The owner of an unexpired lock on ``key``, or None."""
        def work(conn: Connection) -> str | None:
            now = self.now(conn)
            return conn.execute(select(locks.c.owner).where(locks.c.lock_key == key,
                                                            locks.c.expires_at >= now)).scalar()
        return self._read(work, "lock_holder")

    def version_lock(self, registry: str, model: str, version: str, owner: str,
                     ttl_s: float = LOCK_TTL_S) -> StoreVersionLock:
        """The lock of one model version for ``owner``, with the acquire/refresh/release of the worker."""
        return StoreVersionLock(self, version_lock_key(registry, model, str(version)), owner, ttl_s)


class StoreVersionLock:
    """One version's lock held by one job; same methods as the worker's other version locks."""

    def __init__(self, store: Locks, key: str, owner: str, ttl_s: float = LOCK_TTL_S) -> None:
        self.store = store
        self.key = key
        self.owner = owner
        self.ttl_s = ttl_s

    def acquire(self) -> bool:
        """Take the lock if no other job, on any host, holds it."""
        return self.store.acquire_lock(self.key, self.owner, self.ttl_s)

    def refresh(self) -> None:
        """Push the expiry back (called by the job's heartbeat)."""
        self.store.refresh_lock(self.key, self.owner, self.ttl_s)

    def release(self) -> None:
        """Give the lock up; a lock that already expired is not an error."""
        self.store.release_lock(self.key, self.owner)
