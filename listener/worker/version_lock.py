"""Exclusion of concurrent checks of one model version across hosts.

The claim in the store already keeps two checks of a version apart among the processes that share the
store. With a shared store (PostgreSQL) the lock is a row of that store; hosts that share only a Redis
queue (each with its own SQLite store) take a Redis lock instead. Either has a short time-to-live,
refreshed by the job's heartbeat: a host that dies frees the version within ``TTL_S`` seconds.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterator
from contextlib import contextmanager

from listener.config import Settings
from listener.store import Store, StoreVersionLock

log = logging.getLogger(__name__)

TTL_S = 30
# The job's heartbeat (store) and the lock's time-to-live are refreshed this often while a check runs.
HEARTBEAT_S = 5.0


class NoLock:
    """A single-host queue (SQLite): nothing to share, always acquired."""

    def acquire(self) -> bool:
        return True

    def refresh(self) -> None:
        """Nothing to refresh."""

    def release(self) -> None:
        """Nothing to release."""


class RedisVersionLock:
    """A Redis lock named after the registry, model and version, refreshed while the check runs."""

    def __init__(self, queue_url: str, registry: str, model: str, version: str, ttl_s: int = TTL_S) -> None:
        import redis

        self._client = redis.Redis.from_url(queue_url)
        self._lock = self._client.lock(f"guard:version-lock:{registry}:{model}:{version}", timeout=ttl_s,
                                       blocking=False)

    def acquire(self) -> bool:
        """Take the lock if no other host holds it."""
        return bool(self._lock.acquire(blocking=False))

    def refresh(self) -> None:
        """Reset the time-to-live (called by the job's heartbeat)."""
        self._lock.reacquire()

    def release(self) -> None:
        """Give the lock up; a lock that already expired is not an error."""
        from redis.exceptions import LockError

        try:
            self._lock.release()
        except LockError:
            log.warning("version lock %s had expired before release", self._lock.name)
        finally:
            self._client.close()


VersionLock = NoLock | RedisVersionLock | StoreVersionLock


def version_lock(settings: Settings, registry: str, model: str, version: str, *, store: Store | None = None,
                 owner: str | None = None) -> VersionLock:
    """The lock that keeps checks of this version apart for the configured store and queue."""
    if store is not None and owner and store.shared:
        return store.version_lock(registry, model, str(version), owner, ttl_s=TTL_S)
    queue_url = settings.queue_url
    if queue_url.startswith(("redis://", "rediss://")):
        return RedisVersionLock(queue_url, registry, model, str(version))
    return NoLock()


@contextmanager
def kept_alive(lock: VersionLock, store: Store, job_key: str, owner: str) -> Iterator[None]:
    """While the block runs, refresh the job's heartbeat and the version lock every ``HEARTBEAT_S``."""
    stop = threading.Event()

    def beat() -> None:
        while not stop.wait(HEARTBEAT_S):
            try:
                store.heartbeat(job_key, owner)
                lock.refresh()
            except Exception:  # noqa: BLE001 - a missed beat only makes the job look stale sooner
                log.warning("heartbeat for %s failed", job_key, exc_info=True)

    thread = threading.Thread(target=beat, name=f"heartbeat-{job_key[:16]}", daemon=True)
    thread.start()
    try:
        yield
    finally:
        stop.set()
        thread.join(timeout=HEARTBEAT_S)
