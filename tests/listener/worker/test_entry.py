"""``python -m listener.worker.entry``: event shapes, exit statuses, verdict written onto the version."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from mlflow import MlflowClient

from listener.worker.entry import UsageError, requests_from_event
from tests.listener.worker.helpers import local_model_path, register_model

REPO = Path(__file__).resolve().parents[3]


def _run_job(args: list[str], mlflow_server, data_dir: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "MLFLOW_TRACKING_URI": mlflow_server.url, "GUARD_DATA_DIR": str(data_dir),
           "MLFLOW_HTTP_REQUEST_MAX_RETRIES": "0"}
    env.pop("MLFLOW_REGISTRY_URI", None)
    return subprocess.run([sys.executable, "-m", "listener.worker.entry", *args], env=env, cwd=REPO,
                          capture_output=True, text=True, timeout=180)


def test_event_shapes_are_understood():
    mlflow_body = {"entity": "model_version", "action": "created", "timestamp": "x",
                   "data": {"name": "churn", "version": "3", "source": "s3://elsewhere"}}
    [req] = requests_from_event(json.dumps(mlflow_body), "mlflow")
    assert (req["model"], req["version"], req["action"], req["trigger"]) == \
        ("churn", "3", "seal_and_check", "model_version.created")
    databricks = {"event": "TRANSITION_REQUEST_CREATED", "model_name": "churn", "version": "8",
                  "to_stage": "Production", "event_timestamp": 1}
    [req] = requests_from_event(databricks, "databricks")
    assert (req["action"], req["to_stage"], req["gate"], req["registry"]) == \
        ("check", "Production", True, "databricks")
    batch = {"updates": [{"full_name": "main.ml.churn", "version": 2}, {"name": "other", "version": "5"}]}
    reqs = requests_from_event(batch, "databricks")
    assert [(r["model"], r["version"]) for r in reqs] == [("main.ml.churn", "2"), ("other", "5")]
    assert len({r["delivery_key"] for r in reqs}) == 2


@pytest.mark.parametrize("bad", ["not json", "[]", "42", '{"name": "m", "version": "x"}',
                                 '{"version": "1"}', '{"name": "a/b", "version": "1"}'])
def test_unusable_events_are_rejected(bad):
    with pytest.raises(UsageError):
        requests_from_event(bad, "mlflow")


def test_job_filters_events_with_the_listeners_table():
    def item(event, **kw):
        return {"event": event, "model_name": "churn", "version": "3", **kw}

    skipped = [item("TRANSITION_REQUEST_TO_ARCHIVED_CREATED"),
               item("TRANSITION_REQUEST_CREATED", to_stage="Archived"),
               item("MODEL_VERSION_TRANSITIONED_STAGE", to_stage="None"), item("COMMENT_CREATED"),
               item("MODEL_VERSION_TAG_SET"), {"full_name": "main.ml.churn"}, {"name": "m"}]
    assert requests_from_event(skipped, "databricks") == []
    [gated] = requests_from_event([item("TRANSITION_REQUEST_TO_PRODUCTION_CREATED")], "databricks")
    assert (gated["gate"], gated["to_stage"]) == (True, "Production")
    [ready, alias] = requests_from_event({"updates": [{"full_name": "main.ml.churn", "version": 2},
                                                      {"full_name": "main.ml.churn", "version": 2,
                                                       "alias_name": "champion"}]}, "databricks")
    assert (ready["action"], ready["alias"]) == ("seal_and_check", None)
    assert (alias["action"], alias["alias"]) == ("check", "champion")


def test_job_passes_then_fails_after_tampering(mlflow_server, tmp_path):
    client = MlflowClient(tracking_uri=mlflow_server.url)
    name, version = register_model(client, tmp_path)
    event = {"event": "MODEL_VERSION_CREATED", "model_name": name, "version": version}
    ok = _run_job([f"--event_message={json.dumps(event)}"], mlflow_server, tmp_path / "guard")
    assert ok.returncode == 0, ok.stderr[-2000:]
    assert ok.stdout.startswith(f"PASSED {name} version {version}")
    assert client.get_model_version(name, version).tags["validation.status"] == "PASSED"

    (local_model_path(client, name, version) / "code" / "util.py").write_text("def f():\n    return 2\n")
    uc_event = {"name": name, "version": version, "alias": "champion"}
    failed = _run_job([json.dumps(uc_event)], mlflow_server, tmp_path / "guard")  # positional form
    assert failed.returncode == 1, failed.stderr[-2000:]
    assert "code/util.py" in failed.stdout
    mv = client.get_model_version(name, version)
    assert mv.tags["validation.status"] == "FAILED" and "code/util.py" in mv.description


def test_job_exits_2_on_bad_input_and_unknown_versions(mlflow_server, tmp_path):
    bad = _run_job(["--event_message", "{not json"], mlflow_server, tmp_path / "guard")
    assert bad.returncode == 2 and "not valid JSON" in bad.stderr
    missing = _run_job(["--event_message", json.dumps({"name": "no-such-model-xyz", "version": "1"})],
                       mlflow_server, tmp_path / "guard")
    assert missing.returncode == 2, missing.stderr[-2000:]
    assert missing.stdout.startswith("ERROR no-such-model-xyz version 1")


def test_no_publish_stores_the_verdict_and_leaves_the_version_alone(mlflow_server, tmp_path):
    client = MlflowClient(tracking_uri=mlflow_server.url)
    name, version = register_model(client, tmp_path)
    out = _run_job(["--model", name, "--version", version, "--no-publish"], mlflow_server, tmp_path / "guard")
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.startswith(f"PASSED {name} version {version}") and "warning" not in out.stderr
    assert "validation.status" not in client.get_model_version(name, version).tags
