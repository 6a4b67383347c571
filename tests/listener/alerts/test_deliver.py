"""Alerts about real verdicts, through apprise's ``json://`` to a real local HTTP receiver.

A real ``mlflow server``; each verdict comes from the worker's own job (:func:`process_job`), which sends
the alert after the verdict is stored and published. The "hosts" sharing a PostgreSQL store are separate
processes running ``guard-job``'s code path.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from mlflow import MlflowClient

from listener import metrics
from listener.alerts.deliver import wait_for_alerts
from listener.config import Settings
from listener.protocol import ValidationRequest
from listener.store import NOTIFY_FAILED, NOTIFY_SENT, get_store
from listener.worker.job import process_job
from tests.listener.store.conftest import postgres  # noqa: F401 - the session's PostgreSQL server
from tests.listener.worker.helpers import local_model_path, register_model, wait_for
from tests.support.postgres import PostgresServer, find_postgres_bin
from tests.support.receiver import Receiver

SECRET = "alerts-webhook-secret-value"
AUTHORIZATION = "Bearer dbx-authorization-token"
UI_TOKEN = "ui-viewer-password"
ALERT_PASSWORD = "alert-receiver-password"
SECRETS = (SECRET, AUTHORIZATION, "dbx-authorization-token", UI_TOKEN, ALERT_PASSWORD)
REPO = Path(__file__).resolve().parents[3]


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    rec = Receiver(status=200)
    yield rec
    rec.close()


def _settings(mlflow_server, tmp_path: Path, receiver: Receiver, **overrides) -> Settings:
    port = receiver.server.server_port
    values = {
        "tracking_uri": mlflow_server.url, "data_dir": tmp_path / "guard", "mlflow_secrets": [SECRET],
        "databricks_authorization": AUTHORIZATION, "protected_aliases": ["champion"],
        "ui_base_url": mlflow_server.url.replace("http://", f"http://viewer:{UI_TOKEN}@"),
        "notify_urls": [f"json://alerts:{ALERT_PASSWORD}@127.0.0.1:{port}/hook"],
        "notify_retry_base_s": 0.2, "retry_max_s": 1.0, "ready_timeout_s": 1.0, "max_retries": 0,
    }
    values.update(overrides)
    return Settings(**values)


def _request(model: str, version: str, action: str = "seal_and_check", alias: str | None = None) -> dict:
    trigger = "model_version.created" if action == "seal_and_check" else "model_version_alias.created"
    return ValidationRequest(registry="mlflow", model=model, version=version, trigger=trigger, action=action,
                             to_stage=None, alias=alias, gate=False, delivery_key=uuid.uuid4().hex,
                             received_at=time.time()).to_dict()


def _alerts_sent() -> None:
    """Wait for this process's alert threads (they run after the job returned)."""
    wait_for_alerts(timeout=120)


def _messages(receiver: Receiver) -> list[dict]:
    return receiver.events()


def _tampered_version(client: MlflowClient, tmp_path: Path, settings: Settings) -> tuple[str, str]:
    """A version sealed at registration (PASSED), whose files then change under it."""
    name, version = register_model(client, tmp_path)
    assert process_job(_request(name, version), settings)["status"] == "PASSED"
    target = local_model_path(client, name, version) / "data" / "deep" / "nested" / "layer.bin"
    target.write_bytes(b"changed")
    return name, version


def test_one_message_per_failed_and_error_verdict_none_for_passed(mlflow_server, tmp_path, receiver):
    settings = _settings(mlflow_server, tmp_path, receiver)
    client = MlflowClient(mlflow_server.url)
    name, version = _tampered_version(client, tmp_path, settings)
    _alerts_sent()
    assert _messages(receiver) == []  # PASSED: no alert by default

    client.set_registered_model_alias(name, "champion", version)
    failed = _request(name, version, action="check", alias="champion")
    assert process_job(failed, settings)["status"] == "FAILED"
    missing = _request(name, "999")
    assert process_job(missing, settings)["status"] == "ERROR"
    _alerts_sent()

    messages = _messages(receiver)
    assert len(messages) == 2
    by_title = {m["title"]: m for m in messages}
    fail = by_title[f"Model version guard: FAILED {name} version {version}"]
    assert fail["type"] == "failure"
    lines = fail["message"].splitlines()
    assert lines[:3] == [f"Model: {name}", f"Version: {version}",
                         "Trigger: event (model_version_alias.created)"]
    assert lines[3].startswith("Verdict: FAILED: ")
    assert lines[4] == "First finding: changed data/deep/nested/layer.bin (vs the seal)"
    assert lines[5] == (f"Alias action: @champion removed from version {version} "
                        "(no earlier acceptable holder)")
    assert lines[6] == (f"Link: {mlflow_server.url.replace('http://', 'http://***@')}"
                        f"/#/models/{name}/versions/{version}")
    error = by_title[f"Model version guard: ERROR {name} version 999"]
    assert error["type"] == "warning" and "Verdict: ERROR: could not check" in error["message"]
    assert "First finding: error: " in error["message"]
    raw = b"".join(r["raw"] for r in receiver.received).decode()
    for secret in SECRETS:
        assert secret not in raw

    # The same job again (a retried job, a re-delivered message): the verdict is done, no second message.
    assert process_job(failed, settings)["state"] == "done"
    _alerts_sent()
    assert len(_messages(receiver)) == 2
    store = get_store(settings.store_url)
    assert store.notification(failed["delivery_key"])["status"] == NOTIFY_SENT


def test_passed_alerts_when_asked(mlflow_server, tmp_path, receiver):
    settings = _settings(mlflow_server, tmp_path, receiver, notify_on=["ERROR", "FAILED", "PASSED"])
    name, version = register_model(MlflowClient(mlflow_server.url), tmp_path)
    process_job(_request(name, version), settings)
    _alerts_sent()
    [message] = _messages(receiver)
    assert message["type"] == "success" and "Verdict: PASSED" in message["message"]
    assert "Trigger: event (model_version.created)" in message["message"]


def test_a_receiver_down_for_a_while_gets_the_message_once_it_recovers(mlflow_server, tmp_path, receiver):
    settings = _settings(mlflow_server, tmp_path, receiver, notify_retries=20)
    client = MlflowClient(mlflow_server.url)
    name, version = _tampered_version(client, tmp_path, settings)
    receiver.status = 500
    request = _request(name, version, action="check", alias="candidate")

    assert process_job(request, settings)["status"] == "FAILED"
    # The verdict was stored and published at once, whatever the receiver says.
    store = get_store(settings.store_url)
    row = store.get(request["delivery_key"])
    assert row["status"] == "FAILED" and row["publish_status"] == "PUBLISHED"
    assert client.get_model_version(name, version).tags["validation.status"] == "FAILED"

    wait_for(lambda: len(receiver.received) >= 2, timeout=60, what="two refused attempts")
    assert store.notification(request["delivery_key"])["status"] != NOTIFY_SENT
    receiver.status = 200
    wait_for(lambda: store.notification(request["delivery_key"])["status"] == NOTIFY_SENT, timeout=60,
             what="the alert delivered")
    _alerts_sent()
    note = store.notification(request["delivery_key"])
    bodies = {r["raw"] for r in receiver.received}
    assert len(bodies) == 1  # the same message each time, and after the one accepted, none
    assert note["attempts"] == len(receiver.received) and note["error"] is None


def test_an_alert_given_up_is_logged_and_counted_and_the_verdict_stands(mlflow_server, tmp_path, receiver):
    settings = _settings(mlflow_server, tmp_path, receiver, notify_retries=1)
    receiver.status = 503
    before = metrics.NOTIFY_FAILURES._value.get()  # noqa: SLF001 - the counter's value in this process
    name, version = register_model(MlflowClient(mlflow_server.url), tmp_path)
    request = _request(name, "998")
    assert process_job(request, settings)["status"] == "ERROR"
    _alerts_sent()
    note = get_store(settings.store_url).notification(request["delivery_key"])
    assert note["status"] == NOTIFY_FAILED and note["attempts"] == 2 and "127.0.0.1" in note["error"]
    assert ALERT_PASSWORD not in note["error"]
    assert metrics.NOTIFY_FAILURES._value.get() == before + 1  # noqa: SLF001
    assert get_store(settings.store_url).get(request["delivery_key"])["status"] == "ERROR"


_HOST = """
import json, sys
from listener.alerts.deliver import wait_for_alerts
from listener.config import Settings
from listener.worker.entry import run_job
settings = Settings(**json.loads(sys.argv[1]))
print(run_job(json.loads(sys.argv[2]), settings).get("status"), flush=True)
wait_for_alerts()  # as guard-job does before it exits
"""


@pytest.mark.skipif(find_postgres_bin() is None, reason="PostgreSQL server binaries are not installed")
def test_two_hosts_running_the_same_job_send_one_message(mlflow_server, tmp_path, receiver,
                                                         postgres: PostgresServer):  # noqa: F811
    store_url = postgres.new_database(f"alerts_{uuid.uuid4().hex[:8]}")
    settings = _settings(mlflow_server, tmp_path, receiver, store_url=store_url)
    client = MlflowClient(mlflow_server.url)
    name, version = _tampered_version(client, tmp_path, settings)
    request = _request(name, version, action="check", alias="candidate")
    shared = {"tracking_uri": settings.tracking_uri, "store_url": store_url,
              "ui_base_url": settings.ui_base_url, "notify_urls": settings.notify_urls,
              "mlflow_secrets": [SECRET], "retry_max_s": 1.0}
    hosts = [subprocess.Popen([sys.executable, "-c", _HOST,
                               json.dumps({**shared, "data_dir": str(tmp_path / host)}), json.dumps(request)],
                              cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
             for host in ("host-a", "host-b")]
    outputs = [h.communicate(timeout=300) for h in hosts]
    assert [h.returncode for h in hosts] == [0, 0], outputs
    # One host checks it; the other finds it done, or busy on the first host (then it leaves it there).
    assert "FAILED" in [out.strip().splitlines()[-1] for out, _ in outputs]
    messages = _messages(receiver)
    assert len(messages) == 1, outputs
    [message] = messages
    assert message["title"] == f"Model version guard: FAILED {name} version {version}"
    assert get_store(store_url).notification(request["delivery_key"])["status"] == NOTIFY_SENT
