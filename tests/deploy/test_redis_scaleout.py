"""Scale-out on Redis: two web processes and two workers, as on separate machines, share one real queue."""

from __future__ import annotations

import json
import random
import time
import urllib.error
import urllib.request
import uuid
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from mlflow import MlflowClient

from listener.config import Settings
from listener.intake import queue_depth
from listener.store import Store
from tests.deploy.stack import RedisServer, Web, Worker, guard_env, mlflow_delivery, version_created_data
from tests.listener.worker.helpers import register_model
from tests.support.procs import MlflowServer

pytestmark = pytest.mark.e2e
SECRET = "scale-out-webhook-secret"
VERSIONS = 6
COPIES_PER_WEB = 3  # every delivery reaches each web three times: the registry retrying, a proxy replaying


def post(url: str, headers: dict[str, str], body: bytes) -> tuple[int, dict]:
    req = urllib.request.Request(url, data=body, headers=headers, method="POST")
    try:
        with urllib.request.urlopen(req, timeout=30) as resp:
            return resp.status, json.loads(resp.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read() or b"{}")


def test_two_webs_two_workers_one_redis_queue(tmp_path: Path, mlflow_server: MlflowServer) -> None:
    redis_server = RedisServer(tmp_path / "redis").start()
    started = []
    try:
        client = MlflowClient(tracking_uri=mlflow_server.url)
        prefix = f"scale-{uuid.uuid4().hex[:6]}"
        versions = [register_model(client, tmp_path, name=f"{prefix}-{i}") for i in range(VERSIONS)]

        # Each process gets its own data folder, as on its own machine: only the queue is shared.
        def env(machine: str) -> dict[str, str]:
            return guard_env(GUARD_QUEUE=redis_server.url, GUARD_MLFLOW_SECRET=SECRET,
                             MLFLOW_TRACKING_URI=mlflow_server.url, GUARD_DATA_DIR=str(tmp_path / machine))

        webs = [Web(env(f"web-{m}"), tmp_path / f"web-{m}.log") for m in "ab"]
        workers = [Worker(env(f"worker-{m}"), tmp_path / f"worker-{m}.log") for m in "ab"]
        for proc in [*webs, *workers]:
            started.append(proc)
            proc.start()

        deliveries = []
        for name, version in versions:
            headers, body = mlflow_delivery(SECRET, "created", version_created_data(client, name, version))
            deliveries += [(headers["X-MLflow-Delivery-Id"], web.url, headers, body)
                           for web in webs for _ in range(COPIES_PER_WEB)]
        random.Random(7).shuffle(deliveries)
        def send(d: tuple) -> tuple:
            delivery_id, base, headers, body = d
            return (delivery_id, *post(base + "/webhooks/mlflow", headers, body))

        with ThreadPoolExecutor(max_workers=12) as pool:
            answers = list(pool.map(send, deliveries))

        by_delivery: dict[str, list[tuple[int, dict]]] = {}
        for delivery_id, code, body in answers:
            by_delivery.setdefault(delivery_id, []).append((code, body))
        assert len(by_delivery) == VERSIONS
        for delivery_id, got in by_delivery.items():
            queued = [b for c, b in got if c == 202]
            assert len(queued) == 1, (delivery_id, got)
            assert queued[0]["status"] == "queued"
            dups = [(c, b) for c, b in got if c != 202]
            assert len(dups) == 2 * COPIES_PER_WEB - 1
            assert all(c == 200 and b == {"status": "duplicate", "id": queued[0]["id"]} for c, b in dups), got

        # Each web runs two gunicorn workers; /metrics adds up what both answered (multiprocess folder).
        for web in webs:
            with urllib.request.urlopen(web.url + "/metrics", timeout=10) as resp:
                text = resp.read().decode()
            answered = sum(float(line.rsplit(" ", 1)[1]) for line in text.splitlines()
                           if line.startswith('guard_deliveries_total{') and 'route="mlflow"' in line)
            assert answered == VERSIONS * COPIES_PER_WEB, text

        # Nothing lost: every version gets its verdict.
        deadline = time.monotonic() + 120
        pending = set(versions)
        while pending and time.monotonic() < deadline:
            for name, version in list(pending):
                if client.get_model_version(name, version).tags.get("validation.status"):
                    pending.discard((name, version))
            time.sleep(0.3)
        logs = "\n".join(p.log_tail(1500) for p in workers)
        assert not pending, f"no verdict for {sorted(pending)}\n{logs}"
        for name, version in versions:
            assert client.get_model_version(name, version).tags["validation.status"] == "PASSED"

        settings = Settings(queue_url=redis_server.url, data_dir=tmp_path / "web-a")
        deadline = time.monotonic() + 30
        while queue_depth(settings) and time.monotonic() < deadline:
            time.sleep(0.2)
        assert queue_depth(settings) == 0

        # Exactly one validation per version, across both workers' results.
        rows = []
        for m in "ab":
            db = tmp_path / f"worker-{m}" / "results.db"
            if db.exists():
                store = Store(f"sqlite:///{db}")
                rows += [r for r in store.recent(limit=500) if r["model"].startswith(prefix)]
                store.dispose()
        per_version: dict[tuple[str, str], int] = {}
        for r in rows:
            key = (r["model"], str(r["version"]))
            per_version[key] = per_version.get(key, 0) + 1
        assert per_version == {v: 1 for v in versions}, rows
        assert all(r["status"] == "PASSED" for r in rows)
    finally:
        for proc in reversed(started):
            proc.stop()
        redis_server.stop()
