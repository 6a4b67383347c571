"""Run the Procfile's processes and a real redis-server for deploy and browser tests; sign deliveries."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import os
import shutil
import sys
import time
import uuid
from pathlib import Path

import pytest

from tests.support.procs import ManagedProcess, free_port, wait_http

REPO_ROOT = Path(__file__).resolve().parents[2]
VENV_BIN = Path(sys.executable).parent


def require_tool(path_or_name: str, why: str) -> str:
    """The tool's path; skip the test where it is missing, but fail in CI, where .ci/run installs it."""
    found = shutil.which(path_or_name)
    if found:
        return found
    if os.environ.get("CI"):
        pytest.fail(f"{path_or_name} is missing in CI ({why}); .ci/run should have installed it")
    pytest.skip(f"{path_or_name} is not installed ({why})")


def procfile() -> dict[str, str]:
    """The process types of the repository's Procfile: name -> shell command."""
    entries = {}
    for line in (REPO_ROOT / "Procfile").read_text().splitlines():
        if line.strip() and not line.lstrip().startswith("#"):
            name, cmd = line.split(":", 1)
            entries[name.strip()] = cmd.strip()
    return entries


def guard_env(**values: str) -> dict[str, str]:
    """A clean environment for listener/worker processes: the test's values, none of the caller's."""
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("GUARD_", "MLFLOW_", "DATABRICKS_", "PROMETHEUS_"))}
    env.update(PATH=f"{VENV_BIN}{os.pathsep}{os.environ.get('PATH', '')}", MLFLOW_DISABLE_TELEMETRY="true",
               PYTHONUNBUFFERED="1")
    env.update(values)
    return env


class ProcfileProcess(ManagedProcess):
    """One process type of the Procfile, run by the shell exactly as a Procfile runner would."""

    def __init__(self, kind: str, env: dict[str, str], log_path: Path) -> None:
        super().__init__(["/bin/sh", "-c", procfile()[kind]], env=env, cwd=REPO_ROOT, log_path=log_path)
        self.kind = kind


class Web(ProcfileProcess):
    """The ``web`` process (gunicorn with deploy/gunicorn.conf.py) on a free loopback port."""

    def __init__(self, env: dict[str, str], log_path: Path, workers: int = 2) -> None:
        self.port = free_port()
        super().__init__("web", {**env, "PORT": str(self.port), "GUNICORN_BIND": f"127.0.0.1:{self.port}",
                                 "WEB_CONCURRENCY": str(workers)}, log_path)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> Web:
        super().start()
        try:
            wait_http(self.url + "/healthz", timeout=90, proc=self.proc)
        except Exception as exc:
            self.stop()
            raise RuntimeError(f"web did not start: {exc}\n{self.log_tail()}") from exc
        return self


class Worker(ProcfileProcess):
    """The ``worker`` process (huey consumer)."""

    def __init__(self, env: dict[str, str], log_path: Path, threads: int = 2) -> None:
        super().__init__("worker", {**env, "GUARD_WORKER_THREADS": str(threads)}, log_path)


class RedisServer(ManagedProcess):
    """A real redis-server on a free loopback port, in memory only, owned by the test by its pid."""

    def __init__(self, root: Path) -> None:
        binary = require_tool("redis-server", "Redis scale-out test")
        root.mkdir(parents=True, exist_ok=True)
        self.port = free_port()
        super().__init__([binary, "--port", str(self.port), "--bind", "127.0.0.1", "--save", "",
                          "--appendonly", "no", "--dir", str(root)], log_path=root / "redis.log")

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self, timeout: float = 20.0) -> RedisServer:
        import redis

        super().start()
        conn = redis.Redis(host="127.0.0.1", port=self.port, socket_timeout=1)
        deadline = time.monotonic() + timeout
        while True:
            try:
                if conn.ping():
                    return self
            except redis.exceptions.ConnectionError:
                pass
            if not self.running() or time.monotonic() > deadline:
                self.stop()
                raise RuntimeError(f"redis-server did not start\n{self.log_tail()}")
            time.sleep(0.1)


def mlflow_delivery(secret: str, action: str, data: dict, entity: str = "model_version",
                    delivery_id: str | None = None) -> tuple[dict[str, str], bytes]:
    """Headers and raw body of a webhook delivery exactly as ``mlflow server`` sends and signs it."""
    body = json.dumps({"entity": entity, "action": action,
                       "timestamp": time.strftime("%Y-%m-%dT%H:%M:%S+00:00", time.gmtime()),
                       "data": data}).encode()
    delivery_id = delivery_id or str(uuid.uuid4())
    timestamp = str(int(time.time()))
    mac = hmac.new(secret.encode(), f"{delivery_id}.{timestamp}.".encode() + body, hashlib.sha256)
    signature = "v1," + base64.b64encode(mac.digest()).decode()
    headers = {"Content-Type": "application/json", "X-MLflow-Delivery-Id": delivery_id,
               "X-MLflow-Timestamp": timestamp, "X-MLflow-Signature": signature}
    return headers, body


def version_created_data(client, name: str, version: str) -> dict:
    """The ``data`` of a ``model_version.created`` delivery for an existing version."""
    mv = client.get_model_version(name, version)
    return {"name": name, "version": str(version), "source": mv.source, "run_id": mv.run_id, "tags": {},
            "description": mv.description or ""}
