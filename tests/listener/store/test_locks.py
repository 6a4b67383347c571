"""Version locks held across hosts: two stores on one database, each with its own engine."""

from __future__ import annotations

import time
from collections.abc import Callable

from listener.store import Store, owner_id, version_lock_key


def test_one_holder_per_version_across_two_engines(open_store: Callable[..., Store]):
    host_a, host_b = open_store(), open_store()
    first = host_a.version_lock("mlflow", "m", "1", owner_id(), ttl_s=30)
    second = host_b.version_lock("mlflow", "m", "1", owner_id(), ttl_s=30)
    other_version = host_b.version_lock("mlflow", "m", "2", owner_id(), ttl_s=30)
    assert first.acquire()
    assert first.acquire()  # re-taking one's own lock is fine
    assert not second.acquire()
    assert other_version.acquire()
    assert host_b.lock_holder(version_lock_key("mlflow", "m", "1")) == first.owner
    first.release()
    assert host_a.lock_holder(version_lock_key("mlflow", "m", "1")) is None
    assert second.acquire()
    assert not first.acquire()
    second.release()
    other_version.release()


def test_a_lock_of_a_host_that_died_expires_and_refresh_keeps_it(open_store: Callable[..., Store]):
    host_a, host_b = open_store(), open_store()
    dying = host_a.version_lock("mlflow", "m", "1", owner_id(), ttl_s=1)
    kept = host_a.version_lock("mlflow", "m", "2", owner_id(), ttl_s=1)
    assert dying.acquire() and kept.acquire()
    for _ in range(3):
        time.sleep(0.5)
        kept.refresh()
    # The refreshed lock is still held; the one nobody refreshed is free for another host.
    assert not host_b.version_lock("mlflow", "m", "2", owner_id(), ttl_s=1).acquire()
    taker = host_b.version_lock("mlflow", "m", "1", owner_id(), ttl_s=30)
    assert taker.acquire()
    # The host that came back must not free what is no longer its own.
    assert host_a.release_lock(dying.key, dying.owner) is False
    assert host_a.refresh_lock(dying.key, dying.owner) is False
    assert host_b.lock_holder(dying.key) == taker.owner
    taker.release()
    kept.release()
