"""Open-source MLflow end to end, with faults.

Real parts only: an ``mlflow server`` (SQLite store, local artifacts, webhook environment), the listener
under gunicorn with two workers, a huey consumer process, and a webhook created through
``MlflowClient.create_webhook``. One stack serves the whole module; tests that stop a part start it again.
"""

from __future__ import annotations

import os
import re
import signal
import sqlite3
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
import requests
from mlflow import MlflowClient

from core.seal.attestation import SealIdentity, registry_identity
from core.seal.keys import generate_key_pair
from listener.config import Settings
from listener.intake import queue_depth
from listener.store import Store, get_store
from listener.verdict_text import SECTION_START
from listener.worker.sweep import LAST_RUN_MARK
from tests.core.signing_support import model_signing_verify
from tests.listener.worker.helpers import local_model_path, register_model, wait_for
from tests.support.procs import ManagedProcess, MlflowServer, free_port, wait_http

pytestmark = pytest.mark.e2e
VENV_BIN = Path(sys.executable).parent
REPO = Path(__file__).resolve().parents[2]
SECRET = "e2e-mlflow-webhook-secret"
EVENTS = ["model_version.created", "model_version_alias.created", "model_version_tag.set"]
_ACCESS = re.compile(r'"POST /webhooks/mlflow HTTP/[0-9.]+" (\d{3}) ')


class Stack:
    """Tracking server + listener (gunicorn, 2 workers) + huey consumer, sharing one data folder."""

    def __init__(self, root: Path, extra_env: dict[str, str] | None = None) -> None:
        self.root = root
        self.server = MlflowServer(root / "mlflow")
        self.port = free_port()
        self.data_dir = root / "guard"
        (root / "prom").mkdir(parents=True, exist_ok=True)
        # The guard's seal key, as `make run` makes one: web serves its public half, the worker signs.
        generate_key_pair(root / "seal-key.pem", root / "seal-key.pub.pem")
        env = {k: v for k, v in os.environ.items() if not k.startswith(("GUARD_", "MLFLOW_", "DATABRICKS_"))}
        env.update({
            "MLFLOW_TRACKING_URI": self.server.url, "GUARD_MLFLOW_SECRET": SECRET,
            "GUARD_DATA_DIR": str(self.data_dir), "PROMETHEUS_MULTIPROC_DIR": str(root / "prom"),
            "GUARD_SIGNING_KEY": str(root / "seal-key.pem"),
            "MLFLOW_DISABLE_TELEMETRY": "true",
            # Fail fast while the tracking server is down; the worker's own backoff does the waiting.
            "MLFLOW_HTTP_REQUEST_MAX_RETRIES": "0", "MLFLOW_HTTP_REQUEST_TIMEOUT": "10",
            "GUARD_RETRY_BASE_S": "1", "GUARD_RETRY_MAX_S": "3", "GUARD_MAX_RETRIES": "60",
            "GUARD_READY_TIMEOUT": "120",
        })
        env.update(extra_env or {})
        self.env = env
        self.web = ManagedProcess([str(VENV_BIN / "gunicorn"), "-w", "2", "-b", f"127.0.0.1:{self.port}",
                                   "--access-logfile", "-", "listener.web:create_app()"],
                                  env=env, cwd=REPO, log_path=root / "web.log")
        self.worker = ManagedProcess([str(VENV_BIN / "huey_consumer"), "listener.worker.tasks.huey",
                                      "-w", "2", "-k", "thread", "-m", "0.5"], env=env, cwd=REPO,
                                     log_path=root / "worker.log")
        self.settings = Settings(tracking_uri=self.server.url, data_dir=self.data_dir)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def client(self) -> MlflowClient:
        return MlflowClient(tracking_uri=self.server.url)

    @property
    def store(self) -> Store:
        return get_store(f"sqlite:///{self.data_dir / 'results.db'}")

    def start_web(self) -> None:
        self.web.start()
        wait_http(self.url + "/healthz", timeout=60, proc=self.web.proc)

    def start(self) -> Stack:
        self.server.start()
        self.start_web()
        self.worker.start()
        self.client.create_webhook(name="guard-e2e", url=self.url + "/webhooks/mlflow", events=EVENTS,
                                   secret=SECRET)
        return self

    def stop(self) -> None:
        for proc in (self.worker, self.web, self.server):
            proc.stop()

    @contextmanager
    def running(self, hold_periodic_sweep: bool = False) -> Iterator[Stack]:
        """The stack started, and stopped by its pids on the way out (a failed start included).

        ``hold_periodic_sweep``: the worker's periodic sweep is not due for a while (its last run is
        marked now), so every validation row is one the test asked for.
        """
        if hold_periodic_sweep:
            self.data_dir.mkdir(parents=True, exist_ok=True)
            get_store(self.settings.store_url).set_mark(LAST_RUN_MARK, time.time())
        try:
            yield self.start()
        finally:
            self.stop()

    def answers(self) -> list[int]:
        """HTTP status of every webhook delivery the listener answered (from gunicorn's access log)."""
        return [int(m) for m in _ACCESS.findall(self.web.log_path.read_text(errors="replace"))]

    def rows(self, model: str) -> list[dict]:
        return self.store.recent(limit=1000, model=model)

    def logs(self) -> str:
        return "\n".join(f"--- {p.log_path.name} ---\n{p.log_tail(3000)}"
                         for p in (self.server, self.web, self.worker))


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    with Stack(tmp_path_factory.mktemp("e2e-mlflow")).running() as st:
        yield st


def _tags(stack: Stack, name: str, version: str) -> dict:
    try:
        return stack.client.get_model_version(name, version).tags
    except Exception:  # noqa: BLE001 - the server may be restarting
        return {}


def _wait_status(stack: Stack, name: str, version: str, status: str, timeout: float = 90) -> dict:
    try:
        return wait_for(lambda: (t := _tags(stack, name, version)).get("validation.status") == status and t,
                        timeout=timeout, what=f"{name} v{version} {status}")
    except AssertionError as exc:
        raise AssertionError(f"{exc}\n{stack.logs()}") from exc


def _published_rows(stack: Stack, name: str, count: int = 1) -> list[dict]:
    """The results rows of ``name`` once ``count`` of them are published (recorded just after the write)."""
    def ready() -> list[dict] | None:
        rows = stack.rows(name)
        return rows if sum(r["publish_status"] == "PUBLISHED" for r in rows) >= count else None

    return wait_for(ready, timeout=30, what=f"{count} published verdict(s) of {name}")


def _set_status(stack: Stack, name: str, version: str, status: str) -> None:
    # A version still registering cannot be produced through the API of open-source MLflow; its store can.
    with sqlite3.connect(stack.server.root / "mlflow.db") as conn:
        conn.execute("UPDATE model_versions SET status=? WHERE name=? AND version=?",
                     (status, name, int(version)))


def test_register_passes_tamper_fails_and_own_tags_are_ignored(stack: Stack, tmp_path: Path):
    client = stack.client
    before = len(stack.answers())
    name, version = register_model(client, tmp_path, name="e2e-main")
    tags = _wait_status(stack, name, version, "PASSED")
    assert tags.get("validation.seal_bundle") and tags.get("validation.seal")
    assert "validation.manifest" not in tags  # the signed seal is in the seal store, not in a tag
    first = {k: v for k, v in tags.items() if k.startswith("validation.")}
    # A third party: the public key from GET /seal-key.pem and model-signing's own verifier.
    served = requests.get(stack.url + "/seal-key.pem", timeout=10)
    assert served.status_code == 200 and served.headers["Content-Type"] == "application/x-pem-file"
    (tmp_path / "guard-key.pem").write_bytes(served.content)
    # The seal lives in the guard's store; the tag names it without a path of the guard's host.
    assert tags["validation.seal_bundle"] == f"guard-store:{name}/{version}/model.sig"
    identity = SealIdentity(registry_identity(stack.server.url), name, version)
    (tmp_path / "model.sig").write_bytes(stack.settings.open_seal_store().read(identity).bundle)
    verified = model_signing_verify(local_model_path(client, name, version),
                                    tmp_path / "model.sig", tmp_path / "guard-key.pem")
    assert verified.returncode == 0, verified.stdout + verified.stderr
    mv = client.get_model_version(name, version)
    assert SECTION_START in mv.description and "PASSED" in mv.description

    target = local_model_path(client, name, version) / "data" / "deep" / "nested" / "layer.bin"
    target.write_bytes(b"changed after registration")
    client.set_registered_model_alias(name, "champion", version)
    tags = _wait_status(stack, name, version, "FAILED")
    assert "data/deep/nested/layer.bin" in tags["validation.summary"]
    assert "validation.report" not in tags  # the machine report is in the store and /api/validations
    report = _published_rows(stack, name, count=2)[0]["report"]
    assert [d["path"] for d in report["seal_differences"]] == ["data/deep/nested/layer.bin"]
    description = client.get_model_version(name, version).description
    assert description.count(SECTION_START) == 1 and "data/deep/nested/layer.bin" in description

    # Our own tag writes came back as model_version_tag.set deliveries: every tag of the first verdict,
    # then the ones the second changed (checked_at only if it fell in another second). Each was answered
    # 200 "ignored" and started no validation.
    second = {k: v for k, v in tags.items() if k.startswith("validation.")}
    written = len(first) + sum(1 for k, v in second.items() if first.get(k) != v)
    assert written >= 7  # status, summary, checked_at, seal, seal_bundle; then status and summary
    wait_for(lambda: stack.answers()[before:].count(200) >= written, timeout=30,
             what="tag deliveries answered")
    assert stack.answers()[before:].count(202) == 2, stack.answers()
    _published_rows(stack, name, 2)
    time.sleep(1.0)  # let any stray job (there should be none) reach the worker
    rows = stack.rows(name)
    assert sorted(r["trigger"] for r in rows) == ["model_version.created", "model_version_alias.created"]
    assert all(r["publish_status"] == "PUBLISHED" for r in rows)
    # The consumer's counters reach the listener's /metrics (shared multiprocess folder).
    metrics = requests.get(stack.url + "/metrics", timeout=10).text
    assert re.search(r'guard_validations_total\{status="PASSED"\} [1-9]', metrics), metrics[-3000:]
    assert re.search(r'guard_validations_total\{status="FAILED"\} [1-9]', metrics)
    assert "guard_check_duration_seconds_count" in metrics


def test_tracking_server_down_while_job_retries_then_verdict_written(stack: Stack, tmp_path: Path):
    stack.worker.stop()
    base = queue_depth(stack.settings)
    name, version = register_model(stack.client, tmp_path, name="e2e-outage")
    wait_for(lambda: queue_depth(stack.settings) > base, timeout=30, what="job queued")
    stack.server.stop()
    stack.worker.start()
    rows = wait_for(lambda: [r for r in stack.rows(name) if r["status"] == "RETRYING"], timeout=60,
                    what="job retrying while the tracking server is down")
    assert rows[0]["error"]
    stack.server = MlflowServer(stack.server.root, port=stack.server.port)
    stack.server.start()
    tags = _wait_status(stack, name, version, "PASSED", timeout=120)
    assert tags.get("validation.seal_bundle")
    [row] = _published_rows(stack, name)
    assert row["status"] == "PASSED" and row["attempts"] >= 1


def test_consumer_killed_mid_check_completes_exactly_once(stack: Stack, tmp_path: Path):
    stack.worker.stop()
    base = queue_depth(stack.settings)
    name, version = register_model(stack.client, tmp_path, name="e2e-sigkill")
    wait_for(lambda: queue_depth(stack.settings) > base, timeout=30, what="job queued")
    # Keep the check busy: the version looks like it is still registering, so the worker waits on it.
    _set_status(stack, name, version, "PENDING_REGISTRATION")
    stack.worker.start()
    wait_for(lambda: [r for r in stack.rows(name) if r["status"] == "RUNNING"], timeout=60,
             what="check running")
    stack.worker.kill(signal.SIGKILL)
    stack.worker.proc.wait(timeout=10)
    assert stack.rows(name)[0]["status"] == "RUNNING"

    stack.worker.start()
    # huey had already taken the job off the queue: only the journal knows it, and brings it back.
    wait_for(lambda: "re-enqueued unfinished job" in stack.worker.log_tail(20000), timeout=60,
             what="recovery at consumer start-up")
    _set_status(stack, name, version, "READY")
    _wait_status(stack, name, version, "PASSED")
    _published_rows(stack, name)
    time.sleep(1.0)  # a second run of the job, if there were one, would show up here
    rows = stack.rows(name)
    assert len(rows) == 1 and rows[0]["status"] == "PASSED" and rows[0]["publish_status"] == "PUBLISHED"
    assert stack.client.get_model_version(name, version).description.count(SECTION_START) == 1


def test_listener_restart_with_queued_jobs_loses_none(stack: Stack, tmp_path: Path):
    stack.worker.stop()
    base = queue_depth(stack.settings)
    versions = [register_model(stack.client, tmp_path, name="e2e-restart") for _ in range(2)]
    wait_for(lambda: queue_depth(stack.settings) >= base + 2, timeout=30, what="two jobs queued")
    stack.web.stop()
    stack.start_web()
    assert queue_depth(stack.settings) == base + 2
    stack.worker.start()
    for name, version in versions:
        _wait_status(stack, name, version, "PASSED")
    rows = _published_rows(stack, "e2e-restart", 2)
    assert sorted(r["version"] for r in rows) == sorted(v for _, v in versions)
    assert all(r["status"] == "PASSED" for r in rows)
