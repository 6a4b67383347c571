"""PostgreSQL restarted in the middle of a sequence of writes: nothing is lost, ready() says why."""

from __future__ import annotations

import threading
import time

import pytest

from listener.store import Store, owner_id
from tests.listener.store.conftest import needs_postgres
from tests.listener.store.helpers import request, verdict
from tests.support.postgres import PostgresServer

JOBS = 30
BEFORE_OUTAGE = 10


def _run_jobs(store: Store, outage_started: threading.Event, first_done: threading.Event,
              finished: list[str], errors: list[BaseException]) -> None:
    """What a worker writes per job: claim, verdict, publish record, release."""
    try:
        for i in range(JOBS):
            if i == BEFORE_OUTAGE:
                first_done.set()
                outage_started.wait(60)
            key, me = f"job-{i}", owner_id()
            assert store.claim(request(key, version=str(i + 1)), me).state == "run"
            store.heartbeat(key, me)
            store.record_verdict(key, verdict("PASSED", version=str(i + 1)))
            store.record_publish(key, ok=True)
            store.release(key, me)
            finished.append(key)
    except BaseException as exc:  # noqa: BLE001 - reported by the test
        errors.append(exc)


@needs_postgres
def test_writes_wait_out_a_postgres_restart_and_ready_says_why(restartable_postgres: PostgresServer):
    store = Store(restartable_postgres.url, write_retry_s=120.0, read_retry_s=0.5)
    store.migrate()
    assert store.ready() is None
    outage_started, first_done = threading.Event(), threading.Event()
    finished: list[str] = []
    errors: list[BaseException] = []
    worker = threading.Thread(target=_run_jobs, args=(store, outage_started, first_done, finished, errors))
    worker.start()
    try:
        assert first_done.wait(60)
        restartable_postgres.stop()
        outage_started.set()
        reason = store.ready()
        assert reason is not None and "unreachable" in reason
        assert str(restartable_postgres.port) in reason and "password" not in reason.lower()
        with pytest.raises(Exception, match="(?i)connect|refused"):
            store.recent()  # a reader gives up soon and says so (the status page answers 503)
        time.sleep(1.0)
        # The database is down: the worker cannot have got past its next write.
        assert worker.is_alive() and len(finished) == BEFORE_OUTAGE
        restartable_postgres.start()
    finally:
        outage_started.set()
        worker.join(180)
    assert errors == []
    assert not worker.is_alive()
    assert store.ready() is None
    rows = store.recent(limit=100)
    assert sorted(r["job_key"] for r in rows) == sorted(f"job-{i}" for i in range(JOBS))
    assert {(r["status"], r["publish_status"]) for r in rows} == {("PASSED", "PUBLISHED")}
    assert store.unfinished() == []
    store.dispose()


@needs_postgres
def test_a_store_opened_while_postgres_is_down_reports_it_and_recovers(
        restartable_postgres: PostgresServer):
    restartable_postgres.stop()
    store = Store(restartable_postgres.url, write_retry_s=60.0)  # opening never waits for the database
    reason = store.ready()
    assert reason is not None and "unreachable" in reason
    claimed: list[str] = []
    writer = threading.Thread(target=lambda: claimed.append(store.claim(request("k1"), owner_id()).state))
    writer.start()
    time.sleep(1.0)
    assert writer.is_alive()  # the first write waits for the database, it is not dropped
    restartable_postgres.start()
    writer.join(90)
    assert claimed == ["run"]
    assert store.ready() is None and store.get("k1")["status"] == "RUNNING"
    store.dispose()
