"""A version's creation check runs once when its webhook and the sweep's catch-up (or two webhooks) ask.

The race: a webhook job sits in the queue, not yet claimed, so the journal has no row for its version; a
sweep then finds the version unchecked and queues a catch-up of its own. Real parts throughout: a real
mlflow server behind a recording proxy (every registry write is seen), the listener's Flask app, the
SQLite queue and store, the sweep, and the jobs run in this process as the worker runs them.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from mlflow import MlflowClient

from listener import intake
from listener.config import Settings
from listener.store import SKIPPED, get_store
from listener.web import create_app
from listener.worker.job import process_job
from listener.worker.sweep import CREATED_EVENT, run_sweep, sweep_key
from tests.listener.helpers import MLFLOW_SECRET, mlflow_delivery, queued_messages
from tests.listener.worker.helpers import register_model
from tests.support.recording_proxy import RecordingProxy

# What writes a verdict onto an open-source MLflow version: its tags and its description.
WRITES = {("POST", "/api/2.0/mlflow/model-versions/set-tag"),
          ("PATCH", "/api/2.0/mlflow/model-versions/update")}


@pytest.fixture
def proxy(mlflow_server) -> Iterator[RecordingProxy]:
    srv = RecordingProxy(mlflow_server.url).start()
    yield srv
    srv.stop()


@pytest.fixture
def settings(proxy: RecordingProxy, tmp_path: Path) -> Iterator[Settings]:
    # GUARD_SWEEP_SINCE=all: each test's versions are registered before its guard's first sweep, which must
    # catch them up (a new deployment's first sweep otherwise starts at its first contact, after them).
    yield Settings(tracking_uri=proxy.url, data_dir=tmp_path / "guard", mlflow_secrets=[MLFLOW_SECRET],
                   sweep_since=0.0)
    intake.close_all()


def _deliver(settings: Settings, data: dict[str, str], entity: str = "model_version") -> None:
    headers, body = mlflow_delivery(data, entity=entity)
    answer = create_app(settings).test_client().post("/webhooks/mlflow", data=body, headers=headers)
    assert answer.status_code == 202, answer.json


def _take_queued(settings: Settings, model: str) -> dict[str, dict[str, Any]]:
    """The queued jobs of ``model`` by delivery key, taken off the queue (the sweep queues others too)."""
    jobs = {m.args[0]["delivery_key"]: m.args[0] for m in queued_messages(settings)
            if m.args[0]["model"] == model}
    intake.get_huey(settings).storage.flush_queue()
    return jobs


def _writes_during(proxy: RecordingProxy, job: dict[str, Any], settings: Settings) -> tuple[dict, list]:
    before = len(proxy.requests)
    outcome = process_job(job, settings)
    return outcome, [r for r in proxy.requests[before:] if r in WRITES]


def test_a_catch_up_queued_behind_the_webhook_job_is_skipped(settings, proxy, mlflow_server, tmp_path):
    name, version = register_model(MlflowClient(tracking_uri=mlflow_server.url), tmp_path)
    _deliver(settings, {"name": name, "version": version})  # queued, not claimed: nothing journaled yet
    report = run_sweep(settings)
    catch_up = sweep_key("mlflow", name, version, CREATED_EVENT)
    assert catch_up in report.caught_up  # the sweep could not know the webhook job was waiting
    jobs = _take_queued(settings, name)
    assert len(jobs) == 2 and catch_up in jobs
    webhook_job = next(job for key, job in jobs.items() if key != catch_up)

    outcome, writes = _writes_during(proxy, webhook_job, settings)
    assert outcome["status"] == "PASSED" and writes
    outcome, writes = _writes_during(proxy, jobs[catch_up], settings)
    assert outcome["state"] == "skipped" and writes == []  # no second verdict written onto the version

    store = get_store(settings.store_url)
    rows = store.recent(model=name)
    assert [r["status"] for r in rows] == [SKIPPED, "PASSED"]
    assert rows[0]["job_key"] == catch_up and webhook_job["delivery_key"] in rows[0]["summary"]
    assert store.unfinished() == []


def test_a_late_webhook_after_the_catch_up_is_skipped_and_an_alias_is_still_checked(
        settings, proxy, mlflow_server, tmp_path):
    client = MlflowClient(tracking_uri=mlflow_server.url)
    name, version = register_model(client, tmp_path)
    run_sweep(settings)  # the version's webhook is late: the sweep catches the version up first
    [catch_up] = _take_queued(settings, name).values()
    assert process_job(catch_up, settings)["status"] == "PASSED"
    checked_at = client.get_model_version(name, version).tags["validation.checked_at"]

    _deliver(settings, {"name": name, "version": version})  # the creation webhook, after all
    client.set_registered_model_alias(name, "champion", version)
    _deliver(settings, {"name": name, "alias": "champion", "version": version}, entity="model_version_alias")
    jobs = {job["trigger"]: job for job in _take_queued(settings, name).values()}

    outcome, writes = _writes_during(proxy, jobs["model_version.created"], settings)
    assert outcome["state"] == "skipped" and writes == []
    assert client.get_model_version(name, version).tags["validation.checked_at"] == checked_at
    # A promotion is always checked, whatever was checked before.
    outcome, writes = _writes_during(proxy, jobs["model_version_alias.created"], settings)
    assert outcome["status"] == "PASSED" and writes


def test_two_deliveries_of_one_creation_that_waited_together_check_once(settings, proxy, mlflow_server,
                                                                         tmp_path):
    # Two webhooks on one registry (say, one for every model and one for this model) each deliver it.
    name, version = register_model(MlflowClient(tracking_uri=mlflow_server.url), tmp_path)
    _deliver(settings, {"name": name, "version": version})
    _deliver(settings, {"name": name, "version": version})
    first, second = sorted(_take_queued(settings, name).values(), key=lambda job: job["received_at"])
    assert process_job(first, settings)["status"] == "PASSED"
    outcome, writes = _writes_during(proxy, second, settings)
    assert outcome["state"] == "skipped" and writes == []
