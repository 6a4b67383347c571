"""The Flask app with a real SQLite huey queue: answers, durability, duplicates, bad input, pages."""

from __future__ import annotations

import io
import json
import sqlite3
import time
import uuid
from pathlib import Path

import pytest
from werkzeug.test import EnvironBuilder, run_wsgi_app

from listener import intake
from listener.config import Settings
from listener.protocol import ValidationRequest
from listener.web import create_app
from tests.listener.helpers import (
    MLFLOW_SECRET,
    databricks_delivery,
    mlflow_delivery,
    queued_messages,
)

FIXTURES = Path(__file__).parents[1] / "protocol" / "fixtures"
DELIMITED_BY = ["werkzeug-delimited", "server-delimited"]


def _post(client, route: str, headers: dict, body: bytes):
    return client.post(f"/webhooks/{route}", data=body, headers=headers)


def test_valid_delivery_is_queued_once_and_duplicate_is_recognised(client, settings):
    headers, body = mlflow_delivery({"name": "demo-model", "version": "3", "source": "file:///etc"})
    first = _post(client, "mlflow", headers, body)
    assert first.status_code == 202, first.json
    assert first.json["status"] == "queued" and first.json["id"]
    assert intake.queue_depth(settings) == 1
    [message] = queued_messages(settings)
    assert message.name == intake.TASK_NAME and message.id == first.json["id"]
    request = ValidationRequest.from_dict(message.args[0])
    assert (request.model, request.version, request.action, request.delivery_key) == (
        "demo-model", "3", "seal_and_check", headers["X-MLflow-Delivery-Id"])
    assert "/etc" not in json.dumps(message.args[0])  # only name and version are taken from a payload

    again = _post(client, "mlflow", headers, body)
    assert again.status_code == 200
    assert again.json == {"status": "duplicate", "id": first.json["id"]}
    assert intake.queue_depth(settings) == 1


def test_duplicates_are_recognised_across_a_restart(settings):
    headers, body = mlflow_delivery()
    first = _post(create_app(settings).test_client(), "mlflow", headers, body)
    assert first.status_code == 202
    intake.close_all()  # nothing of the first app's queue connection survives
    second = _post(create_app(settings).test_client(), "mlflow", headers, body)
    assert second.status_code == 200 and second.json == {"status": "duplicate", "id": first.json["id"]}
    assert intake.queue_depth(settings) == 1


def test_same_model_version_different_deliveries_are_separate_jobs(client, settings):
    for _ in range(2):
        assert _post(client, "mlflow", *mlflow_delivery()).status_code == 202
    assert intake.queue_depth(settings) == 2


def test_a_captured_delivery_end_to_end(tmp_path):
    line = json.loads((FIXTURES / "mlflow-deliveries.jsonl").read_text().splitlines()[3])
    # The capture is from the past: widen the tolerance to reach back to it.
    age = int(time.time()) - int(line["headers"]["X-MLflow-Timestamp"])
    settings = Settings(data_dir=tmp_path / "g", mlflow_secrets=["rotated-new", MLFLOW_SECRET],
                        timestamp_tolerance_s=abs(age) + 60)
    try:
        client = create_app(settings).test_client()
        response = _post(client, "mlflow", line["headers"], line["raw_body"].encode())
        assert response.status_code == 202
        [message] = queued_messages(settings)
        assert message.args[0]["alias"] == "champion" and message.args[0]["action"] == "check"
    finally:
        intake.close_all()


def test_databricks_delivery_is_queued_and_duplicate_by_body_digest(client, settings):
    headers, body = databricks_delivery("TRANSITION_REQUEST_CREATED")
    first = _post(client, "databricks", headers, body)
    assert first.status_code == 202
    [message] = queued_messages(settings)
    assert message.args[0]["gate"] is True and message.args[0]["to_stage"] == "Production"
    assert _post(client, "databricks", headers, body).json["status"] == "duplicate"
    assert intake.queue_depth(settings) == 1


def test_ignored_events_answer_200_and_queue_nothing(client, settings):
    tag = mlflow_delivery({"name": "m", "version": "1", "key": "validation.status", "value": "PASSED"},
                          entity="model_version_tag", action="set")
    assert _post(client, "mlflow", *tag).json["status"] == "ignored"
    assert _post(client, "databricks", *databricks_delivery("COMMENT_CREATED")).json["status"] == "ignored"
    assert intake.queue_depth(settings) == 0


def test_failed_enqueue_leaves_no_mark_and_answers_503(client, settings):
    """If the job cannot be stored, the delivery is not taken: the registry's retry must get a 202."""
    db = sqlite3.connect(intake.sqlite_path(settings.queue_url))
    db.execute("create trigger refuse before insert on task begin select raise(abort, 'disk full'); end")
    db.commit()
    headers, body = mlflow_delivery()
    refused = _post(client, "mlflow", headers, body)
    assert refused.status_code == 503 and refused.json["status"] == "error"
    assert intake.queue_depth(settings) == 0
    db.execute("drop trigger refuse")
    db.commit()
    db.close()
    retried = _post(client, "mlflow", headers, body)
    assert retried.status_code == 202
    assert intake.queue_depth(settings) == 1


@pytest.mark.parametrize("overrides", [{}, {"wsgi.input_terminated": True}], ids=DELIMITED_BY)
def test_unexpected_error_is_a_json_500_and_nothing_is_queued(settings, monkeypatch, overrides):
    import listener.web as app_module

    def broken(*args, **kwargs):
        raise RuntimeError("bug")

    monkeypatch.setattr(app_module.webhooks, "parse_mlflow_delivery", broken)
    client = create_app(settings).test_client()
    headers, body = mlflow_delivery()
    response = client.post("/webhooks/mlflow", data=body, headers=headers, environ_overrides=overrides)
    assert response.status_code == 500 and response.json == {"status": "error", "reason": "internal error"}
    assert intake.queue_depth(settings) == 0



class _BrokenInput(io.RawIOBase):
    """A 200-byte request body whose client went away: reading fails (seeking only serves the test client)."""

    def __init__(self) -> None:
        super().__init__()
        self._pos = 0

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def tell(self) -> int:
        return self._pos

    def seek(self, offset: int, whence: int = 0) -> int:
        self._pos = 200 if whence == io.SEEK_END else offset
        return self._pos

    def readinto(self, buffer) -> int:
        raise OSError("connection reset by peer")


@pytest.mark.parametrize("overrides", [{}, {"wsgi.input_terminated": True}], ids=DELIMITED_BY)
def test_a_client_gone_mid_body_gets_400_and_nothing_is_queued(settings, overrides):
    client = create_app(settings).test_client()
    headers, _ = mlflow_delivery()
    response = client.post("/webhooks/mlflow", input_stream=_BrokenInput(), headers=headers,
                           environ_overrides=overrides)
    assert response.status_code == 400 and response.json["status"] == "error" and response.json["reason"]
    assert intake.queue_depth(settings) == 0


@pytest.mark.parametrize("overrides", [{}, {"wsgi.input_terminated": True}], ids=DELIMITED_BY)
def test_a_body_shorter_than_its_content_length_is_400_and_nothing_is_queued(settings, overrides):
    """Signed as sent, but the Content-Length promised more: the client went away before the rest."""
    app = create_app(settings)
    headers, body = mlflow_delivery()
    environ = EnvironBuilder(path="/webhooks/mlflow", method="POST", data=body, headers=headers).get_environ()
    environ.update(overrides, CONTENT_LENGTH=str(len(body) + 20))
    answer, status, _ = run_wsgi_app(app, environ, buffered=True)
    assert status.startswith("400 ") and json.loads(b"".join(answer))["status"] == "error", status
    assert intake.queue_depth(settings) == 0


# ------------------------------------------------------------------------------------------- bad input

def _mv(**data):
    return mlflow_delivery({"name": "demo-model", "version": "1", **data})


def _with(delivery, **headers):
    hdrs, body = delivery
    return {**hdrs, **headers}, body


def _without(delivery, header):
    hdrs, body = delivery
    return {k: v for k, v in hdrs.items() if k != header}, body


def _raw(raw: bytes):
    return mlflow_delivery(raw=raw)


_REPLAYED_ID = str(uuid.uuid4())

MALFORMED_MLFLOW = [
    ("not json", lambda: _raw(b"this is not json"), 400),
    ("empty body", lambda: _raw(b""), 400),
    ("json array", lambda: _raw(b"[]"), 400),
    ("truncated json", lambda: _raw(b'{"entity": "model_version", "action": "crea'), 400),
    ("latin-1 bytes", lambda: _raw(b'{"entity": "\xe9"}'), 400),
    ("deeply nested", lambda: _raw(b"[" * 50_000 + b"]" * 50_000), 400),
    ("NaN", lambda: _raw(b'{"entity": "model_version", "action": "created", "data": {"version": NaN}}'), 400),
    ("wrong content type", lambda: _with(_mv(), **{"Content-Type": "text/plain"}), 415),
    ("form content type", lambda: _with(_mv(), **{"Content-Type": "application/x-www-form-urlencoded"}), 415),
    ("no content type", lambda: _without(_mv(), "Content-Type"), 415),
    ("missing signature", lambda: _without(_mv(), "X-MLflow-Signature"), 401),
    ("missing timestamp", lambda: _without(_mv(), "X-MLflow-Timestamp"), 401),
    ("missing delivery id", lambda: _without(_mv(), "X-MLflow-Delivery-Id"), 401),
    ("invalid signature", lambda: _with(_mv(), **{"X-MLflow-Signature": "v1," + "A" * 43 + "="}), 401),
    ("signature of another secret", lambda: mlflow_delivery(secret="not-the-secret"), 401),
    ("signature scheme v0", lambda: _with(_mv(), **{"X-MLflow-Signature": "v0,abc"}), 401),
    ("replayed old delivery",
     lambda: mlflow_delivery(delivery_id=_REPLAYED_ID, ts=int(time.time()) - 3600), 401),
    ("timestamp from the future", lambda: mlflow_delivery(ts=int(time.time()) + 3600), 401),
    ("non-numeric timestamp", lambda: _with(_mv(), **{"X-MLflow-Timestamp": "yesterday"}), 401),
    ("hostile delivery id", lambda: _with(_mv(), **{"X-MLflow-Delivery-Id": "../../etc/passwd"}), 401),
    ("entity not a string", lambda: _raw(b'{"entity": 1, "action": "created", "data": {}}'), 400),
    ("data not an object",
     lambda: _raw(b'{"entity": "model_version", "action": "created", "data": "x"}'), 400),
    ("unknown event with bad name",
     lambda: _raw(b'{"entity": "<script>", "action": "created", "data": {}}'), 400),
    ("unknown event with NUL",
     lambda: _raw(b'{"entity": "model_version\\u0000", "action": "created", "data": {}}'),
     400),
    ("name missing", lambda: mlflow_delivery({"version": "1"}), 400),
    ("name a number", lambda: _mv(name=42), 400),
    ("name a list", lambda: _mv(name=["m"]), 400),
    ("name path traversal", lambda: _mv(name="../../etc"), 400),
    ("name with slash", lambda: _mv(name="a/b"), 400),
    ("name 10k chars", lambda: _mv(name="x" * 10_000), 400),
    ("name with NUL", lambda: _mv(name="model\x00name"), 400),
    ("name with newline", lambda: _mv(name="model\r\nX-Injected: 1"), 400),
    ("name bidi override", lambda: _mv(name="\u202eledom"), 400),
    ("name empty", lambda: _mv(name=""), 400),
    ("version missing", lambda: mlflow_delivery({"name": "m"}), 400),
    ("version not digits", lambda: _mv(version="1; drop table"), 400),
    ("version negative", lambda: _mv(version="-3"), 400),
    ("version float", lambda: _mv(version=1.5), 400),
    ("version object", lambda: _mv(version={"v": 1}), 400),
    ("alias missing",
     lambda: mlflow_delivery({"name": "m", "version": "1"}, entity="model_version_alias"), 400),
    ("alias hostile", lambda: mlflow_delivery({"name": "m", "version": "1", "alias": "<script>"},
                                      entity="model_version_alias"), 400),
]

MALFORMED_DATABRICKS = [
    ("unsigned",
     lambda: (lambda d: ({"Content-Type": "application/json"}, d[1]))(databricks_delivery()), 401),
    ("wrong secret", lambda: databricks_delivery(secret="nope"), 401),
    ("stale event_timestamp",
     lambda: databricks_delivery(event_timestamp=int((time.time() - 3600) * 1000)), 401),
    ("event_timestamp a string", lambda: databricks_delivery(event_timestamp="now"), 400),
    ("event not a string", lambda: databricks_delivery(event=None), 400),
    ("event name hostile", lambda: databricks_delivery(event="<img src=x>"), 400),
    ("model_name hostile", lambda: databricks_delivery(model_name="../../etc"), 400),
    ("model_name 10k", lambda: databricks_delivery(model_name="y" * 10_000), 400),
    ("version not digits", lambda: databricks_delivery(version="latest"), 400),
    ("unknown stage", lambda: databricks_delivery("TRANSITION_REQUEST_CREATED", to_stage="Prod"), 400),
]


@pytest.mark.parametrize("name, delivery, status", MALFORMED_MLFLOW, ids=[m[0] for m in MALFORMED_MLFLOW])
def test_malformed_mlflow_deliveries(client, settings, name, delivery, status):
    headers, body = delivery()  # built now: a timestamp taken at collection would go stale in a long run
    response = _post(client, "mlflow", headers, body)
    assert response.status_code == status, response.json
    assert response.is_json and response.json["reason"]
    assert intake.queue_depth(settings) == 0


@pytest.mark.parametrize("name, delivery, status", MALFORMED_DATABRICKS,
                         ids=[m[0] for m in MALFORMED_DATABRICKS])
def test_malformed_databricks_deliveries(client, settings, name, delivery, status):
    headers, body = delivery()
    response = _post(client, "databricks", headers, body)
    assert response.status_code == status, response.json
    assert response.is_json and response.json["reason"]
    assert intake.queue_depth(settings) == 0


def test_there_are_at_least_thirty_malformed_cases():
    assert len(MALFORMED_MLFLOW) + len(MALFORMED_DATABRICKS) >= 30


def test_replayed_delivery_after_it_was_taken_is_a_duplicate_not_a_second_job(client, settings):
    delivery = mlflow_delivery()
    assert _post(client, "mlflow", *delivery).status_code == 202
    for _ in range(3):
        assert _post(client, "mlflow", *delivery).json["status"] == "duplicate"
    assert intake.queue_depth(settings) == 1


def test_oversized_bodies_are_413_by_header_and_by_actual_size(tmp_path):
    settings = Settings(data_dir=tmp_path / "g", mlflow_secrets=[MLFLOW_SECRET], max_body_bytes=2048)
    client = create_app(settings).test_client()
    try:
        headers, body = mlflow_delivery({"name": "m", "version": "1", "description": "d" * 4096})
        response = _post(client, "mlflow", headers, body)
        assert response.status_code == 413 and response.is_json
        # No Content-Length (chunked upload): the limit holds for what is actually read.
        chunked = client.post("/webhooks/mlflow", input_stream=io.BytesIO(body),
                              headers={**headers, "Transfer-Encoding": "chunked"},
                              environ_overrides={"wsgi.input_terminated": True})
        assert chunked.status_code == 413 and chunked.is_json
        # Just under the limit is fine.
        ok_headers, ok_body = mlflow_delivery({"name": "m", "version": "1", "description": "d" * 1500})
        assert len(ok_body) < 2048
        assert _post(client, "mlflow", ok_headers, ok_body).status_code == 202
        assert intake.queue_depth(settings) == 1
    finally:
        intake.close_all()


def test_default_limit_is_one_mebibyte(client, settings):
    headers, body = mlflow_delivery({"name": "m", "version": "1", "description": "x" * (1 << 20)})
    assert _post(client, "mlflow", headers, body).status_code == 413
    assert intake.queue_depth(settings) == 0


def test_unconfigured_route_refuses_everything_unless_opened(tmp_path, caplog):
    closed = Settings(data_dir=tmp_path / "a")
    opened = Settings(data_dir=tmp_path / "b", allow_unsigned_mlflow=True)
    try:
        with caplog.at_level("WARNING", logger="listener.web"):
            closed_client = create_app(closed).test_client()
        assert "refused" in caplog.text
        assert _post(closed_client, "mlflow", *mlflow_delivery()).status_code == 401
        assert _post(closed_client, "databricks", *databricks_delivery()).status_code == 401
        caplog.clear()
        with caplog.at_level("WARNING", logger="listener.web"):
            opened_client = create_app(opened).test_client()
        assert "UNSIGNED" in caplog.text
        headers, body = _without(mlflow_delivery(), "X-MLflow-Signature")
        assert _post(opened_client, "mlflow", headers, body).status_code == 202
        assert _post(opened_client, "databricks", *databricks_delivery()).status_code == 401
    finally:
        intake.close_all()


def test_unknown_routes_and_methods_answer_json(client):
    for response, code in ((client.get("/webhooks/mlflow"), 405), (client.post("/webhooks/other"), 404),
                           (client.put("/webhooks/databricks"), 405), (client.get("/nothing-here"), 404)):
        assert response.status_code == code and response.is_json and response.json["reason"]


def test_queued_job_is_the_workers_validate_version_task(client, settings, tmp_path, monkeypatch):
    """What the listener stores is what the consumer of ``listener.worker.tasks.huey`` will run."""
    monkeypatch.setenv("GUARD_DATA_DIR", str(tmp_path / "worker"))  # in case this import is the first one
    from listener.worker import tasks

    headers, body = mlflow_delivery({"name": "demo-model", "version": "5"})
    assert _post(client, "mlflow", headers, body).status_code == 202
    [raw] = intake.get_huey(settings).storage.enqueued_items()
    task = tasks.huey.deserialize_task(bytes(raw))
    assert isinstance(task, tasks.validate_version.task_class)
    assert task.args[0]["model"] == "demo-model" and task.args[0]["version"] == "5"
    assert task.retries == tasks.validate_version.task_class.default_retries


def test_the_transition_the_guard_approved_is_not_validated_again(client, settings):
    from listener.store import get_store

    store = get_store(settings.store_url)
    store.record_own_approval("databricks", "Airline_Delay_SparkML", "8", "Production")
    moved = databricks_delivery("MODEL_VERSION_TRANSITIONED_STAGE")
    answer = _post(client, "databricks", *moved)
    assert answer.status_code == 200 and answer.json["status"] == "ignored"
    assert intake.queue_depth(settings) == 0
    # Claimed once: the next transition of that version (someone else's) is validated.
    again = databricks_delivery("MODEL_VERSION_TRANSITIONED_STAGE", text="a later move")
    assert _post(client, "databricks", *again).status_code == 202
    assert intake.queue_depth(settings) == 1
