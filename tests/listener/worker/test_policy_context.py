"""The worker applies GUARD_POLICY (:mod:`listener.worker.policy_context`): the alias's section on alias
events, with ``not_worse_than`` that alias compared against the version that held it BEFORE the event
(the store's alias history), against a real MLflow tracking server."""

from __future__ import annotations

import time
import uuid
from pathlib import Path

import pytest
from mlflow import MlflowClient

from core.policy.loader import parse_policy
from core.tags import TAG_POLICY
from listener.config import Settings
from listener.protocol import ValidationRequest
from listener.store import SOURCE_WEBHOOK, get_store
from listener.worker.job import process_job
from listener.worker.policy_context import policy_arguments
from tests.listener.worker.helpers import register_model

POLICY = """\
version: 1
default:
  limits: {max_files: 1000}
aliases:
  champion:
    metrics:
      f1: {not_worse_than: "@champion"}
stages:
  Production:
    metadata: {required_tags: [owner]}
"""


def _request(model: str, version: str, alias: str | None = None, to_stage: str | None = None,
             trigger: str | None = None) -> dict:
    trigger = trigger or ("model_version_alias.created" if alias else "model_version.created")
    action = "check" if alias else "seal_and_check"
    return ValidationRequest(registry="mlflow", model=model, version=version, trigger=trigger, action=action,
                             to_stage=to_stage, alias=alias, gate=False, delivery_key=uuid.uuid4().hex,
                             received_at=time.time()).to_dict()


@pytest.fixture()
def settings(mlflow_server, tmp_path: Path) -> Settings:
    return Settings(tracking_uri=mlflow_server.url, data_dir=tmp_path / "guard",
                    policy=parse_policy(POLICY, "policy.yaml"))


def _with_f1(client: MlflowClient, tmp_path: Path, name: str, f1: float) -> str:
    name, version = register_model(client, tmp_path, name=name)
    client.log_metric(client.get_model_version(name, version).run_id, "f1", f1)
    return version


def test_setting_champion_compares_with_the_version_that_held_it_before(settings, mlflow_server, tmp_path):
    client = MlflowClient(tracking_uri=mlflow_server.url)
    name = f"policy-{uuid.uuid4().hex[:8]}"
    old = _with_f1(client, tmp_path, name, 0.91)
    new = _with_f1(client, tmp_path, name, 0.84)
    store = get_store(settings.store_url)
    store.record_alias("mlflow", name, "champion", old, SOURCE_WEBHOOK)
    # The registry already shows the candidate as champion: comparing with the holder NOW would compare
    # the candidate with itself.
    client.set_registered_model_alias(name, "champion", new)

    created = process_job(_request(name, new), settings)
    assert created["status"] == "PASSED"
    assert TAG_POLICY not in client.get_model_version(name, new).tags  # a passing policy writes no tag

    aliased = process_job(_request(name, new, alias="champion"), settings)
    assert aliased["status"] == "FAILED"
    row = store.get(_last_key(store, name))
    checks = {c["check"]: c for c in row["policy"]["checks"]}
    assert checks["metrics"]["status"] == "FAIL"
    assert checks["metrics"]["reason"] == f"f1 = 0.84 worse than @champion (version {old}: 0.91)"
    assert client.get_model_version(name, new).tags[TAG_POLICY] == "FAIL: metrics"
    # A later verdict whose policy passes (a creation check: no alias, no comparison) removes that tag.
    again = process_job(_request(name, new), settings)
    assert again["status"] == "PASSED"
    assert TAG_POLICY not in client.get_model_version(name, new).tags


def _last_key(store, name: str) -> str:
    return store.recent(limit=1, model=name)[0]["job_key"]


def test_policy_arguments_follow_the_request(settings, tmp_path):
    store = get_store(settings.store_url)
    store.record_alias("mlflow", "m", "champion", "1", SOURCE_WEBHOOK)
    store.record_alias("mlflow", "m", "champion", "2", SOURCE_WEBHOOK)
    request = ValidationRequest.from_dict(_request("m", "2", alias="champion"))
    args = policy_arguments(request, settings)
    assert (args["alias"], args["alias_event"], args["previous_holder"]) == ("champion", True, "1")
    staging = ValidationRequest.from_dict(_request("m", "2", to_stage="Production"))
    staged = policy_arguments(staging, settings)
    assert staged["stage"] == "Production" and "alias" not in staged
    reverify = ValidationRequest.from_dict(_request("m", "2", alias="champion", trigger="reverify"))
    assert policy_arguments(reverify, settings) == {"policy": settings.policy, "stage": None,
                                                    "alias": "champion"}
    assert policy_arguments(request, Settings(data_dir=tmp_path / "other")) == {}
