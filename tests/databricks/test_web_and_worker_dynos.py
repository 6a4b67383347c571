"""Web and workers as Procfile dynos: each process on its own data folder, sharing only a PostgreSQL store
and a Redis queue, on the Databricks workspace fake in production configuration with gating on.

What the guard keeps between its processes must be in the store: the worker's record of its own approval
(so the web process ignores the approval's echo) and the publish progress (so a publish retried by another
worker does not post its comment twice).
"""

from __future__ import annotations

import json
import signal
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.databricks.endpoint_record import production_env
from tests.databricks.test_e2e import registry_webhook
from tests.deploy.stack import RedisServer
from tests.support.databricks_fixtures import (
    activities,
    new_workspace_version,
    own_comments,
)
from tests.support.databricks_workspace import WorkspaceFake
from tests.support.postgres import PostgresServer, find_postgres_bin
from tests.support.procs import ManagedProcess, free_port, wait_http

pytestmark = [pytest.mark.e2e,
              pytest.mark.skipif(find_postgres_bin() is None, reason="PostgreSQL is not installed")]
REPO_ROOT = Path(__file__).resolve().parents[2]
VENV_BIN = Path(sys.executable).parent
SECRET = "dbx-dynos-webhook-secret"
MODEL = "dbx-dynos"
# No MODEL_VERSION_CREATED: the only validation of the version is the gated transition request's.
EVENTS = ("TRANSITION_REQUEST_CREATED", "MODEL_VERSION_TRANSITIONED_STAGE", "COMMENT_CREATED",
          "MODEL_VERSION_TAG_SET")
APPROVE = "/api/2.0/mlflow/transition-requests/approve"


def _env(fake: WorkspaceFake, data_dir: Path, store_url: str, queue_url: str) -> dict[str, str]:
    env = production_env(fake, "databricks")
    env.update({
        "PATH": f"{VENV_BIN}:{env['PATH']}", "GUARD_DATABRICKS_SECRET": SECRET,
        "GUARD_GATE_TRANSITIONS": "true",
        "GUARD_DATA_DIR": str(data_dir), "GUARD_STORE": store_url, "GUARD_QUEUE": queue_url,
        # The sweep would read the whole workspace registry (other tests' versions too).
        "GUARD_SWEEP_INTERVAL": "86400",
        # A failed approval gives up within a second and the job's publish is retried a few seconds later.
        "GUARD_DATABRICKS_RETRY_TIMEOUT": "1", "GUARD_RETRY_BASE_S": "4", "GUARD_RETRY_MAX_S": "4",
        "GUARD_MAX_RETRIES": "10", "GUNICORN_GRACEFUL_TIMEOUT": "2", "MLFLOW_DISABLE_TELEMETRY": "true",
    })
    return env


def _process(argv: list[str], env: dict[str, str], log: Path) -> ManagedProcess:
    proc = ManagedProcess(argv, cwd=REPO_ROOT, log_path=log)
    proc.env = env  # exactly this environment: nothing of the test process
    return proc


class Dynos:
    """One web dyno and two worker dynos, every one with a data folder of its own."""

    def __init__(self, root: Path, fake: WorkspaceFake, store_url: str, queue_url: str) -> None:
        self.port = free_port()
        web_env = {**_env(fake, root / "web", store_url, queue_url),
                   "GUNICORN_BIND": f"127.0.0.1:{self.port}", "WEB_CONCURRENCY": "1"}
        self.web = _process([str(VENV_BIN / "gunicorn"), "-c", "deploy/gunicorn.conf.py",
                             "listener.web:create_app()"], web_env, root / "web.log")
        self.workers = [_process([str(VENV_BIN / "huey_consumer"), "listener.worker.tasks.huey", "-w", "1",
                                  "-k", "thread", "-m", "0.5"], _env(fake, root / f"worker-{i}", store_url,
                                                                       queue_url), root / f"worker-{i}.log")
                        for i in (1, 2)]

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def stop(self) -> None:
        for proc in (*self.workers, self.web):
            proc.stop()

    def logs(self) -> str:
        return "\n".join(f"--- {name} ---\n{proc.log_tail()}" for name, proc in
                         (("web", self.web), ("worker-1", self.workers[0]), ("worker-2", self.workers[1])))


@pytest.fixture
def dynos(workspace_fake: WorkspaceFake, tmp_path: Path) -> Iterator[Dynos]:
    redis_server = RedisServer(tmp_path / "redis").start()
    postgres = PostgresServer()
    started = None
    try:
        postgres.start()
        started = Dynos(tmp_path, workspace_fake, postgres.url, redis_server.url)
        started.web.start()
        wait_http(started.url + "/healthz", timeout=60, proc=started.web.proc)
        yield started
    finally:
        if started is not None:
            started.stop()
        postgres.remove()
        redis_server.stop()


def _deliveries(fake: WorkspaceFake, event: str, version: str) -> list[dict[str, Any]]:
    return [d for d in fake.state()["deliveries"] if d["model_name"] == MODEL and d["event"] == event
            and d["version"] == version]


def test_a_publish_retried_by_another_worker_and_the_approval_echo_post_one_comment(
        workspace_fake: WorkspaceFake, dynos: Dynos, recordings: dict[str, Any]) -> None:
    fake = workspace_fake
    first, second = dynos.workers
    with registry_webhook(fake, dynos.url, MODEL, EVENTS, SECRET, "dynos") as w:
        try:
            version = new_workspace_version(fake, recordings, MODEL)
            # The approval fails until worker 1 is gone: its publish has posted the comment, not the approval.
            fake.inject_fault("POST", APPROVE, 503, count=10_000, retry_after=0)
            first.start()
            w.model_registry.create_transition_request(name=MODEL, version=version, stage="Production")
            fake.wait_for(lambda s: own_comments(fake, MODEL, version), timeout=180,
                          what="worker 1's comment")
            # Stopped gracefully: its job ends (the approval still failing) and is scheduled again, in Redis.
            first.kill(signal.SIGINT)
            first.proc.wait(timeout=120)
            fake.clear_faults()
            assert not activities(fake, MODEL, version, "APPROVED_REQUEST")

            # Worker 2, on another data folder, takes the retry: it approves and does not comment again.
            second.start()
            fake.wait_for(lambda s: activities(fake, MODEL, version, "APPROVED_REQUEST"), timeout=180,
                          what="the approval by worker 2")
            st = fake.wait_for(lambda s: s["pending_deliveries"] == 0
                               and _deliveries(fake, "MODEL_VERSION_TRANSITIONED_STAGE", version), timeout=60,
                               what="the approval's echo answered")
            [echo] = _deliveries(fake, "MODEL_VERSION_TRANSITIONED_STAGE", version)
            # The web dyno found worker 2's approval in the store: the echo is not a new transition.
            assert echo["status_code"] == 200 and json.loads(echo["response"])["status"] == "ignored", echo
            [comment] = own_comments(fake, MODEL, version)
            assert "Validation PASSED" in comment
            [approved] = activities(fake, MODEL, version, "APPROVED_REQUEST")
            assert approved["to_stage"] == "Production" and approved["comment"] == comment
            assert "approved the transition request" in second.log_tail(10**6)
            assert "approved the transition request" not in first.log_tail(10**6)
            queued = [d for d in st["deliveries"] if d["model_name"] == MODEL and d["status_code"] == 202]
            assert [(d["event"], d["version"]) for d in queued] == [("TRANSITION_REQUEST_CREATED", version)]
            # Nothing of the guard's shared state went into a data folder.
            for folder in ("web", "worker-1", "worker-2"):
                kept = {p.name for p in (dynos.web.log_path.parent / folder).rglob("*")}
                assert not kept & {"own-approvals", "databricks-published", "seals", "results.db"}, kept
        except BaseException:
            print(dynos.logs())
            raise
        finally:
            fake.clear_faults()
