"""Probes and metrics: /healthz, /readyz against real HTTP servers, /metrics."""

from __future__ import annotations

import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from listener import intake
from listener.config import Settings
from listener.web import create_app
from tests.listener.helpers import mlflow_delivery


def _post(client, route: str, headers: dict, body: bytes):
    return client.post(f"/webhooks/{route}", data=body, headers=headers)


def test_healthz(client):
    assert client.get("/healthz").json == {"status": "ok"}


def test_readyz_reports_an_unreachable_tracking_server(tmp_path):
    from tests.support.procs import free_port

    settings = Settings(data_dir=tmp_path / "g", tracking_uri=f"http://127.0.0.1:{free_port()}")
    try:
        response = create_app(settings).test_client().get("/readyz")
        assert response.status_code == 503
        assert any("unreachable" in r for r in response.json["reasons"])
    finally:
        intake.close_all()


class _HealthHandler(BaseHTTPRequestHandler):
    """Answers ``GET /health`` like an MLflow tracking server does (and counts the probes)."""

    probes: list[str] = []

    def do_GET(self) -> None:  # noqa: N802 - http.server's naming
        type(self).probes.append(self.path)
        code = 200 if self.path == "/health" else 404
        self.send_response(code)
        self.send_header("Content-Type", "text/plain")
        self.end_headers()
        self.wfile.write(b"OK")

    def log_message(self, *args) -> None:
        pass


def test_readyz_when_queue_and_tracking_server_answer(tmp_path):
    # A real HTTP server on loopback: readiness only asks it GET /health (an mlflow server costs ~10 s).
    server = ThreadingHTTPServer(("127.0.0.1", 0), _HealthHandler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    settings = Settings(data_dir=tmp_path / "g", tracking_uri=f"http://127.0.0.1:{server.server_port}/")
    try:
        response = create_app(settings).test_client().get("/readyz")
        assert response.status_code == 200, response.json
        assert response.json == {"status": "ready"}
        assert _HealthHandler.probes == ["/health"]
    finally:
        server.shutdown()
        server.server_close()
        intake.close_all()


def test_metrics_count_answers_and_show_queue_depth(client):
    def count(text: str, code: str) -> float:
        for line in text.splitlines():
            if line.startswith("guard_deliveries_total{") and f'code="{code}"' in line \
                    and 'route="mlflow"' in line:
                return float(line.rsplit(" ", 1)[1])
        return 0.0

    before = client.get("/metrics").get_data(as_text=True)
    _post(client, "mlflow", *mlflow_delivery())
    _post(client, "mlflow", *mlflow_delivery(secret="wrong"))
    after = client.get("/metrics").get_data(as_text=True)
    assert count(after, "202") == count(before, "202") + 1
    assert count(after, "401") == count(before, "401") + 1
    assert "guard_queue_depth 1.0" in after
    for name in ("guard_validations_total", "guard_check_duration_seconds", "guard_publish_failures_total"):
        assert f"# TYPE {name}" in after
