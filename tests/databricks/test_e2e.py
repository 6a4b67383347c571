"""The Databricks path end to end: stand-in workspace -> signed webhook -> listener (gunicorn) -> huey
consumer -> check -> comment, tags and gate written back through the real databricks-sdk client."""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests
from databricks.sdk import WorkspaceClient
from databricks.sdk.core import Config
from databricks.sdk.service.ml import HttpUrlSpec, RegistryWebhookEvent
from mlflow import MlflowClient

from tests.support.databricks_fixtures import NESTED_FILE, TOKEN, register_model
from tests.support.databricks_standin import REPO_ROOT, DatabricksStandIn
from tests.support.procs import ManagedProcess, free_port, wait_http

pytestmark = pytest.mark.e2e
VENV_BIN = Path(sys.executable).parent
SECRET = "dbx-e2e-webhook-secret"
MARKER = "[mlflow-version-guard]"


class Listener:
    """gunicorn running the Flask app plus one huey consumer, sharing one environment and data folder."""

    def __init__(self, root: Path, standin: DatabricksStandIn) -> None:
        self.port = free_port()
        env = {k: v for k, v in os.environ.items() if not k.startswith(("DATABRICKS_", "GUARD_", "MLFLOW_"))}
        env.update({
            "MLFLOW_TRACKING_URI": standin.url, "DATABRICKS_HOST": standin.url, "DATABRICKS_TOKEN": TOKEN,
            "DATABRICKS_CONFIG_FILE": os.devnull, "GUARD_DATABRICKS_SECRET": SECRET,
            "GUARD_GATE_TRANSITIONS": "true", "GUARD_DATA_DIR": str(root / "guard"),
            "GUNICORN_BIND": f"127.0.0.1:{self.port}", "WEB_CONCURRENCY": "1",
            "PROMETHEUS_MULTIPROC_DIR": str(root / "prom"), "MLFLOW_DISABLE_TELEMETRY": "true",
            "MLFLOW_HTTP_REQUEST_MAX_RETRIES": "2", "MLFLOW_HTTP_REQUEST_TIMEOUT": "20",
        })
        (root / "prom").mkdir(parents=True, exist_ok=True)
        self.web = ManagedProcess([str(VENV_BIN / "gunicorn"), "-c", "deploy/gunicorn.conf.py",
                                   "listener.web:create_app()"], env=env, cwd=REPO_ROOT,
                                  log_path=root / "web.log")
        self.worker = ManagedProcess([str(VENV_BIN / "huey_consumer"), "listener.worker.tasks.huey",
                                      "-w", "2", "-k", "thread", "-m", "0.5"], env=env, cwd=REPO_ROOT,
                                     log_path=root / "worker.log")

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> Listener:
        self.web.start()
        self.worker.start()
        try:
            wait_http(self.url + "/healthz", timeout=60, proc=self.web.proc)
        except Exception:
            self.stop()
            raise
        return self

    def stop(self) -> None:
        self.worker.stop()
        self.web.stop()

    def logs(self) -> str:
        return f"--- web ---\n{self.web.log_tail()}\n--- worker ---\n{self.worker.log_tail()}"


@pytest.fixture(scope="module")
def listener(standin: DatabricksStandIn, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Listener]:
    lst = Listener(tmp_path_factory.mktemp("dbx-listener"), standin).start()
    yield lst
    lst.stop()


@pytest.fixture(scope="module")
def workspace(standin: DatabricksStandIn, listener: Listener) -> Iterator[WorkspaceClient]:
    """A user's SDK client; the registry webhook points at the listener for the test model only."""
    w = WorkspaceClient(config=Config(host=standin.url, token=TOKEN, config_file=os.devnull))
    events = [RegistryWebhookEvent(e) for e in (
        "MODEL_VERSION_CREATED", "TRANSITION_REQUEST_CREATED", "MODEL_VERSION_TRANSITIONED_STAGE",
        "COMMENT_CREATED", "MODEL_VERSION_TAG_SET")]
    hook = w.model_registry.create_webhook(
        events=events, model_name="dbx-e2e", description="mlflow-version-guard",
        http_url_spec=HttpUrlSpec(url=listener.url + "/webhooks/databricks", secret=SECRET)).webhook
    yield w
    w.model_registry.delete_webhook(id=hook.id)


def own_comments(standin: DatabricksStandIn, state: dict, version: str) -> list[str]:
    return [c["comment"] for c in state["comments"] if c["model_name"] == "dbx-e2e"
            and c["version"] == version and c["comment"].startswith(MARKER)]


def last_activity(state: dict, version: str, kind: str) -> dict | None:
    acts = [a for a in state["activities"] if a["model_name"] == "dbx-e2e" and a["version"] == version
            and a["activity_type"] == kind]
    return acts[-1] if acts else None


def test_created_tampered_rejected_untampered_approved(standin: DatabricksStandIn, listener: Listener,
                                                       workspace: WorkspaceClient, tmp_path: Path) -> None:
    reg = workspace.model_registry
    client = MlflowClient(tracking_uri=standin.url)
    try:
        # 1. A new version: the listener seals and checks it -> a PASSED comment and tags.
        v1 = register_model(standin.url, "dbx-e2e", tmp_path)
        st = standin.wait_for(lambda s: own_comments(standin, s, v1), timeout=60, what="PASSED comment on v1")
        [text] = own_comments(standin, st, v1)
        assert "Validation PASSED" in text
        tags = client.get_model_version("dbx-e2e", v1).tags
        assert tags["validation.status"] == "PASSED" and tags.get("validation.manifest")
        created = [d for d in st["deliveries"]
                   if d["event"] == "MODEL_VERSION_CREATED" and d["version"] == v1]
        assert created and created[0]["status_code"] == 202, created

        # 2. Someone changes a nested file of the registry's own copy; a transition request is rejected.
        (standin.registry_copy("dbx-e2e", v1) / NESTED_FILE).write_bytes(b"tampered weights")
        reg.create_transition_request(name="dbx-e2e", version=v1, stage="Staging", comment="ship it")
        st = standin.wait_for(lambda s: last_activity(s, v1, "REJECTED_REQUEST"), timeout=60,
                              what="rejected transition request of v1")
        rejected = last_activity(st, v1, "REJECTED_REQUEST")
        assert rejected["to_stage"] == "Staging"
        assert "Validation FAILED" in rejected["comment"] and NESTED_FILE in rejected["comment"]
        assert any("Validation FAILED" in c and NESTED_FILE in c for c in own_comments(standin, st, v1))
        assert reg.list_transition_requests(name="dbx-e2e", version=v1) == []
        assert client.get_model_version("dbx-e2e", v1).current_stage == "None"
        assert client.get_model_version("dbx-e2e", v1).tags["validation.status"] == "FAILED"

        # 3. An untampered version: its request is approved and the version moves to the stage.
        v2 = register_model(standin.url, "dbx-e2e", tmp_path)
        standin.wait_for(lambda s: own_comments(standin, s, v2), timeout=60, what="PASSED comment on v2")
        reg.create_transition_request(name="dbx-e2e", version=v2, stage="Production")
        st = standin.wait_for(lambda s: last_activity(s, v2, "APPROVED_REQUEST"), timeout=60,
                              what="approved transition request of v2")
        approved = last_activity(st, v2, "APPROVED_REQUEST")
        assert approved["to_stage"] == "Production" and "Validation PASSED" in approved["comment"]
        assert client.get_model_version("dbx-e2e", v2).current_stage == "Production"

        # Our own comments and tag writes reached the listener and were ignored, not validated.
        ours = [d for d in st["deliveries"] if d["model_name"] == "dbx-e2e"]
        own = [d for d in ours if d["event"] in ("COMMENT_CREATED", "MODEL_VERSION_TAG_SET")]
        assert own and all(d["status_code"] == 200 and '"ignored"' in (d["response"] or "") for d in own)
        assert all(d["status_code"] in (200, 202) for d in ours), ours
        api = requests.get(listener.url + "/api/validations", params={"model": "dbx-e2e"}, timeout=10)
        rows = api.json()["validations"]
        assert {r["status"] for r in rows} >= {"PASSED", "FAILED"}, api.text
        # The stand-in is reached through an http:// tracking URI, so this listener's own catch-up sweep
        # reads it as an open-source registry (keys "sweep:mlflow:..."); every delivery's job is Databricks.
        assert {r["registry"] for r in rows if not r["job_key"].startswith("sweep:")} == {"databricks"}
    except BaseException:
        print(listener.logs())
        raise
