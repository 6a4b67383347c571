"""The Redis queue backend against a real redis-server (skipped where none is installed)."""

from __future__ import annotations

import shutil
import socket
import time
from pathlib import Path

import pytest

from listener import intake
from listener.config import Settings
from listener.web import create_app
from tests.listener.helpers import MLFLOW_SECRET, mlflow_delivery, queued_messages
from tests.support.procs import ManagedProcess, free_port

REDIS_SERVER = shutil.which("redis-server")
pytestmark = pytest.mark.skipif(REDIS_SERVER is None, reason="redis-server is not installed on this machine")


def _wait_port(port: int, timeout: float = 15.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
            return
        except OSError:
            time.sleep(0.1)
    raise TimeoutError(f"redis-server did not listen on {port}")


def test_redis_queue_takes_each_delivery_once_across_restarts(tmp_path: Path):
    port = free_port()
    server = ManagedProcess([REDIS_SERVER, "--port", str(port), "--bind", "127.0.0.1", "--save", "",
                             "--dir", str(tmp_path)], log_path=tmp_path / "redis.log").start()
    try:
        _wait_port(port)
        settings = Settings(data_dir=tmp_path / "g", mlflow_secrets=[MLFLOW_SECRET],
                            queue_url=f"redis://127.0.0.1:{port}/0")
        headers, body = mlflow_delivery()
        first = create_app(settings).test_client().post("/webhooks/mlflow", data=body, headers=headers)
        assert first.status_code == 202
        intake.close_all()
        client = create_app(settings).test_client()
        again = client.post("/webhooks/mlflow", data=body, headers=headers)
        assert again.status_code == 200 and again.json == {"status": "duplicate", "id": first.json["id"]}
        assert intake.queue_depth(settings) == 1
        [message] = queued_messages(settings)
        assert message.name == intake.TASK_NAME and message.id == first.json["id"]
        assert client.get("/readyz").json["reasons"] == ["MLFLOW_TRACKING_URI is not set"]
    finally:
        intake.close_all()
        server.stop()
