"""One delivery through the files a newcomer reads: web route, protocol parser, intake, worker job, adapter.

The worker talks to a real mlflow server through a recording proxy, so the test sees every request the
job really makes: the version is read once per job.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from mlflow import MlflowClient

from listener import intake
from listener.config import Settings
from listener.web import create_app
from listener.worker.job import process_job
from tests.listener.helpers import MLFLOW_SECRET, mlflow_delivery, queued_messages
from tests.listener.worker.helpers import register_model
from tests.support.recording_proxy import RecordingProxy

READ_VERSION = ("GET", "/api/2.0/mlflow/model-versions/get")
READ_BY_ALIAS = ("GET", "/api/2.0/mlflow/registered-models/alias")


@pytest.fixture
def proxy(mlflow_server):
    srv = RecordingProxy(mlflow_server.url).start()
    yield srv
    srv.stop()


@pytest.mark.parametrize("event", ["created", "alias"])
def test_one_delivery_reads_the_version_once(event, proxy, mlflow_server, tmp_path: Path):
    client = MlflowClient(tracking_uri=mlflow_server.url)
    name, version = register_model(client, tmp_path)
    settings = Settings(tracking_uri=proxy.url, data_dir=tmp_path / "guard", mlflow_secrets=[MLFLOW_SECRET])
    try:
        if event == "created":
            headers, body = mlflow_delivery({"name": name, "version": version})
        else:
            client.set_registered_model_alias(name, "champion", version)
            headers, body = mlflow_delivery({"name": name, "alias": "champion", "version": version},
                                            entity="model_version_alias")
        answer = create_app(settings).test_client().post("/webhooks/mlflow", data=body, headers=headers)
        assert answer.status_code == 202, answer.json
        [message] = queued_messages(settings)
        before = list(proxy.requests)
        assert process_job(message.args[0], settings)["status"] == "PASSED"
        during = proxy.requests[len(before):]
    finally:
        intake.close_all()
    assert during.count(READ_VERSION) == 1, during
    assert READ_BY_ALIAS not in during
    # ... and the verdict is on the version, written from that one read.
    assert client.get_model_version(name, version).tags["validation.status"] == "PASSED"
