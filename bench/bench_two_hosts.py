"""A burst of deliveries against two hosts sharing PostgreSQL and Redis: non-2xx answers, time to drain.

Starts, on loopback with free ports: one ``mlflow server`` (SQLite store, local artifact root), one
``redis-server`` (the queue) and one PostgreSQL server (the store), then two hosts, each the Procfile's
``web`` (gunicorn with ``deploy/gunicorn.conf.py``) and ``worker`` (huey consumer) with its own
``GUARD_DATA_DIR``. It registers ``--versions`` versions of one small model (five files in nested
folders), builds and signs one ``model_version.created`` delivery per version, and sends them all at
once from ``--senders`` concurrent clients, each delivery to one of the two listeners picked at random.

Reported: the answers that were not 2xx (target 0), the burst's duration and rate, and the time to
drain: from the first delivery sent until every version's validation is stored and published in the
shared store (polled every 0.5 s), with the rate of verdicts. Everything it starts is stopped by pid.

    .venv/bin/python bench/bench_two_hosts.py                           # 2,000 deliveries, 50 senders
    .venv/bin/python bench/bench_two_hosts.py --versions 200 --senders 20   # quick check

Results are printed as markdown and written as JSON + markdown to ``bench/out/``.
"""

from __future__ import annotations

import argparse
import datetime as _dt
import json
import os
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path
from typing import Any

from machine import machine_info

REPO = Path(__file__).resolve().parents[1]
OUT_DIR = REPO / "bench" / "out"
sys.path.insert(0, str(REPO))  # the test suite's process helpers start the servers

from mlflow import MlflowClient  # noqa: E402
from sqlalchemy import func, select  # noqa: E402

from listener.store import PUBLISH_DONE, Store  # noqa: E402
from listener.store.schema import validations as v  # noqa: E402
from tests.deploy.stack import RedisServer  # noqa: E402
from tests.deploy.two_hosts import burst, register_versions, start_hosts, stop_hosts  # noqa: E402
from tests.support.postgres import PostgresServer  # noqa: E402
from tests.support.procs import MlflowServer  # noqa: E402


def published(store: Store, prefix: str) -> int:
    """How many validations of the bench's models are stored and published (one count query)."""
    query = select(func.count()).where(v.c.model.startswith(prefix), v.c.publish_status == PUBLISH_DONE)
    with store.engine.connect() as conn:
        return int(conn.execute(query).scalar_one())


def run(args: argparse.Namespace, root: Path) -> dict[str, Any]:
    mlflow = MlflowServer(root / "mlflow").start()
    redis_server = RedisServer(root / "redis").start()
    postgres = PostgresServer().start()
    hosts: list = []
    store = Store(postgres.url)
    try:
        client = MlflowClient(tracking_uri=mlflow.url)
        prefix = "bench-two"
        t0 = time.monotonic()
        versions = register_versions(client, root, prefix, args.versions)
        print(f"registered {len(versions)} versions in {time.monotonic() - t0:.0f} s", file=sys.stderr)
        hosts = start_hosts(root, tracking_uri=mlflow.url, queue_url=redis_server.url, store_url=postgres.url,
                            worker_threads=args.worker_threads)
        started = time.monotonic()
        answers = burst(client, hosts, versions, senders=args.senders)
        sent_s = time.monotonic() - started
        codes = Counter(code for _, code, _ in answers)
        print(f"burst: {len(answers)} deliveries in {sent_s:.1f} s, answers {dict(codes)}", file=sys.stderr)
        done = 0
        deadline = started + args.timeout
        while time.monotonic() < deadline:
            done = published(store, prefix)
            if done >= len(versions):
                break
            time.sleep(0.5)
        drain_s = time.monotonic() - started
        return {"deliveries": len(answers), "senders": args.senders, "codes": dict(codes),
                "non_2xx": sum(n for code, n in codes.items() if not 200 <= code < 300),
                "burst_s": round(sent_s, 2), "burst_per_s": round(len(answers) / sent_s, 1),
                "published": done, "drained": done >= len(versions), "drain_s": round(drain_s, 1),
                "verdicts_per_s": round(done / drain_s, 1), "worker_threads_per_host": args.worker_threads}
    finally:
        store.dispose()
        stop_hosts(hosts)
        postgres.remove()
        redis_server.stop()
        mlflow.stop()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--versions", type=int, default=2000, help="deliveries (one per version)")
    parser.add_argument("--senders", type=int, default=50, help="concurrent clients")
    parser.add_argument("--worker-threads", type=int, default=2, help="huey worker threads per host")
    parser.add_argument("--timeout", type=float, default=3600.0, help="give up draining after this long")
    args = parser.parse_args(argv)
    os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
    with tempfile.TemporaryDirectory(prefix="guard-bench-two-") as tmp:
        result = run(args, Path(tmp))
    result["machine"] = machine_info(("mlflow", "huey", "gunicorn", "SQLAlchemy", "psycopg"))
    md = "\n".join([
        "| deliveries | senders | non-2xx | burst | drained | time to drain | verdicts/s |",
        "| ---: | ---: | ---: | ---: | --- | ---: | ---: |",
        f"| {result['deliveries']} | {result['senders']} | {result['non_2xx']} | {result['burst_s']} s "
        f"({result['burst_per_s']}/s) | {result['published']}/{result['deliveries']} | "
        f"{result['drain_s']} s | {result['verdicts_per_s']} |"])
    print(md)
    OUT_DIR.mkdir(parents=True, exist_ok=True)
    stamp = _dt.datetime.now(_dt.timezone.utc).strftime("%Y%m%dT%H%M%SZ")
    (OUT_DIR / f"two_hosts-{stamp}.json").write_text(json.dumps(result, indent=2))
    (OUT_DIR / f"two_hosts-{stamp}.md").write_text(md + "\n")
    return 0 if result["non_2xx"] == 0 and result["drained"] else 1


if __name__ == "__main__":
    sys.exit(main())
