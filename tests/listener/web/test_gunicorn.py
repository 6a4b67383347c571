"""The listener under real gunicorn (two workers, configured by environment only), stopped by its pid."""

from __future__ import annotations

import http.client
import json
import socket
import time
import urllib.request
from pathlib import Path

import pytest

from listener import intake
from listener.config import Settings
from tests.listener.helpers import MLFLOW_SECRET, mlflow_delivery, queued_messages
from tests.support.procs import VENV_BIN, ManagedProcess, free_port, wait_http

pytestmark = pytest.mark.e2e
REPO_ROOT = Path(__file__).resolve().parents[3]


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
            "--graceful-timeout", "5", "listener.web:create_app()"]
    proc = ManagedProcess(argv, env=env, cwd=REPO_ROOT,
                          log_path=tmp_path / "gunicorn.log").start()
    try:
        wait_http(f"http://127.0.0.1:{port}/healthz", timeout=30, proc=proc.proc)
    except Exception:
        proc.stop()
        raise
    return proc


def _post(port: int, headers: dict, body: bytes, chunked: bool = False,
          timeout: float = 10) -> tuple[int, dict]:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
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
        intake.close_all()


def _start_deployed(tmp_path: Path, port: int, **env: str) -> ManagedProcess:
    """gunicorn as the Procfile runs it: deploy/gunicorn.conf.py (threaded workers, body-read timeout)."""
    base = {"GUARD_DATA_DIR": str(tmp_path / "guard"), "GUARD_MLFLOW_SECRET": MLFLOW_SECRET,
            "MLFLOW_TRACKING_URI": "", "GUNICORN_BIND": f"127.0.0.1:{port}", "WEB_CONCURRENCY": "2",
            "PROMETHEUS_MULTIPROC_DIR": str(tmp_path / "metrics")}
    argv = [str(VENV_BIN / "gunicorn"), "-c", "deploy/gunicorn.conf.py", "listener.web:create_app()"]
    proc = ManagedProcess(argv, env={**base, **env}, cwd=REPO_ROOT, log_path=tmp_path / "gunicorn.log")
    proc.start()
    try:
        wait_http(f"http://127.0.0.1:{port}/healthz", timeout=30, proc=proc.proc)
    except Exception:
        proc.stop()
        raise
    return proc


def _partial(port: int, headers: dict, body: bytes, sent: int, declared: int | None = None) -> socket.socket:
    """A connection that sent the headers (Content-Length ``declared``, default the body's length) and the
    first ``sent`` bytes of ``body``, and then holds on."""
    length = len(body) if declared is None else declared
    sock = socket.create_connection(("127.0.0.1", port), timeout=30)
    head = "".join(f"{k}: {v}\r\n" for k, v in {**headers, "Content-Length": str(length)}.items())
    sock.sendall(f"POST /webhooks/mlflow HTTP/1.1\r\nHost: 127.0.0.1\r\n{head}\r\n".encode() + body[:sent])
    return sock


def _status_of(sock: socket.socket) -> int:
    data = b""
    while b"\r\n" not in data:
        chunk = sock.recv(4096)
        if not chunk:
            break
        data += chunk
    return int(data.split(b" ", 2)[1]) if data else 0


def test_a_body_shorter_than_its_content_length_is_refused_and_not_queued(tmp_path):
    port = free_port()
    settings = Settings(data_dir=tmp_path / "guard", mlflow_secrets=[MLFLOW_SECRET])
    proc = _start_deployed(tmp_path, port)
    try:
        # Signed as sent, but the Content-Length promises more: the client half-closes before the rest.
        headers, body = mlflow_delivery({"name": "demo-model", "version": "4"})
        sock = _partial(port, headers, body, len(body), declared=len(body) + 20)
        sock.shutdown(socket.SHUT_WR)
        try:
            assert _status_of(sock) == 400, proc.log_tail()
        finally:
            sock.close()
        # The same delivery with its true length is taken: nothing of the broken one was recorded.
        assert _post(port, headers, body)[0] == 202
    finally:
        proc.stop()
    try:
        assert [m.args[0]["version"] for m in queued_messages(settings)] == ["4"]
    finally:
        intake.close_all()


def test_fifty_clients_holding_partial_bodies_do_not_stall_the_intake(tmp_path):
    """Connections holding a body half-sent hold no worker: the probe and a delivery are answered meanwhile.

    The body-read timeout is set far beyond the answers' own timeouts, so only a free thread can answer
    them while the 50 bodies stay incomplete (with sync workers both wait for the timeout and fail).
    """
    port = free_port()
    settings = Settings(data_dir=tmp_path / "guard", mlflow_secrets=[MLFLOW_SECRET])
    proc = _start_deployed(tmp_path, port, GUNICORN_BODY_TIMEOUT="120")
    held: list[socket.socket] = []
    try:
        for i in range(50):
            headers, body = mlflow_delivery({"name": "slow-model", "version": str(i + 1)})
            held.append(_partial(port, headers, body, 10))
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=60) as resp:
            assert resp.status == 200
        headers, body = mlflow_delivery({"name": "demo-model", "version": "99"})
        assert _post(port, headers, body, timeout=60)[0] == 202
    finally:
        for sock in held:
            sock.close()
        proc.stop()
    try:
        assert [m.args[0]["model"] for m in queued_messages(settings)] == ["demo-model"]
    finally:
        intake.close_all()


def test_a_client_that_stops_mid_body_is_answered_400_after_the_body_timeout(tmp_path):
    port = free_port()
    settings = Settings(data_dir=tmp_path / "guard", mlflow_secrets=[MLFLOW_SECRET])
    proc = _start_deployed(tmp_path, port, GUNICORN_BODY_TIMEOUT="1")
    try:
        headers, body = mlflow_delivery({"name": "slow-model", "version": "1"})
        sock = _partial(port, headers, body, 10)
        try:
            assert _status_of(sock) == 400, proc.log_tail()
        finally:
            sock.close()
    finally:
        proc.stop()
    try:
        assert queued_messages(settings) == []
    finally:
        intake.close_all()


def test_route_notices_are_logged_once_however_many_workers(tmp_path):
    """The master says it before forking; three workers loading the app stay quiet."""
    proc = _start_deployed(tmp_path, free_port(), WEB_CONCURRENCY="3", GUARD_MLFLOW_SECRET="")
    try:
        deadline = time.monotonic() + 30
        while proc.log_tail(100_000).count("Booting worker") < 3 and time.monotonic() < deadline:
            time.sleep(0.2)
        time.sleep(3)  # each worker loads the app right after it boots
        log = proc.log_tail(100_000)
    finally:
        proc.stop()
    assert log.count("Booting worker") == 3, log
    assert log.count("POST /webhooks/mlflow has no secret configured") == 1, log
    assert log.count("POST /webhooks/databricks is off") == 1, log
