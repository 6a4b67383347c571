"""The worker pipeline against a real MLflow tracking server: seal, check, publish, store, retry."""

from __future__ import annotations

import contextlib
import json
import sqlite3
import threading
import time
import uuid
from pathlib import Path

import pytest
from huey.exceptions import RetryTask
from mlflow import MlflowClient

from core.errors import CheckError, TransientError
from listener.config import Settings
from listener.protocol import ValidationRequest
from listener.registries.mlflow_oss import MlflowOssAdapter
from listener.store import get_store
from listener.verdict_text import SECTION_END, SECTION_START
from listener.worker.admission import RetryLater
from listener.worker.job import process_job, run_validation
from tests.listener.worker.helpers import local_model_path, register_model, verdict_writes
from tests.support.procs import free_port

SECRET = "worker-test-secret-value"


def _request(model: str, version: str, action: str = "seal_and_check", trigger: str | None = None,
             alias: str | None = None) -> dict:
    default = "model_version.created" if action == "seal_and_check" else "model_version_alias.created"
    trigger = trigger or default
    return ValidationRequest(registry="mlflow", model=model, version=version, trigger=trigger, action=action,
                             to_stage=None, alias=alias, gate=False, delivery_key=uuid.uuid4().hex,
                             received_at=time.time()).to_dict()


@pytest.fixture()
def settings(mlflow_server, tmp_path: Path) -> Settings:
    return Settings(tracking_uri=mlflow_server.url, data_dir=tmp_path / "guard", mlflow_secrets=[SECRET],
                    ui_base_url=mlflow_server.url)


@pytest.fixture()
def client(mlflow_server) -> MlflowClient:
    return MlflowClient(tracking_uri=mlflow_server.url)


def _set_status(mlflow_server, model: str, version: str, status: str) -> None:
    # The registry API cannot put a version back into registration; the server's own database can.
    with sqlite3.connect(mlflow_server.root / "mlflow.db") as conn:
        conn.execute("UPDATE model_versions SET status=? WHERE name=? AND version=?",
                     (status, model, int(version)))


def test_seal_and_check_passes_and_publishes_tags_and_section(settings, client, tmp_path):
    name, version = register_model(client, tmp_path)
    client.update_model_version(name, version, description="Owner's notes: *keep me*.")
    req = _request(name, version)
    out = process_job(req, settings)
    assert out["status"] == "PASSED"

    mv = client.get_model_version(name, version)
    tags = mv.tags
    assert tags["validation.status"] == "PASSED"
    manifest = json.loads(tags["validation.manifest"])
    assert tags["validation.seal"] == manifest["tree_digest"]
    assert "data/deep/nested/layer.bin" in json.dumps(manifest)
    # The machine report is in the results store (and /api/validations), not among the tags.
    assert "validation.report" not in tags
    report = get_store(settings.store_url).get(req["delivery_key"])["report"]
    assert report["sealed_now"] is True and report["status"] == "PASSED"
    assert tags["validation.checked_at"].endswith("Z")
    # The verdict first (what the model page's versions list shows), the owner's text after it, intact.
    assert mv.description.startswith("PASSED \u00b7 validation ")
    assert mv.description.endswith("\n\nOwner's notes: *keep me*.")
    assert mv.description.count(SECTION_START) == 1 and "PASSED" in mv.description

    row = get_store(settings.store_url).get(req["delivery_key"])
    assert row["status"] == "PASSED" and row["publish_status"] == "PUBLISHED"
    assert row["ui_url"] == f"{settings.ui_base_url}/#/models/{name}/versions/{version}"
    assert SECRET.encode() not in (settings.data_dir / "results.db").read_bytes()


def test_tampered_nested_file_fails_naming_it_and_seal_is_kept(settings, client, tmp_path):
    name, version = register_model(client, tmp_path)
    process_job(_request(name, version), settings)
    sealed = client.get_model_version(name, version).tags["validation.manifest"]
    client.update_model_version(name, version, description=client.get_model_version(name, version).description
                                + "\n\nUser text added after the first validation.")

    target = local_model_path(client, name, version) / "data" / "deep" / "nested" / "layer.bin"
    target.write_bytes(b"not the sealed bytes")
    out = process_job(_request(name, version, action="check", alias="champion"), settings)
    assert out["status"] == "FAILED"

    mv = client.get_model_version(name, version)
    assert mv.tags["validation.status"] == "FAILED"
    assert "data/deep/nested/layer.bin" in mv.tags["validation.summary"]
    report = get_store(settings.store_url).latest_for_version("mlflow", name, version)["report"]
    assert [d["path"] for d in report["seal_differences"]] == ["data/deep/nested/layer.bin"]
    assert mv.tags["validation.manifest"] == sealed  # a check never re-seals
    assert mv.description.count(SECTION_START) == 1 and mv.description.count(SECTION_END) == 1
    assert "data/deep/nested/layer.bin" in mv.description
    assert "User text added after the first validation." in mv.description

    # A re-delivered "created" event must not bless the changed files with a new seal either.
    again = process_job(_request(name, version), settings)
    assert again["status"] == "FAILED"
    assert client.get_model_version(name, version).tags["validation.manifest"] == sealed


def test_check_without_a_seal_seals_first(settings, client, tmp_path):
    name, version = register_model(client, tmp_path)
    request = _request(name, version, action="check", alias="champion")
    verdict = run_validation(ValidationRequest.from_dict(request), settings)
    assert verdict.status == "PASSED"
    assert verdict.new_seal_json is not None and verdict.seal_digest in verdict.new_seal_json


def test_payload_fields_cannot_redirect_the_worker(settings, client, tmp_path):
    name, version = register_model(client, tmp_path)
    req = _request(name, version)
    # Extra keys naming another server are not part of a request and are ignored.
    req.update({"tracking_uri": f"http://127.0.0.1:{free_port()}", "source": "/etc", "host": "evil.example"})
    assert process_job(req, settings)["status"] == "PASSED"


def test_unknown_version_is_an_error_with_reason_and_no_retry(settings, client, tmp_path):
    name, _ = register_model(client, tmp_path)
    req = _request(name, "999")
    out = process_job(req, settings)
    assert out["status"] == "ERROR"
    row = get_store(settings.store_url).get(req["delivery_key"])
    assert row["status"] == "ERROR" and "999" in row["error"]
    # Nothing to write the verdict onto: recorded as a final publish failure, not retried forever.
    assert row["publish_status"] == "FAILED" and row["publish_error"]


def test_waits_while_pending_registration(settings, client, tmp_path, mlflow_server):
    name, version = register_model(client, tmp_path)
    _set_status(mlflow_server, name, version, "PENDING_REGISTRATION")
    timer = threading.Timer(1.5, _set_status, (mlflow_server, name, version, "READY"))
    timer.start()
    try:
        verdict = run_validation(ValidationRequest.from_dict(_request(name, version)), settings)
    finally:
        timer.cancel()
    assert verdict.status == "PASSED"
    assert verdict.duration_s >= 1.0  # it did wait for the registration to finish


def test_failed_registration_is_an_error_and_endless_pending_is_transient(settings, client, tmp_path,
                                                                           mlflow_server, monkeypatch):
    name, version = register_model(client, tmp_path)
    _set_status(mlflow_server, name, version, "FAILED_REGISTRATION")
    with pytest.raises(CheckError, match="FAILED_REGISTRATION") as failed:
        run_validation(ValidationRequest.from_dict(_request(name, version)), settings)
    assert not isinstance(failed.value, TransientError)  # an ERROR verdict at once, never retried

    _set_status(mlflow_server, name, version, "PENDING_REGISTRATION")
    settings.ready_timeout_s = 1
    with pytest.raises(TransientError, match="PENDING_REGISTRATION"):
        run_validation(ValidationRequest.from_dict(_request(name, version)), settings)


def test_unreachable_registry_retries_then_errors_and_keeps_the_verdict(tmp_path, monkeypatch):
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")
    settings = Settings(tracking_uri=f"http://127.0.0.1:{free_port()}", data_dir=tmp_path / "guard",
                        max_retries=2)
    adapter = MlflowOssAdapter(settings)
    req = _request("churn", "1")
    store = get_store(settings.store_url)
    delays = []
    for _ in range(2):
        with pytest.raises(RetryLater) as info:
            process_job(req, settings, adapter=adapter)
        delays.append(info.value.delay)
        row = store.get(req["delivery_key"])
        assert row["status"] == "RETRYING" and row["error"]
    assert delays == [2.0, 4.0]  # exponential backoff
    # Retries exhausted: the verdict is ERROR with the reason, stored before any publish attempt.
    with pytest.raises(RetryLater):  # publishing it fails too (same dead server) and is retried
        process_job(req, settings, adapter=adapter)
    row = store.get(req["delivery_key"])
    assert row["status"] == "ERROR" and "gave up after 3 attempts" in row["error"]
    assert row["publish_status"] == "PENDING" and row["publish_error"]
    assert [k for k, _ in store.unfinished()] == [req["delivery_key"]]
    for _ in range(2):
        with contextlib.suppress(RetryLater):
            process_job(req, settings, adapter=adapter)
    row = store.get(req["delivery_key"])
    assert row["status"] == "ERROR" and row["publish_status"] == "FAILED"
    assert store.unfinished() == []


def test_one_structured_log_line_per_finished_job_without_secrets(settings, client, tmp_path, caplog):
    name, version = register_model(client, tmp_path)
    req = _request(name, version)
    with caplog.at_level("INFO", logger="listener.worker.job"):
        assert process_job(req, settings)["status"] == "PASSED"
    finished = [r.getMessage() for r in caplog.records if r.getMessage().startswith("job finished ")]
    assert len(finished) == 1, finished
    line = json.loads(finished[0].removeprefix("job finished "))
    assert (line["model"], line["version"], line["trigger"], line["verdict"], line["publish"]) == (
        name, version, "model_version.created", "PASSED", "PUBLISHED")
    assert line["duration_s"] >= line["check_s"] > 0 and line["job"] == req["delivery_key"]
    assert SECRET not in caplog.text


def test_listener_policy_guard_exclude_reaches_the_check(mlflow_server, tmp_path: Path):
    from listener.config_parsing import ConfigError

    with pytest.raises(ConfigError, match="GUARD_EXCLUDE"):
        Settings.from_env({"GUARD_EXCLUDE": "../outside"})
    env = {"MLFLOW_TRACKING_URI": mlflow_server.url, "GUARD_DATA_DIR": str(tmp_path / "guard")}
    policy = Settings.from_env({**env, "GUARD_EXCLUDE": "data/deep/**, *.log"})
    assert policy.exclude == ["data/deep/**", "*.log"]
    client = MlflowClient(mlflow_server.url)
    name, version = register_model(client, tmp_path)
    assert process_job(_request(name, version), policy)["status"] == "PASSED"
    target = local_model_path(client, name, version) / "data" / "deep" / "nested" / "layer.bin"
    target.write_bytes(b"changed, but left out by the policy")
    check = _request(name, version, action="check", alias="champion")
    assert process_job(check, policy)["status"] == "PASSED"
    assert "path(s) excluded" in client.get_model_version(name, version).tags["validation.summary"]
    # Without the policy the same files fail: the exclusion is what made the difference.
    plain = Settings.from_env(env)
    assert process_job({**check, "delivery_key": "again"}, plain)["status"] == "FAILED"


def test_every_byte_checked_is_counted_for_metrics(settings, client, tmp_path):
    from listener import metrics

    name, version = register_model(client, tmp_path)
    before = metrics.BYTES_VERIFIED._value.get()
    assert process_job(_request(name, version), settings)["status"] == "PASSED"
    model_bytes = sum(p.stat().st_size for p in local_model_path(client, name, version).rglob("*")
                      if p.is_file() and p.name != "registered_model_meta")
    # Run and registry model are one storage here, read once: each of its bytes is counted once.
    assert metrics.BYTES_VERIFIED._value.get() - before == model_bytes


def test_a_transient_failure_is_retried_then_an_error_with_its_reason_stored_once(tmp_path, monkeypatch):
    # The registry is down for good: the core raises TransientError, the job edge retries it while the
    # budget lasts (huey's own retry signal, nothing caught and re-raised on the way), then gives ERROR.
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")
    settings = Settings(tracking_uri=f"http://127.0.0.1:{free_port()}", data_dir=tmp_path / "guard",
                        max_retries=1)
    store = get_store(settings.store_url)
    req = _request("churn", "4")
    with verdict_writes(store) as written:
        with pytest.raises(RetryTask) as first:
            process_job(req, settings)
        assert isinstance(first.value, RetryLater) and first.value.delay == settings.retry_delay(1)
        assert store.get(req["delivery_key"])["status"] == "RETRYING" and written == []
        with pytest.raises(RetryLater, match="publish failed"):  # the verdict is out; publishing waits
            process_job(req, settings)
    row = store.get(req["delivery_key"])
    assert row["status"] == "ERROR" and row["error"].startswith("gave up after 2 attempts: ")
    assert "unreachable" in row["error"] or "unavailable" in row["error"], row["error"]
    assert row["summary"].startswith("could not check: gave up after 2 attempts")
    assert len(written) == 1  # stored once, before the publish attempt
