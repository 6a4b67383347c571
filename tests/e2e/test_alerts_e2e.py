"""Alerts from the running stack: webhook -> listener (gunicorn) -> huey worker -> apprise -> a receiver.

The worker sends each alert as a queued task of its own, after the verdict is stored and published; a
receiver that refuses messages for a while gets the alert once it recovers, and exactly once.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from listener.store import NOTIFY_SENT, get_store
from tests.e2e.test_mlflow_e2e import Stack
from tests.listener.worker.helpers import local_model_path, register_model, wait_for
from tests.support.receiver import Receiver

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def receiver() -> Iterator[Receiver]:
    rec = Receiver(status=200)
    yield rec
    rec.close()


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory, receiver: Receiver) -> Iterator[Stack]:
    extra = {"GUARD_NOTIFY": f"json://127.0.0.1:{receiver.server.server_port}/alerts",
             "GUARD_NOTIFY_RETRY_BASE_S": "0.5", "GUARD_NOTIFY_RETRIES": "30",
             "GUARD_PROTECTED_ALIASES": "champion"}
    with Stack(tmp_path_factory.mktemp("e2e-alerts"), extra).running() as st:
        yield st


def _status(stack: Stack, name: str, version: str, status: str) -> dict:
    try:
        return wait_for(lambda: (t := stack.client.get_model_version(name, version).tags).get(
            "validation.status") == status and t, timeout=120, what=f"{name} v{version} {status}")
    except AssertionError as exc:
        raise AssertionError(f"{exc}\n{stack.logs()}") from exc


def test_the_worker_alerts_once_and_keeps_trying_while_the_receiver_is_down(stack: Stack, receiver, tmp_path):
    name, version = register_model(stack.client, tmp_path, name="e2e-alerted")
    _status(stack, name, version, "PASSED")
    assert receiver.received == []  # PASSED does not alert by default

    receiver.status = 500
    (local_model_path(stack.client, name, version) / "data" / "weights.bin").write_bytes(b"swapped")
    stack.client.set_registered_model_alias(name, "champion", version)
    tags = _status(stack, name, version, "FAILED")  # the verdict is out while every alert is refused
    assert "data/weights.bin" in tags["validation.summary"]
    [row] = [r for r in stack.rows(name) if r["status"] == "FAILED"]
    store = get_store(stack.settings.store_url)
    wait_for(lambda: len(receiver.received) >= 2, timeout=60, what="refused attempts")
    assert store.notification(row["job_key"])["status"] != NOTIFY_SENT

    receiver.status = 200
    wait_for(lambda: store.notification(row["job_key"])["status"] == NOTIFY_SENT, timeout=90,
             what=f"the alert delivered\n{stack.logs()}")
    note = store.notification(row["job_key"])
    messages = receiver.events()
    assert note["attempts"] == len(messages) and len({m["message"] for m in messages}) == 1
    body = messages[0]["message"]
    assert f"Model: {name}" in body and "Verdict: FAILED" in body and "data/weights.bin" in body
    assert f"Alias action: @champion removed from version {version}" in body
    assert f"/#/models/{name}/versions/{version}" in body
