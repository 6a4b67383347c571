"""Exclusion of concurrent checks of one model version across hosts that share a Redis queue.

On one host the claim in the results store already keeps two checks of a version apart. Hosts that
share a Redis queue do not share a results store, so there the claim is backed by a Redis lock with a
short time-to-live, refreshed by the job's heartbeat: a host that dies frees the version within
``TTL_S`` seconds.
"""

from __future__ import annotations

import logging

from listener.config import Settings

log = logging.getLogger(__name__)

TTL_S = 30


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


def version_lock(settings: Settings, registry: str, model: str, version: str) -> NoLock | RedisVersionLock:
    """The lock that keeps checks of this version apart for the configured queue."""
    queue_url = settings.queue_url
    if queue_url.startswith(("redis://", "rediss://")):
        return RedisVersionLock(queue_url, registry, model, str(version))
    return NoLock()
