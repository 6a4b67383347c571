"""The job journal on SQLite and PostgreSQL: claims, heartbeats, releases, verdicts, recovery."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

from listener.store import Store, owner_alive, owner_id
from tests.listener.store.helpers import dead_local_owner, other_host_owner, request, verdict


def test_claim_record_publish_and_read_back(store: Store):
    me = owner_id()
    claim = store.claim(request("k1"), me, ui_url="http://ui/#/models/churn/versions/1")
    assert claim.state == "run" and claim.verdict is None and claim.row_id is not None
    assert store.heartbeat("k1", me) is True
    assert store.heartbeat("k1", owner_id()) is False  # not the owner
    store.record_verdict("k1", verdict("PASSED", duration_s=0.5))
    assert store.record_publish("k1", ok=True) == 1
    store.release("k1", me)
    row = store.get("k1")
    assert row is not None and row == store.recent()[0]
    assert row["status"] == "PASSED" and row["publish_status"] == "PUBLISHED"
    assert row["ui_url"] == "http://ui/#/models/churn/versions/1"
    assert row["started_at"].endswith("Z") and row["finished_at"].endswith("Z")
    assert row["report"]["status"] == "PASSED" and row["duration_s"] == 0.5
    assert store.unfinished() == []
    # Done is done: a duplicate of the job does not run again.
    assert store.claim(request("k1"), owner_id()).state == "done"


def test_errors_keep_their_reason_and_recent_is_newest_first(store: Store):
    for i, status in enumerate(["PASSED", "FAILED", "ERROR"]):
        me = owner_id()
        store.claim(request(f"k{i}", version=str(i + 1)), me)
        kw = {"reason": "tracking server unreachable"} if status == "ERROR" else {}
        store.record_verdict(f"k{i}", verdict(status, version=str(i + 1), **kw))
        store.release(f"k{i}", me)
    assert [r["status"] for r in store.recent()] == ["ERROR", "FAILED", "PASSED"]
    assert "tracking server unreachable" in store.recent()[0]["error"]
    assert store.latest_for_version("mlflow", "churn", "2")["status"] == "FAILED"
    assert store.latest_for_version("mlflow", "churn", "9") is None


def test_recent_filters_by_model_and_limits(store: Store):
    for i in range(5):
        store.claim(request(f"a{i}", model="alpha", version=str(i + 1)), owner_id())
    store.claim(request("b0", model="beta"), owner_id())
    assert {r["model"] for r in store.recent(model="alpha")} == {"alpha"}
    assert len(store.recent(model="alpha", limit=2)) == 2
    assert [r["model"] for r in store.recent(model="beta")] == ["beta"]
    assert store.recent(model="gamma") == []
    assert store.get("nope") is None


def test_same_version_is_locked_while_a_live_worker_holds_it(store: Store):
    first = owner_id()
    assert store.claim(request("k1"), first).state == "run"
    assert store.claim(request("k2"), owner_id()).state == "locked"
    assert store.claim(request("k3", version="2"), owner_id()).state == "run"
    # The same job claimed by a second worker while the first one lives: busy, not run twice.
    assert store.claim(request("k1"), owner_id()).state == "busy"
    store.release("k1", first)
    assert store.claim(request("k2"), owner_id()).state == "run"


def test_a_dead_worker_on_this_host_is_recognised_at_once(store: Store):
    dead = dead_local_owner()
    assert not owner_alive(dead, time.time(), time.time())
    assert store.claim(request("k1"), dead).state == "run"
    assert [k for k, _ in store.unfinished()] == ["k1"]
    assert store.unfinished()[0][1]["model"] == "churn"
    assert store.claim(request("k2"), owner_id()).state == "run"  # it does not hold the version either


def test_retrying_release_keeps_attempts_and_error(store: Store):
    me = owner_id()
    store.claim(request("k1"), me)
    store.release("k1", me, retrying=True, error="registry answered 503", attempts=2)
    row = store.get("k1")
    assert row["status"] == "RETRYING" and row["attempts"] == 2 and row["error"] == "registry answered 503"
    claim = store.claim(request("k1"), owner_id())
    assert claim.state == "run" and claim.attempts == 2


def test_verdict_stored_but_unpublished_resumes_with_the_verdict(store: Store):
    me = owner_id()
    store.claim(request("k1"), me)
    store.record_verdict("k1", verdict("FAILED"))
    assert store.record_publish("k1", ok=False, error="503 from registry") == 1
    store.release("k1", me, retrying=True)
    assert [k for k, _ in store.unfinished()] == ["k1"]
    claim = store.claim(request("k1"), owner_id())
    assert claim.state == "run" and claim.verdict is not None and claim.verdict.status == "FAILED"
    assert claim.publish_attempts == 1
    assert store.get("k1")["status"] == "FAILED"  # the verdict stays visible meanwhile


def test_final_publish_failure_is_kept_and_not_retried(store: Store):
    me = owner_id()
    store.claim(request("k1"), me)
    store.record_verdict("k1", verdict("PASSED"))
    store.record_publish("k1", ok=False, error="permission denied", final=True)
    store.release("k1", me)
    assert store.unfinished() == []
    row = store.get("k1")
    assert row["publish_status"] == "FAILED" and row["publish_error"] == "permission denied"


def test_a_job_of_a_host_that_died_is_recovered_by_another_host_exactly_once(
        open_store: Callable[..., Store]):
    host_a, host_b, host_c = open_store(), open_store(), open_store()
    owner_a = other_host_owner("host-a")
    assert host_a.claim(request("k1"), owner_a).state == "run"
    # Host A's pid means nothing here: while its heartbeat is fresh, the job is A's.
    assert host_b.take_unfinished(stale_after=1.0) == []
    assert host_b.claim(request("k1"), owner_id()).state == "busy"
    assert host_b.claim(request("k2"), owner_id()).state == "locked"
    time.sleep(1.5)  # host A never beats again
    taken = host_b.take_unfinished(stale_after=1.0)
    assert [key for key, _ in taken] == ["k1"] and taken[0][1]["delivery_key"] == "k1"
    # Another live consumer looking at the same moment does not re-enqueue it as well.
    assert host_c.take_unfinished(stale_after=1.0) == []
    owner_b = owner_id()
    assert host_b.claim(request("k1"), owner_b, stale_after=1.0).state == "run"
    assert host_a.heartbeat("k1", owner_a) is False  # A, if it came back, no longer holds it
    host_b.record_verdict("k1", verdict("PASSED"))
    host_b.record_publish("k1", ok=True)
    host_b.release("k1", owner_b)
    assert host_c.take_unfinished(stale_after=1.0) == []
    assert host_c.claim(request("k1"), owner_id()).state == "done"


def test_a_recovered_job_the_queue_lost_comes_back_after_the_grace(open_store: Callable[..., Store]):
    host_a, host_b = open_store(), open_store()
    host_a.claim(request("k1"), other_host_owner("host-a"))
    time.sleep(1.2)
    assert [k for k, _ in host_b.take_unfinished(stale_after=1.0, grace_s=1.0)] == ["k1"]
    assert host_a.take_unfinished(stale_after=1.0, grace_s=1.0) == []
    time.sleep(1.2)  # nobody claimed it: the re-enqueued copy was lost
    assert [k for k, _ in host_a.take_unfinished(stale_after=1.0, grace_s=1.0)] == ["k1"]


def test_concurrent_claims_of_one_version_on_two_hosts_let_one_run(open_store: Callable[..., Store]):
    hosts = [open_store(), open_store()]
    for host in hosts:
        host.migrate()
    start = threading.Barrier(8)
    states: list[str] = []

    def claim(n: int) -> None:
        start.wait()
        states.append(hosts[n % 2].claim(request(f"k{n}"), owner_id()).state)

    threads = [threading.Thread(target=claim, args=(n,)) for n in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(states) == ["locked"] * 7 + ["run"]


def test_finished_checks_of_a_version_and_a_job_closed_as_skipped(store: Store):
    first, second = owner_id(), owner_id()
    store.claim(request("webhook"), first)
    store.record_verdict("webhook", verdict("PASSED"))
    store.release("webhook", first)
    store.claim(request("alias") | {"action": "check"}, first)  # no verdict yet: not a finished check
    store.claim(request("other-version", version="2"), first)
    store.record_verdict("other-version", verdict("FAILED", version="2"))
    assert store.claim(request("sweep:x"), second).state == "locked"  # "alias" is held by a live worker
    store.release("alias", first)
    assert store.claim(request("sweep:x"), second).state == "run"
    [check] = store.finished_checks("mlflow", "churn", "1", excluding="sweep:x")
    assert (check.job_key, check.action, check.status) == ("webhook", "seal_and_check", "PASSED")
    assert check.finished_at > 0
    assert store.finished_checks("mlflow", "churn", "1", excluding="webhook") == []

    store.record_skipped("sweep:x", second, check)
    store.release("sweep:x", second)
    row = store.get("sweep:x")
    assert row["status"] == "SKIPPED" and row["summary"] == "skipped: already checked by job webhook (PASSED)"
    assert row["publish_status"] is None and row["finished_at"].endswith("Z")
    assert "sweep:x" not in [k for k, _ in store.unfinished()] and store.unpublished() == []
    # A skipped job is done: claimed again (a message delivered twice), it does not run.
    assert store.claim(request("sweep:x"), owner_id()).state == "done"
