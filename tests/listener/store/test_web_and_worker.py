"""The listener and the worker on a shared store: every host's page lists every validation, /readyz
names the store while its database is down, and a store that stays down puts the job back."""

from __future__ import annotations

from pathlib import Path

import pytest

from listener import intake
from listener.config import Settings
from listener.store import Store, StoreVersionLock, get_store, owner_id
from listener.web import create_app
from listener.worker.admission import RetryLater
from listener.worker.job import STORE_WAIT_S, process_job
from listener.worker.version_lock import NoLock, version_lock
from tests.listener.store.conftest import needs_postgres
from tests.listener.store.helpers import request, verdict
from tests.support.postgres import PostgresServer
from tests.support.procs import free_port


def _host(tmp_path: Path, name: str, store_url: str) -> Settings:
    # A local tracking store: readiness then depends on the queue and the store only.
    return Settings(data_dir=tmp_path / name, store_url=store_url,
                    tracking_uri=f"file://{tmp_path / 'mlruns'}")


@needs_postgres
def test_a_validation_written_on_one_host_is_listed_on_every_host(tmp_path: Path, postgres: PostgresServer):
    url = postgres.new_database("two_hosts")
    host_a, host_b = _host(tmp_path, "a", url), _host(tmp_path, "b", url)
    try:
        worker_a = get_store(host_a.store_url)
        me = owner_id()
        worker_a.claim(request("k1", model="fraud", version="4"), me)
        worker_a.record_verdict("k1", verdict("FAILED", model="fraud", version="4"))
        worker_a.record_publish("k1", ok=True)
        worker_a.release("k1", me)
        for settings in (host_a, host_b):
            rows = create_app(settings).test_client().get("/api/validations").json["validations"]
            assert [(r["model"], r["version"], r["status"]) for r in rows] == [("fraud", "4", "FAILED")]
        assert not (tmp_path / "b" / "results.db").exists()  # host B keeps no results of its own
    finally:
        intake.close_all()


@needs_postgres
def test_readyz_says_the_store_is_down_and_recovers(tmp_path: Path, restartable_postgres: PostgresServer):
    settings = _host(tmp_path, "a", restartable_postgres.url)
    try:
        client = create_app(settings).test_client()
        assert client.get("/readyz").json == {"status": "ready"}
        restartable_postgres.stop()
        answer = client.get("/readyz")
        assert answer.status_code == 503
        [reason] = answer.json["reasons"]
        assert reason.startswith("store ") and "unreachable" in reason
        assert f"127.0.0.1:{restartable_postgres.port}" in reason
        listing = client.get("/api/validations")
        assert listing.status_code == 503 and listing.json["reason"] == "results store unavailable"
        restartable_postgres.start()
        assert client.get("/readyz").json == {"status": "ready"}
        assert client.get("/api/validations").json == {"validations": []}
    finally:
        intake.close_all()


def test_a_job_whose_store_stays_down_is_retried_later_not_dropped(tmp_path: Path):
    down = f"postgresql://guard@127.0.0.1:{free_port()}/guard"  # nothing listens there
    settings = _host(tmp_path, "a", down)
    store = Store(down, write_retry_s=0.5)
    with pytest.raises(RetryLater, match="store unavailable") as info:
        process_job(request("k1"), settings, store=store)
    assert info.value.delay == STORE_WAIT_S


def test_the_worker_takes_the_store_lock_when_the_store_is_shared(store: Store, tmp_path: Path):
    settings = Settings(data_dir=tmp_path, store_url=store.url)
    lock = version_lock(settings, "mlflow", "m", "1", store=store, owner=owner_id())
    # A shared store keeps hosts apart itself; an embedded one needs nothing on a single-host queue.
    assert isinstance(lock, StoreVersionLock if store.shared else NoLock)
