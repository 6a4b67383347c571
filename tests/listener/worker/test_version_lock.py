"""Checks of one version are kept apart across hosts that share a Redis queue (real redis-server)."""

from __future__ import annotations

import shutil
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from listener.config import Settings
from listener.protocol import ValidationRequest
from listener.store import get_store
from listener.worker.admission import RetryLater
from listener.worker.job import process_job
from listener.worker.version_lock import NoLock, RedisVersionLock, version_lock
from tests.support.procs import RedisServer

REDIS_SERVER = shutil.which("redis-server")
needs_redis = pytest.mark.skipif(REDIS_SERVER is None, reason="redis-server is not installed on this machine")


@pytest.fixture
def redis_url(tmp_path: Path) -> Iterator[str]:
    server = RedisServer(tmp_path / "redis", executable=REDIS_SERVER or "redis-server").start()
    yield server.url
    server.stop()


def test_sqlite_queue_needs_no_shared_lock(tmp_path: Path):
    settings = Settings(data_dir=tmp_path)
    assert isinstance(version_lock(settings, "mlflow", "m", "1"), NoLock)


@needs_redis
def test_one_holder_per_version_until_release_or_expiry(redis_url: str):
    first = RedisVersionLock(redis_url, "mlflow", "m", "1", ttl_s=2)
    second = RedisVersionLock(redis_url, "mlflow", "m", "1", ttl_s=2)
    other_version = RedisVersionLock(redis_url, "mlflow", "m", "2", ttl_s=2)
    assert first.acquire()
    assert not second.acquire()
    assert other_version.acquire()
    first.release()
    assert second.acquire()
    # A host that dies never releases: the lock frees itself once its time-to-live runs out.
    time.sleep(2.5)
    assert first.acquire()
    first.release()
    other_version.release()


@needs_redis
def test_a_job_waits_while_another_host_checks_the_version(tmp_path: Path, redis_url: str):
    settings = Settings(data_dir=tmp_path / "guard", queue_url=redis_url, tracking_uri="http://127.0.0.1:9")
    request = ValidationRequest(registry="mlflow", model="m", version="1", trigger="model_version.created",
                                action="seal_and_check", to_stage=None, alias=None, gate=False,
                                delivery_key="lock-test-1", received_at=time.time())
    other_host = RedisVersionLock(redis_url, "mlflow", "m", "1")
    assert other_host.acquire()
    store = get_store(settings.store_url)
    with pytest.raises(RetryLater, match="another host"):
        process_job(request.to_dict(), settings, store=store)
    # The job was given up, not finished: it can be claimed again once the version is free.
    [row] = [r for r in store.recent() if r["job_key"] == "lock-test-1"]
    assert row["status"] not in ("PASSED", "FAILED", "ERROR")
    other_host.release()


def test_an_unreachable_lock_server_gives_the_job_back(tmp_path: Path):
    from tests.support.procs import free_port

    settings = Settings(data_dir=tmp_path / "guard", queue_url=f"redis://127.0.0.1:{free_port()}/0",
                        tracking_uri="http://127.0.0.1:9")
    request = ValidationRequest(registry="mlflow", model="m", version="1", trigger="model_version.created",
                                action="seal_and_check", to_stage=None, alias=None, gate=False,
                                delivery_key="lock-test-2", received_at=time.time())
    store = get_store(settings.store_url)
    with pytest.raises(RetryLater, match="version lock"):
        process_job(request.to_dict(), settings, store=store)
    # Released, not left claimed by a live worker: recovery or the retry can take it again.
    assert "lock-test-2" in [key for key, _ in store.unfinished()]
