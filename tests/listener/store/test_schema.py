"""The versioned DDL: applied once, matching the Core tables, upgrading an existing results file."""

from __future__ import annotations

import sqlite3
import subprocess
import sys
import threading
from collections.abc import Callable
from pathlib import Path

from sqlalchemy import inspect, text

from listener.store import Store
from listener.store.schema import SCHEMA_VERSION, current_version, metadata

# The results file as earlier releases wrote it (before the schema had versions).
_UNVERSIONED_RESULTS_DB = """
CREATE TABLE validations (
    id INTEGER PRIMARY KEY AUTOINCREMENT, job_key TEXT NOT NULL UNIQUE, registry TEXT NOT NULL,
    model TEXT NOT NULL, version TEXT NOT NULL, trigger TEXT, action TEXT, request TEXT NOT NULL,
    status TEXT NOT NULL, summary TEXT, error TEXT, attempts INTEGER NOT NULL DEFAULT 0,
    created_at REAL NOT NULL, started_at REAL, finished_at REAL, duration_s REAL, report TEXT,
    verdict TEXT, ui_url TEXT, publish_status TEXT, publish_attempts INTEGER NOT NULL DEFAULT 0,
    publish_error TEXT, owner TEXT, heartbeat REAL);
CREATE INDEX validations_model ON validations (model, id);
CREATE INDEX validations_version ON validations (registry, model, version, status);
INSERT INTO validations (job_key, registry, model, version, trigger, action, request, status, summary,
    created_at, finished_at, report, publish_status)
VALUES ('old-1', 'mlflow', 'churn', '3', 'model_version.created', 'seal_and_check', '{}', 'PASSED',
    'identical', 1796000000.0, 1796000001.5, '{"status": "PASSED"}', 'PUBLISHED');
"""


def test_tables_match_their_core_definitions(store: Store):
    store.migrate()
    assert current_version(store.engine) == SCHEMA_VERSION
    inspector = inspect(store.engine)
    for table in metadata.sorted_tables:
        assert {c["name"] for c in inspector.get_columns(table.name)} == set(table.columns.keys()), table.name


def test_migrations_are_applied_once_even_by_hosts_opening_together(open_store: Callable[..., Store]):
    hosts = [open_store() for _ in range(4)]
    threads = [threading.Thread(target=host.migrate) for host in hosts]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    with hosts[0].engine.connect() as conn:
        versions = [row[0] for row in conn.execute(text("SELECT version FROM schema_version ORDER BY 1"))]
    assert versions == list(range(1, SCHEMA_VERSION + 1))
    assert all(host.ready() is None for host in hosts)


def test_an_existing_results_file_is_upgraded_in_place(tmp_path: Path):
    path = tmp_path / "results.db"
    with sqlite3.connect(path) as conn:
        conn.executescript(_UNVERSIONED_RESULTS_DB)
    store = Store(f"sqlite:///{path}")
    [row] = store.recent()
    assert (row["job_key"], row["status"], row["summary"]) == ("old-1", "PASSED", "identical")
    assert row["finished_at"] == "2026-11-30T00:53:21Z" and row["report"] == {"status": "PASSED"}
    assert current_version(store.engine) == SCHEMA_VERSION
    store.dispose()


def test_sqlite_runs_in_wal_mode(tmp_path: Path):
    store = Store(f"sqlite:///{tmp_path / 'r.db'}")
    store.migrate()
    with store.engine.connect() as conn:
        assert conn.exec_driver_sql("PRAGMA journal_mode").scalar() == "wal"
        assert conn.exec_driver_sql("PRAGMA busy_timeout").scalar() >= 1000
    store.dispose()


def test_the_store_is_shared_between_processes(store_url: str):
    code = ("import sys; from listener.store import Store, owner_id; s = Store(sys.argv[1]); "
            "[s.claim({'registry': 'mlflow', 'model': sys.argv[2], 'version': str(i), 'trigger': 't', "
            "'action': 'check', 'delivery_key': sys.argv[2] + str(i)}, owner_id()) for i in range(15)]")
    procs = [subprocess.Popen([sys.executable, "-c", code, store_url, f"p{n}-"]) for n in range(3)]
    assert [p.wait(timeout=120) for p in procs] == [0, 0, 0]
    store = Store(store_url)
    assert len(store.recent(limit=1000)) == 45
    store.dispose()
