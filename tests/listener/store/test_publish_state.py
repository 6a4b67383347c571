"""Own approvals and publish progress, shared by processes and hosts through the store."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

from sqlalchemy import update

from listener.store import OWN_APPROVAL_MAX_AGE_S
from listener.store.schema import own_approvals


def test_an_own_approval_is_claimed_once_by_whichever_host_gets_its_echo(open_store):
    worker, web_a, web_b = open_store(), open_store(), open_store()
    worker.record_own_approval("databricks", "churn", "8", "production")
    assert not web_a.claim_own_approval("databricks", "churn", "8", "Staging")  # another transition
    assert not web_a.claim_own_approval("databricks", "churn", "9", "Production")  # another version
    with ThreadPoolExecutor(max_workers=8) as pool:
        claims = list(pool.map(lambda i: (web_a, web_b)[i % 2].claim_own_approval(
            "databricks", "churn", "8", "Production"), range(8)))
    assert sorted(claims) == [False] * 7 + [True]  # the stage is compared in the registry's spelling
    assert not web_b.claim_own_approval("databricks", "churn", "8", "Production")


def test_an_approval_nobody_claimed_expires(open_store):
    store = open_store()
    store.record_own_approval("databricks", "churn", "8", "Production")
    with store.engine.begin() as conn:  # recorded before the expiry window
        conn.execute(update(own_approvals).values(approved_at=own_approvals.c.approved_at
                                                  - OWN_APPROVAL_MAX_AGE_S - 1))
    assert not store.claim_own_approval("databricks", "churn", "8", "Production")
    store.record_own_approval("databricks", "churn", "8", "Production")  # a new approval counts again
    assert open_store().claim_own_approval("databricks", "churn", "8", "Production")


def test_publish_steps_done_on_one_host_are_seen_by_another(open_store):
    first, second = open_store(), open_store()
    assert first.publish_steps_done("databricks:abc") == set()
    first.mark_publish_step("databricks:abc", "comment")
    first.mark_publish_step("databricks:abc", "comment")  # recording a step twice is harmless
    assert second.publish_steps_done("databricks:abc") == {"comment"}
    second.mark_publish_step("databricks:abc", "gate")
    assert first.publish_steps_done("databricks:abc") == {"comment", "gate"}
    assert first.publish_steps_done("databricks:other") == set()
