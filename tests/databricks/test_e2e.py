"""The Databricks path end to end on the workspace fake: a version registered in the workspace -> signed
registry webhook -> listener (gunicorn) -> huey consumer -> check of the registry's own copy -> comment,
tags and gate written back through the unmodified databricks-sdk.

The listener and its worker run with the environment docs/databricks.md gives for the workspace registry
(``MLFLOW_TRACKING_URI=databricks``, ``MLFLOW_REGISTRY_URI=databricks``, ``DATABRICKS_HOST``,
``DATABRICKS_TOKEN``, ``GUARD_DATABRICKS_SECRET``, ``GUARD_GATE_TRANSITIONS=true``) and nothing that points
MLflow anywhere else.
"""

from __future__ import annotations

import signal
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
import requests
from databricks.sdk import WorkspaceClient
from databricks.sdk.service.ml import HttpUrlSpec, RegistryWebhookEvent

from tests.databricks.documented_env import mismatches
from tests.databricks.endpoint_record import production_env
from tests.support.databricks_fixtures import (
    NESTED_KERNEL,
    activities,
    new_workspace_version,
    own_comments,
    workspace_client,
)
from tests.support.databricks_workspace import WorkspaceFake
from tests.support.procs import ManagedProcess, free_port, wait_http

pytestmark = pytest.mark.e2e
REPO_ROOT = Path(__file__).resolve().parents[2]
VENV_BIN = Path(sys.executable).parent
SECRET = "dbx-e2e-webhook-secret"
MODEL = "dbx-e2e"
EVENTS = ("MODEL_VERSION_CREATED", "TRANSITION_REQUEST_CREATED", "MODEL_VERSION_TRANSITIONED_STAGE",
          "COMMENT_CREATED", "MODEL_VERSION_TAG_SET")
# A day: the worker's periodic sweep reads the whole workspace registry (other tests' versions too) and
# would validate and comment on them; here every validation must come from a delivery.
SWEEP_INTERVAL_S = "86400"


class Listener:
    """gunicorn running the Flask app plus one huey consumer, sharing one environment and data folder."""

    def __init__(self, root: Path, fake: WorkspaceFake) -> None:
        self.port = free_port()
        env = production_env(fake, "databricks")
        env.update({
            "PATH": f"{VENV_BIN}:{env['PATH']}",
            "GUARD_DATABRICKS_SECRET": SECRET, "GUARD_GATE_TRANSITIONS": "true",
            "GUARD_DATA_DIR": str(root / "guard"), "GUARD_SWEEP_INTERVAL": SWEEP_INTERVAL_S,
            "GUARD_RETRY_BASE_S": "0.5", "GUARD_RETRY_MAX_S": "2", "GUARD_DATABRICKS_RETRY_TIMEOUT": "10",
            "GUNICORN_BIND": f"127.0.0.1:{self.port}", "WEB_CONCURRENCY": "1",
            # The fake keeps its webhook connection alive, and a stopping gunicorn waits for it up to this.
            "GUNICORN_GRACEFUL_TIMEOUT": "2",
            "PROMETHEUS_MULTIPROC_DIR": str(root / "prom"), "MLFLOW_DISABLE_TELEMETRY": "true",
        })
        (root / "prom").mkdir(parents=True, exist_ok=True)
        self.env = env
        self.web = ManagedProcess([str(VENV_BIN / "gunicorn"), "-c", "deploy/gunicorn.conf.py",
                                   "listener.web:create_app()"], cwd=REPO_ROOT, log_path=root / "web.log")
        self.worker = ManagedProcess([str(VENV_BIN / "huey_consumer"), "listener.worker.tasks.huey",
                                      "-w", "2", "-k", "thread", "-m", "0.5"], cwd=REPO_ROOT,
                                     log_path=root / "worker.log")
        # Exactly this environment: nothing of the test process (ManagedProcess adds os.environ to env=).
        self.web.env = self.worker.env = env

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
        # Both asked to stop at once, so their shutdowns overlap instead of adding up.
        self.worker.kill(signal.SIGTERM)
        self.web.kill(signal.SIGTERM)
        self.worker.stop()
        self.web.stop()

    def logs(self) -> str:
        return f"--- web ---\n{self.web.log_tail()}\n--- worker ---\n{self.worker.log_tail()}"


@pytest.fixture(scope="module")
def listener(workspace_fake: WorkspaceFake, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Listener]:
    lst = Listener(tmp_path_factory.mktemp("dbx-listener"), workspace_fake).start()
    yield lst
    lst.stop()


@contextmanager
def registry_webhook(fake: WorkspaceFake, url: str, model: str, events: tuple[str, ...] = EVENTS,
                     secret: str = SECRET,
                     description: str = "mlflow-version-guard") -> Iterator[WorkspaceClient]:
    """A user's SDK client, with a registry webhook to ``url`` for ``model`` only; deleted afterwards."""
    w = workspace_client(fake)
    hook = w.model_registry.create_webhook(
        events=[RegistryWebhookEvent(e) for e in events], model_name=model, description=description,
        http_url_spec=HttpUrlSpec(url=url + "/webhooks/databricks", secret=secret)).webhook
    try:
        yield w
    finally:
        w.model_registry.delete_webhook(id=hook.id)


@pytest.fixture(scope="module")
def workspace(workspace_fake: WorkspaceFake, listener: Listener) -> Iterator[WorkspaceClient]:
    """A user's SDK client; the registry webhook points at the listener for the test model only."""
    with registry_webhook(workspace_fake, listener.url, MODEL) as w:
        yield w


def version_of(w: WorkspaceClient, version: str) -> Any:
    return w.model_registry.get_model_version(name=MODEL, version=version).model_version


def tags_of(w: WorkspaceClient, version: str) -> dict[str, str]:
    return {t.key: t.value for t in version_of(w, version).tags or []}


def deliveries(state: dict[str, Any], event: str | None = None, version: str | None = None) -> list[dict]:
    return [d for d in state["deliveries"] if d["model_name"] == MODEL
            and (event is None or d["event"] == event) and (version is None or d["version"] == version)]


def test_created_tampered_rejected_untampered_approved(workspace_fake: WorkspaceFake, listener: Listener,
                                                       workspace: WorkspaceClient,
                                                       recordings: dict[str, Any]) -> None:
    fake, reg = workspace_fake, workspace.model_registry
    try:
        # 1. A new version: the listener seals and checks it -> one PASSED comment and the tags.
        v1 = new_workspace_version(fake, recordings, MODEL)
        st = fake.wait_for(lambda s: own_comments(fake, MODEL, v1), timeout=120, what="PASSED comment on v1")
        [text] = own_comments(fake, MODEL, v1)
        assert "Validation PASSED" in text
        tags = tags_of(workspace, v1)
        assert tags["validation.status"] == "PASSED" and tags.get("validation.manifest")
        created = deliveries(fake.state(), "MODEL_VERSION_CREATED", v1)
        assert [d["status_code"] for d in created] == [202], created

        # 2. Someone changes a nested file of the registry's own copy; a transition request is rejected.
        (fake.registry_copy(MODEL, v1) / NESTED_KERNEL).write_bytes(b"tampered weights")
        reg.create_transition_request(name=MODEL, version=v1, stage="Staging", comment="ship it")
        fake.wait_for(lambda s: activities(fake, MODEL, v1, "REJECTED_REQUEST"), timeout=120,
                      what="rejected transition request of v1")
        [rejected] = activities(fake, MODEL, v1, "REJECTED_REQUEST")
        assert rejected["to_stage"] == "Staging"
        assert "Validation FAILED" in rejected["comment"] and NESTED_KERNEL in rejected["comment"]
        first, second = own_comments(fake, MODEL, v1)
        assert "Validation PASSED" in first and "Validation FAILED" in second and NESTED_KERNEL in second
        assert reg.list_transition_requests(name=MODEL, version=v1) == []
        assert version_of(workspace, v1).current_stage == "None"
        assert tags_of(workspace, v1)["validation.status"] == "FAILED"

        # 3. An untampered version: its request is approved and the version moves to the stage.
        v2 = new_workspace_version(fake, recordings, MODEL)
        fake.wait_for(lambda s: own_comments(fake, MODEL, v2), timeout=120, what="PASSED comment on v2")
        reg.create_transition_request(name=MODEL, version=v2, stage="Production")
        fake.wait_for(lambda s: activities(fake, MODEL, v2, "APPROVED_REQUEST"), timeout=120,
                      what="approved transition request of v2")
        [approved] = activities(fake, MODEL, v2, "APPROVED_REQUEST")
        assert approved["to_stage"] == "Production" and "Validation PASSED" in approved["comment"]
        assert version_of(workspace, v2).current_stage == "Production"

        # The approval's own MODEL_VERSION_TRANSITIONED_STAGE reached the listener and was ignored; once
        # every delivery is answered, each version has exactly one comment per validation (two each).
        st = fake.wait_for(lambda s: s["pending_deliveries"] == 0
                           and deliveries(s, "MODEL_VERSION_TRANSITIONED_STAGE", v2), timeout=60,
                           what="every delivery answered")
        [moved] = deliveries(st, "MODEL_VERSION_TRANSITIONED_STAGE", v2)
        assert moved["status_code"] == 200 and '"ignored"' in moved["response"], moved
        assert [len(own_comments(fake, MODEL, v)) for v in (v1, v2)] == [2, 2]

        # Our own comments and tag writes reached the listener and were ignored, not validated.
        ours = deliveries(st)
        own = [d for d in ours if d["event"] in ("COMMENT_CREATED", "MODEL_VERSION_TAG_SET")]
        assert own and all(d["status_code"] == 200 and '"ignored"' in (d["response"] or "") for d in own)
        assert all(d["status_code"] in (200, 202) for d in ours), ours
        queued = [d for d in ours if d["status_code"] == 202]
        assert sorted((d["event"], d["version"]) for d in queued) == sorted([
            ("MODEL_VERSION_CREATED", v1), ("TRANSITION_REQUEST_CREATED", v1),
            ("MODEL_VERSION_CREATED", v2), ("TRANSITION_REQUEST_CREATED", v2)])

        # Four deliveries, four validations: all of them Databricks jobs (the sweep cannot run here).
        api = requests.get(listener.url + "/api/validations", params={"model": MODEL}, timeout=10)
        rows = api.json()["validations"]
        assert sorted((r["version"], r["status"]) for r in rows) == \
            sorted([(v1, "PASSED"), (v1, "FAILED"), (v2, "PASSED"), (v2, "PASSED")]), api.text
        assert {r["registry"] for r in rows} == {"databricks"}
        assert not [r for r in rows if r["job_key"].startswith("sweep:")]
    except BaseException:
        print(listener.logs())
        raise


def test_the_listener_runs_with_the_documented_environment(listener: Listener) -> None:
    assert mismatches("listener + worker, workspace model registry", [listener.env]) == []


def test_the_listener_called_only_implemented_endpoints(workspace_fake: WorkspaceFake) -> None:
    # Runs after the test above: every request the listener and its worker made reached a real route.
    assert workspace_fake.unimplemented_requests() == []
