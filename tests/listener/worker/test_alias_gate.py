"""Protected aliases: moved back off a version that fails, and its verdict stored once, as published."""

from __future__ import annotations

import time
import uuid
from pathlib import Path

from mlflow import MlflowClient

from core.tags import TAG_ALIAS_REVERTED, TAG_STATUS
from listener.config import Settings
from listener.protocol.request import ValidationRequest
from listener.store import SOURCE_GUARD, get_store
from listener.worker.job import process_job
from tests.listener.worker.helpers import local_model_path, register_model, verdict_writes


def _request(model: str, version: str, trigger: str, alias: str | None = None) -> dict:
    action = "seal_and_check" if trigger == "model_version.created" else "check"
    return ValidationRequest(registry="mlflow", model=model, version=version, trigger=trigger, action=action,
                             to_stage=None, alias=alias, gate=False, delivery_key=uuid.uuid4().hex,
                             received_at=time.time()).to_dict()


def test_a_failing_version_loses_its_protected_alias_and_its_verdict_is_stored_once(mlflow_server,
                                                                                    tmp_path: Path):
    settings = Settings(tracking_uri=mlflow_server.url, data_dir=tmp_path / "guard",
                        protected_aliases=["champion"])
    client = MlflowClient(tracking_uri=mlflow_server.url)
    store = get_store(settings.store_url)
    name, good = register_model(client, tmp_path)
    _, bad = register_model(client, tmp_path, name=name)
    for version in (good, bad):
        assert process_job(_request(name, version, "model_version.created"), settings)["status"] == "PASSED"
    client.set_registered_model_alias(name, "champion", good)
    assert process_job(_request(name, good, "model_version_alias.created", "champion"),
                       settings)["status"] == "PASSED"

    # The newer version's files change after it was sealed, and then it is promoted.
    (local_model_path(client, name, bad) / "data" / "weights.bin").write_bytes(b"swapped")
    client.set_registered_model_alias(name, "champion", bad)
    promoted = _request(name, bad, "model_version_alias.created", "champion")
    with verdict_writes(store) as written:
        assert process_job(promoted, settings)["status"] == "FAILED"
    assert len(written) == 1

    assert client.get_registered_model(name).aliases == {"champion": good}
    row = store.get(promoted["delivery_key"])
    note = f"@champion moved back from version {bad} to version {good}"
    assert note in row["summary"] and row["publish_status"] == "PUBLISHED"
    assert note in row["report"]["summary"]
    tags = client.get_model_version(name, bad).tags
    assert tags[TAG_STATUS] == "FAILED" and tags[TAG_ALIAS_REVERTED] == note
    # The move is the guard's own: its alias event will be recognised as an echo.
    assert store.alias_holder("mlflow", name, "champion").source == SOURCE_GUARD
