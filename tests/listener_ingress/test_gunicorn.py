"""The listener under real gunicorn (two workers, configured by environment only), stopped by its pid."""

from __future__ import annotations

import http.client
import json
import urllib.request
from pathlib import Path

import pytest

from listener import queue as job_queue
from listener.config import Settings
from tests.listener_ingress.helpers import MLFLOW_SECRET, mlflow_delivery, queued_messages
from tests.support.procs import VENV_BIN, ManagedProcess, free_port, wait_http

pytestmark = pytest.mark.e2e


def _start(tmp_path: Path, port: int) -> ManagedProcess:
    metrics_dir = tmp_path / "metrics"
    metrics_dir.mkdir(exist_ok=True)
    env = {
        "GUARD_DATA_DIR": str(tmp_path / "guard"),
        "GUARD_MLFLOW_SECRET": f"old-secret,{MLFLOW_SECRET}",
        "GUARD_MAX_BODY_BYTES": "4096",
        "PROMETHEUS_MULTIPROC_DIR": str(metrics_dir),
        "MLFLOW_TRACKING_URI": "",
    }
    argv = [str(VENV_BIN / "gunicorn"), "--bind", f"127.0.0.1:{port}", "--workers", "2",
            "--graceful-timeout", "5", "listener.app:create_app()"]
    proc = ManagedProcess(argv, env=env, cwd=Path(__file__).resolve().parents[2],
                          log_path=tmp_path / "gunicorn.log").start()
    try:
        wait_http(f"http://127.0.0.1:{port}/healthz", timeout=30, proc=proc.proc)
    except Exception:
        proc.stop()
        raise
    return proc


def _post(port: int, headers: dict, body: bytes, chunked: bool = False) -> tuple[int, dict]:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    try:
        if chunked:
            conn.request("POST", "/webhooks/mlflow", body=iter([body[:100], body[100:]]), headers=headers,
                         encode_chunked=True)
        else:
            conn.request("POST", "/webhooks/mlflow", body=body, headers=headers)
        resp = conn.getresponse()
        return resp.status, json.loads(resp.read())
    finally:
        conn.close()


def _deliveries_202(port: int) -> float:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as resp:
        text = resp.read().decode()
    for line in text.splitlines():
        if line.startswith("guard_deliveries_total{") and 'code="202"' in line and 'route="mlflow"' in line:
            return float(line.rsplit(" ", 1)[1])
    return 0.0


def test_signed_delivery_under_gunicorn_is_queued_counted_and_survives_a_restart(tmp_path):
    port = free_port()
    settings = Settings(data_dir=tmp_path / "guard", mlflow_secrets=[MLFLOW_SECRET])
    headers, body = mlflow_delivery({"name": "demo-model", "version": "7"})
    proc = _start(tmp_path, port)
    try:
        status, answer = _post(port, headers, body)
        assert status == 202, (answer, proc.log_tail())
        assert answer["status"] == "queued"
        # Counted once, whichever of the two workers answers the scrape.
        assert _deliveries_202(port) == 1.0
        assert _deliveries_202(port) == 1.0
        # Chunked upload over the limit: refused on what was read, not on a Content-Length.
        big_headers, big_body = mlflow_delivery({"name": "m", "version": "1", "description": "z" * 8192})
        big_headers.pop("Content-Length", None)
        assert _post(port, big_headers, big_body, chunked=True)[0] == 413
    finally:
        proc.stop()
    assert not proc.running()

    proc = _start(tmp_path, port)
    try:
        status, again = _post(port, headers, body)
        assert status == 200 and again == {"status": "duplicate", "id": answer["id"]}
    finally:
        proc.stop()
    try:
        [message] = queued_messages(settings)
        assert message.id == answer["id"] and message.args[0]["version"] == "7"
    finally:
        job_queue.close_all()
