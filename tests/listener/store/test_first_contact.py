"""The first-contact mark and a backfill's progress, on SQLite and on a real PostgreSQL shared by hosts."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

from listener.store import first_contact_mark
from tests.listener.helpers import sample_verdict


def test_first_contact_is_recorded_once_and_never_moves(open_store):
    host_a, host_b = open_store(), open_store()
    assert host_a.first_contact("mlflow", 1000.0) == 1000.0
    assert host_b.first_contact("mlflow", 2000.0) == 1000.0
    assert host_a.first_contact("mlflow", 500.0) == 1000.0
    assert host_b.get_mark(first_contact_mark("mlflow")) == 1000.0
    assert host_b.first_contact("databricks", 3000.0) == 3000.0  # per registry


def test_first_contact_of_a_store_that_validated_before_is_its_first_validation(store):
    store.claim({"registry": "mlflow", "model": "m", "version": "1", "trigger": "t", "action": "check",
                 "delivery_key": "k1"}, "owner-1", job_key="k1")
    store.record_verdict("k1", sample_verdict(delivery_key="k1"))
    first = store.recent(limit=1)[0]
    assert first["created_at"] is not None
    assert store.first_contact("mlflow", 4_000_000_000.0) < 4_000_000_000.0


def test_two_hosts_starting_together_agree_on_the_first_contact(open_store):
    hosts = [open_store() for _ in range(4)]
    with ThreadPoolExecutor(4) as pool:
        starts = list(pool.map(lambda i: hosts[i].first_contact("mlflow", 100.0 + i), range(4)))
    assert len(set(starts)) == 1


def test_a_version_is_handed_out_by_one_backfill_only(open_store):
    host_a, host_b = open_store(), open_store()
    with ThreadPoolExecutor(2) as pool:
        taken = list(pool.map(lambda h: h.take_for_backfill("mlflow", "m", "3", "key-3"), (host_a, host_b)))
    assert sorted(taken) == [False, True]
    assert host_b.backfilled("mlflow") == {("m", "3"): "key-3"}
    assert host_b.backfilled("databricks") == {}
