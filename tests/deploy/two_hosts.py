"""Two hosts, as on separate machines: each a listener (gunicorn) and a worker (huey consumer) with its own
``GUARD_DATA_DIR``, sharing one redis-server queue, one PostgreSQL store and one tracking server."""

from __future__ import annotations

import json
import random
import urllib.error
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

from mlflow import MlflowClient

from tests.deploy.stack import Web, Worker, guard_env, mlflow_delivery, version_created_data
from tests.listener.worker.helpers import register_model

SECRET = "two-hosts-webhook-secret"


@dataclass
class Host:
    """One machine: its listener and its worker, on its own data folder."""

    name: str
    web: Web
    worker: Worker

    def validations(self, prefix: str) -> list[dict]:
        """This host's ``/api/validations`` rows of the models named ``prefix…``."""
        _, body = get_json(self.web.url + "/api/validations?limit=500")
        return [r for r in body.get("validations", []) if r["model"].startswith(prefix)]


def get_json(url: str, timeout: float = 30) -> tuple[int, dict]:
    """Status and JSON body of a GET."""
    try:
        with urllib.request.urlopen(url, timeout=timeout) as resp:
            return resp.status, json.loads(resp.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read() or b"{}")


def post(url: str, headers: dict[str, str], body: bytes, timeout: float = 30) -> tuple[int, dict]:
    """Status and JSON body of a POST."""
    req = urllib.request.Request(url, data=body, headers=headers, method="POST")
    try:
        with urllib.request.urlopen(req, timeout=timeout) as resp:
            return resp.status, json.loads(resp.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read() or b"{}")


def start_hosts(root: Path, *, tracking_uri: str, queue_url: str, store_url: str, names: str = "ab",
                worker_threads: int = 2, web_workers: int = 2) -> list[Host]:
    """Start one listener and one worker per host name; stop them with :func:`stop_hosts`."""
    hosts: list[Host] = []
    try:
        for name in names:
            env = guard_env(GUARD_QUEUE=queue_url, GUARD_STORE=store_url, GUARD_MLFLOW_SECRET=SECRET,
                            MLFLOW_TRACKING_URI=tracking_uri, GUARD_DATA_DIR=str(root / f"host-{name}"))
            host = Host(name, Web(env, root / f"web-{name}.log", workers=web_workers),
                        Worker(env, root / f"worker-{name}.log", threads=worker_threads))
            hosts.append(host)
            host.worker.start()
            host.web.start()
    except BaseException:
        stop_hosts(hosts)
        raise
    return hosts


def stop_hosts(hosts: list[Host]) -> None:
    """Stop every process the hosts run, by its own process id."""
    for host in reversed(hosts):
        host.web.stop()
        host.worker.stop()


def created_delivery(client: MlflowClient, name: str, version: str) -> tuple[str, dict[str, str], bytes]:
    """The signed ``model_version.created`` delivery of an existing version: (delivery id, headers, body)."""
    headers, body = mlflow_delivery(SECRET, "created", version_created_data(client, name, version))
    return headers["X-MLflow-Delivery-Id"], headers, body


def deliver_created(client: MlflowClient, host: Host, name: str, version: str) -> tuple[str, int, dict]:
    """Send ``host`` the ``model_version.created`` delivery of a version; (delivery id, code, body)."""
    delivery_id, headers, body = created_delivery(client, name, version)
    return (delivery_id, *post(host.web.url + "/webhooks/mlflow", headers, body))


def register_versions(client: MlflowClient, tmp_path: Path, prefix: str, count: int,
                      files: dict[str, str] | None = None) -> list[tuple[str, str]]:
    """``count`` versions over a few models, all of one small logged model (registered once)."""
    name, version = register_model(client, tmp_path, name=f"{prefix}-0", files=files)
    source = client.get_model_version(name, version)
    out = [(name, version)]
    for i in range(1, count):
        model = f"{prefix}-{i % 4}"
        if i < 4:
            client.create_registered_model(model)
        mv = client.create_model_version(model, source.source, run_id=source.run_id)
        out.append((model, str(mv.version)))
    return out


def burst(client: MlflowClient, hosts: list[Host], versions: list[tuple[str, str]], senders: int = 16,
          seed: int = 11) -> list[tuple[str, int, dict]]:
    """One delivery per version, each to a listener picked at random, sent by ``senders`` concurrent
    clients (all deliveries are built and signed first); returns (delivery id, code, body) per version."""
    rng = random.Random(seed)
    prepared = [(rng.choice(hosts), *created_delivery(client, name, version)) for name, version in versions]

    def send(item: tuple[Host, str, dict[str, str], bytes]) -> tuple[str, int, dict]:
        host, delivery_id, headers, body = item
        return (delivery_id, *post(host.web.url + "/webhooks/mlflow", headers, body))

    with ThreadPoolExecutor(max_workers=senders) as pool:
        return list(pool.map(send, prepared))
