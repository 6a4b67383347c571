"""One alert per verdict across hosts: created once, leased for each attempt, settled with its outcome."""

from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor

from listener.store import NOTIFY_FAILED, NOTIFY_PENDING, NOTIFY_SENT


def test_only_one_host_opens_the_alert_of_a_verdict(open_store):
    hosts = [open_store() for _ in range(4)]
    with ThreadPoolExecutor(4) as pool:
        opened = list(pool.map(lambda h: h.open_notification("job-1"), hosts))
    assert opened.count(True) == 1
    assert hosts[0].notification("job-1")["status"] == NOTIFY_PENDING


def test_one_attempt_at_a_time_and_a_sent_alert_is_never_leased_again(open_store):
    host_a, host_b = open_store(), open_store()
    host_a.open_notification("job-2")
    with ThreadPoolExecutor(2) as pool:
        leases = list(pool.map(lambda h: h.lease_notification("job-2"), (host_a, host_b)))
    assert sorted(leases, key=str) == [(0, None), None] or sorted(leases, key=str) == [None, (0, None)]
    assert host_b.due_notifications() == []  # held by the lease
    host_a.settle_notification("job-2", sent=True)
    assert host_b.lease_notification("job-2") is None
    row = host_b.notification("job-2")
    assert row["status"] == NOTIFY_SENT and row["attempts"] == 1 and row["sent_at"] is not None


def test_a_failed_attempt_waits_for_its_retry_then_only_the_urls_still_owed(store):
    store.open_notification("job-3")
    assert store.lease_notification("job-3") == (0, None)
    store.settle_notification("job-3", sent=False, error="HTTP 500", retry_at=time.time() + 3600, owed={1})
    assert store.lease_notification("job-3") is None and store.due_notifications() == []
    store.settle_notification("job-3", sent=False, error="HTTP 500", retry_at=0.0, owed={1})
    assert store.due_notifications() == ["job-3"]
    assert store.lease_notification("job-3") == (2, {1})
    store.settle_notification("job-3", sent=False, error="gave up")
    row = store.notification("job-3")
    assert row["status"] == NOTIFY_FAILED and row["error"] == "gave up" and row["attempts"] == 3


def test_an_expired_lease_is_taken_over(store):
    store.open_notification("job-4")
    assert store.lease_notification("job-4", lease_s=0.0) == (0, None)
    time.sleep(0.05)
    assert store.due_notifications() == ["job-4"]
    assert store.lease_notification("job-4") == (0, None)
