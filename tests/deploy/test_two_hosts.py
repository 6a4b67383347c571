"""Two hosts sharing a Redis queue and a PostgreSQL store: one verdict per version, on every status page;
a worker killed mid-check is finished by the other host; PostgreSQL restarting loses nothing."""

from __future__ import annotations

import os
import signal
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from mlflow import MlflowClient

from listener.store import Store, version_lock_key
from tests.deploy.stack import RedisServer
from tests.deploy.two_hosts import (
    Host,
    burst,
    deliver_created,
    get_json,
    register_versions,
    start_hosts,
    stop_hosts,
)
from tests.listener.worker.helpers import wait_for
from tests.support.postgres import PostgresServer, find_postgres_bin
from tests.support.procs import MlflowServer

pytestmark = [pytest.mark.e2e,
              pytest.mark.skipif(find_postgres_bin() is None, reason="PostgreSQL is not installed")]
BURST = 200
FINAL = ("PASSED", "FAILED", "ERROR")


@pytest.fixture
def shared(tmp_path: Path) -> Iterator[tuple[RedisServer, PostgresServer]]:
    """The services the hosts share: a real redis-server and a real PostgreSQL, stopped by their pids."""
    redis_server = RedisServer(tmp_path / "redis").start()
    postgres = PostgresServer()
    try:
        postgres.start()
        yield redis_server, postgres
    finally:
        postgres.remove()
        redis_server.stop()


def _one_verdict_per_version_everywhere(hosts: list[Host], prefix: str, versions: list[tuple[str, str]],
                                        timeout: float) -> None:
    """Wait until every host's page lists exactly one finished, published validation per version."""
    expected = sorted(versions)

    def done_on(host: Host) -> bool:
        rows = host.validations(prefix)
        return (sorted((r["model"], str(r["version"])) for r in rows) == expected
                and all(r["status"] in FINAL and r["publish_status"] == "PUBLISHED" for r in rows))

    logs = lambda: "\n".join(h.worker.log_tail(1500) for h in hosts)  # noqa: E731
    try:
        wait_for(lambda: all(done_on(h) for h in hosts), timeout=timeout, interval=1.0,
                 what="one published validation per version on every status page")
    except AssertionError as exc:
        raise AssertionError(f"{exc}\n{logs()}") from None
    for host in hosts:
        rows = host.validations(prefix)
        assert len(rows) == len(versions)  # one per version: no job ran twice, none was lost
        assert {r["status"] for r in rows} == {"PASSED"}, [r for r in rows if r["status"] != "PASSED"]


def test_a_burst_over_two_hosts_gives_one_verdict_per_version_on_both_pages(
        tmp_path: Path, mlflow_server: MlflowServer, shared: tuple[RedisServer, PostgresServer]):
    redis_server, postgres = shared
    client = MlflowClient(tracking_uri=mlflow_server.url)
    prefix = f"two-{uuid.uuid4().hex[:6]}"
    versions = register_versions(client, tmp_path, prefix, BURST)
    hosts = start_hosts(tmp_path, tracking_uri=mlflow_server.url, queue_url=redis_server.url,
                        store_url=postgres.url)
    try:
        answers = burst(client, hosts, versions)
        assert [code for _, code, _ in answers] == [202] * BURST, [a for a in answers if a[1] != 202]
        _one_verdict_per_version_everywhere(hosts, prefix, versions, timeout=300)
        for name, version in versions:
            assert client.get_model_version(name, version).tags["validation.status"] == "PASSED"
        assert not any((tmp_path / f"host-{h.name}" / "results.db").exists() for h in hosts)
    finally:
        stop_hosts(hosts)


def test_postgres_restarted_mid_burst_loses_no_job_and_readyz_says_why(
        tmp_path: Path, mlflow_server: MlflowServer, shared: tuple[RedisServer, PostgresServer]):
    redis_server, postgres = shared
    client = MlflowClient(tracking_uri=mlflow_server.url)
    prefix = f"pgr-{uuid.uuid4().hex[:6]}"
    versions = register_versions(client, tmp_path, prefix, 60)
    hosts = start_hosts(tmp_path, tracking_uri=mlflow_server.url, queue_url=redis_server.url,
                        store_url=postgres.url)
    try:
        first, rest = versions[:20], versions[20:]
        answers = burst(client, hosts, first)
        postgres.stop()
        # Deliveries keep being accepted (the queue is Redis); the worker's store writes wait and retry.
        answers += burst(client, hosts, rest[:20])
        for host in hosts:
            code, body = get_json(host.web.url + "/readyz")
            assert code == 503, body
            [reason] = [r for r in body["reasons"] if r.startswith("store ")]
            assert "unreachable" in reason and f"127.0.0.1:{postgres.port}" in reason
            assert get_json(host.web.url + "/api/validations")[0] == 503
        postgres.start()
        answers += burst(client, hosts, rest[20:])
        assert [code for _, code, _ in answers] == [202] * len(versions), [a for a in answers if a[1] != 202]
        for host in hosts:
            wait_for(lambda h=host: get_json(h.web.url + "/readyz")[1].get("status") == "ready", timeout=30,
                     what=f"host {host.name} ready again")
        _one_verdict_per_version_everywhere(hosts, prefix, versions, timeout=300)
    finally:
        stop_hosts(hosts)


def test_a_worker_killed_mid_check_is_finished_once_by_the_other_host(
        tmp_path: Path, mlflow_server_http: MlflowServer, shared: tuple[RedisServer, PostgresServer]):
    redis_server, postgres = shared
    # Artifacts only over HTTP, and many small files: a check takes long enough to be caught in the act.
    client = MlflowClient(tracking_uri=mlflow_server_http.url)
    files = {f"data/part-{i:03d}/shard.txt": f"shard {i}\n" * 20 for i in range(300)}
    files["MLmodel"] = "artifact_path: model\nflavors: {}\n"
    prefix = f"kill-{uuid.uuid4().hex[:6]}"
    [(name, version)] = register_versions(client, tmp_path, prefix, 1, files=files)
    hosts = start_hosts(tmp_path, tracking_uri=mlflow_server_http.url, queue_url=redis_server.url,
                        store_url=postgres.url)
    store = Store(postgres.url)
    try:
        _, code, _ = deliver_created(client, hosts[0], name, version)
        assert code == 202
        lock = version_lock_key("mlflow", name, version)
        owner = wait_for(lambda: store.lock_holder(lock), timeout=120, interval=0.02,
                         what="a worker checking the version")
        pid = int(owner.split(":")[1])
        [victim] = [h for h in hosts if os.getpgid(pid) == h.worker.pid]
        [survivor] = [h for h in hosts if h is not victim]
        victim.worker.kill(signal.SIGKILL)  # never restarted
        [row] = [r for r in store.recent(limit=10) if r["model"] == name]
        assert row["status"] == "RUNNING" and row["finished_at"] is None, row  # killed mid-check

        # The survivor's periodic recovery takes the job once the dead worker's heartbeat and lock lapse.
        wait_for(lambda: (store.get(row["job_key"]) or {}).get("publish_status") == "PUBLISHED", timeout=240,
                 interval=1.0, what="the other host to finish the job")
        finished = store.get(row["job_key"])
        assert finished["status"] == "PASSED"
        assert client.get_model_version(name, version).tags["validation.status"] == "PASSED"
        survivor_log = survivor.worker.log_tail(10**7)
        assert survivor_log.count(f'"job": "{row["job_key"]}"') == 1, survivor_log[-3000:]
        assert f'"job": "{row["job_key"]}"' not in victim.worker.log_tail(10**7)
        for host in hosts:  # both listeners still run: each page lists the one validation
            assert [r["status"] for r in host.validations(prefix)] == ["PASSED"]
    finally:
        store.dispose()
        stop_hosts(hosts)
