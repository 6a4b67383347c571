"""Whether a job runs, and why not: echo, duplicate, redundant; decided once per job."""

from __future__ import annotations

import time
import uuid
from pathlib import Path

import pytest
from huey.exceptions import RetryTask
from mlflow import MlflowClient
from prometheus_client import REGISTRY

from listener.config import Settings
from listener.protocol.request import JOB_KEY_PREFIX, SWEEP_KEY_PREFIX, ValidationRequest
from listener.store import SOURCE_GUARD, get_store, owner_id
from listener.worker import admission
from listener.worker.admission import DUPLICATE, ECHO, REDUNDANT, RUN, RetryLater
from listener.worker.job import process_job
from tests.listener.worker.helpers import register_model
from tests.support.procs import free_port

DECISIONS = (RUN, ECHO, DUPLICATE, REDUNDANT)
TRANSITIONED = "MODEL_VERSION_TRANSITIONED_STAGE"


def _request(model: str, version: str, *, trigger: str = "model_version.created", alias: str | None = None,
             key: str | None = None, registry: str = "mlflow", to_stage: str | None = None) -> dict:
    action = "seal_and_check" if trigger == "model_version.created" else "check"
    return ValidationRequest(registry=registry, model=model, version=version, trigger=trigger, action=action,
                             to_stage=to_stage, alias=alias, gate=False, delivery_key=key or uuid.uuid4().hex,
                             received_at=time.time()).to_dict()


def _admissions() -> dict[str, float]:
    """The worker's admission counters (``guard_admissions_total``) by decision, as /metrics shows them."""
    return {d: REGISTRY.get_sample_value("guard_admissions_total", {"decision": d}) or 0.0 for d in DECISIONS}


def _since(before: dict[str, float]) -> dict[str, float]:
    now = _admissions()
    return {d: now[d] - before[d] for d in DECISIONS if now[d] != before[d]}


@pytest.fixture()
def settings(mlflow_server, tmp_path: Path) -> Settings:
    return Settings(tracking_uri=mlflow_server.url, data_dir=tmp_path / "guard")


@pytest.fixture()
def client(mlflow_server) -> MlflowClient:
    return MlflowClient(tracking_uri=mlflow_server.url)


def test_a_job_that_runs_is_admitted_once_and_its_repeat_is_a_duplicate(settings, client, tmp_path):
    name, version = register_model(client, tmp_path)
    req = _request(name, version)
    before = _admissions()
    assert process_job(req, settings)["status"] == "PASSED"
    assert _since(before) == {RUN: 1}
    # The same job again (enqueued twice, recovered after a crash): finished, nothing to do.
    before = _admissions()
    assert process_job(req, settings) == {"job_key": req["delivery_key"], "state": "done", "status": None}
    assert _since(before) == {DUPLICATE: 1}


def test_a_job_a_live_worker_holds_is_a_duplicate(settings):
    store = get_store(settings.store_url)
    req = _request("held-model", "3")
    other = owner_id()
    assert store.claim(req, other).state == "run"  # another live worker of this host is on it
    before = _admissions()
    assert process_job(req, settings)["state"] == "busy"
    assert _since(before) == {DUPLICATE: 1}
    store.release(req["delivery_key"], other)


def test_the_echo_of_the_guards_own_alias_move_is_ignored_and_leaves_no_job(settings, client, tmp_path):
    name, version = register_model(client, tmp_path)
    store = get_store(settings.store_url)
    store.record_alias("mlflow", name, "champion", version, SOURCE_GUARD)  # the guard is about to move it
    req = _request(name, version, trigger="model_version_alias.created", alias="champion")
    before = _admissions()
    assert process_job(req, settings)["state"] == "ignored"
    assert _since(before) == {ECHO: 1}
    assert store.get(req["delivery_key"]) is None  # never claimed: no row, no verdict, nothing published
    assert "validation.status" not in client.get_model_version(name, version).tags
    # A person setting the alias on that version later is not another echo.
    again = _request(name, version, trigger="model_version_alias.created", alias="champion")
    assert process_job(again, settings)["state"] == "finished"


def test_the_echo_of_the_guards_own_approval_is_claimed_once(settings):
    move = ValidationRequest.from_dict(_request("approved-model", "8", trigger=TRANSITIONED,
                                                registry="databricks", to_stage="Production"))
    assert admission.own_approval_echo(move, settings) is None  # nobody approved anything
    get_store(settings.store_url).record_own_approval("databricks", "approved-model", "8", "Production")
    reason = admission.own_approval_echo(move, settings)
    assert reason and "guard's own approval" in reason
    assert admission.own_approval_echo(move, settings) is None  # the next move of that version is someone's


def test_an_own_approval_echo_reaching_the_job_entry_point_is_ignored(settings):
    # A Databricks job webhook hands the same event to guard-job: it never passed the web layer.
    get_store(settings.store_url).record_own_approval("databricks", "approved-model", "9", "Staging")
    req = _request("approved-model", "9", trigger=TRANSITIONED, registry="databricks",
                   to_stage="Staging", key=f"{JOB_KEY_PREFIX}{uuid.uuid4().hex}:0")
    before = _admissions()
    assert process_job(req, settings)["state"] == "ignored"
    assert _since(before) == {ECHO: 1}
    assert get_store(settings.store_url).get(req["delivery_key"]) is None


def test_a_catch_up_of_a_version_already_checked_is_redundant(settings, client, tmp_path):
    name, version = register_model(client, tmp_path)
    assert process_job(_request(name, version), settings)["status"] == "PASSED"
    catch_up = _request(name, version, key=f"{SWEEP_KEY_PREFIX}mlflow:{name}:{version}:created")
    before = _admissions()
    assert process_job(catch_up, settings)["state"] == "skipped"
    assert _since(before) == {REDUNDANT: 1}
    row = get_store(settings.store_url).get(catch_up["delivery_key"])
    assert row["status"] == "SKIPPED" and "already checked by job" in row["summary"]


def test_a_version_being_checked_elsewhere_is_not_now_and_not_counted_as_a_decision(tmp_path: Path):
    settings = Settings(tracking_uri=f"http://127.0.0.1:{free_port()}", data_dir=tmp_path / "guard")
    store = get_store(settings.store_url)
    holder = owner_id()
    assert store.claim(_request("locked-model", "7", key="first"), holder).state == "run"
    before = _admissions()
    with pytest.raises(RetryLater) as info:
        process_job(_request("locked-model", "7", key="second"), settings)
    # The queue's own retry signal: huey reschedules the job as it is, without using up a retry.
    assert isinstance(info.value, RetryTask) and info.value.delay == admission.LOCK_WAIT_S
    assert _since(before) == {}
    store.release("first", holder)
