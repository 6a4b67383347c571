"""The store's database: URL handling and one SQLAlchemy engine per process.

``GUARD_STORE`` is ``sqlite:///PATH`` (embedded, one host) or ``postgresql://…`` (shared by hosts). Users
write plain ``postgresql://``; the psycopg 3 driver is always the one used.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from sqlalchemy import Engine, create_engine, event
from sqlalchemy.engine import make_url
from sqlalchemy.pool import NullPool

from core.sql_url import driver_url, shown_url

SQLITE_BUSY_TIMEOUT_MS = 30_000
PG_CONNECT_TIMEOUT_S = 5


class StoreConfigError(ValueError):
    """``GUARD_STORE`` is not a URL the store can use (the message never shows a password)."""


def default_store_url(data_dir: str | os.PathLike[str]) -> str:
    """The embedded store under ``data_dir`` (the file results have always been kept in)."""
    return f"sqlite:///{Path(data_dir) / 'results.db'}"


def normalise_url(url: str) -> str:
    """``url`` with the driver the store uses: ``postgresql[+x]://`` becomes ``postgresql+psycopg://``."""
    if url.startswith("sqlite:///"):
        return url
    if url.startswith(("postgresql://", "postgres://", "postgresql+psycopg://", "postgresql+psycopg2://")):
        return driver_url(url)
    raise StoreConfigError("GUARD_STORE must be sqlite:///PATH or postgresql://USER@HOST:PORT/DB")


def redacted(url: str) -> str:
    """``url`` as it may appear in logs and answers: any password masked."""
    return shown_url(url, "store URL")


def is_sqlite(engine: Engine) -> bool:
    """True for the embedded (single-host) store."""
    return engine.dialect.name == "sqlite"


def make_engine(url: str) -> Engine:
    """An engine for ``url``: SQLite in WAL mode with a busy timeout, PostgreSQL with pre-ping."""
    url = normalise_url(url)
    if url.startswith("sqlite:///"):
        return _sqlite_engine(url)
    return create_engine(url, pool_pre_ping=True, pool_size=5, max_overflow=5, pool_recycle=1800,
                         connect_args={"connect_timeout": PG_CONNECT_TIMEOUT_S,
                                       "application_name": "mlflow-version-guard"})


def _sqlite_engine(url: str) -> Engine:
    path = make_url(url).database
    if path:
        Path(path).parent.mkdir(parents=True, exist_ok=True)
    # One connection per operation, as cheap as a file open: nothing pooled to leak across a fork, and
    # no descriptors held by the many short-lived stores of a process.
    engine = create_engine(url, poolclass=NullPool, connect_args={"timeout": SQLITE_BUSY_TIMEOUT_MS / 1000})

    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection: Any, _record: Any) -> None:
        # SQLAlchemy, not the sqlite3 module, emits BEGIN (see _on_begin): sqlite3's own handling skips it
        # before SELECTs, which breaks the read-then-write of a claim.
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        # WAL lets the status page read while a worker writes; the busy timeout makes writers queue up.
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute(f"PRAGMA busy_timeout={SQLITE_BUSY_TIMEOUT_MS}")
        cursor.execute("PRAGMA synchronous=NORMAL")
        cursor.close()

    @event.listens_for(engine, "begin")
    def _on_begin(conn: Any) -> None:
        # A writer takes the write lock up front: upgrading a read transaction later fails at once with
        # SQLITE_BUSY instead of waiting for the busy timeout.
        immediate = conn.get_execution_options().get("guard_write", False)
        conn.exec_driver_sql("BEGIN IMMEDIATE" if immediate else "BEGIN")

    return engine


def dialect_insert(conn: Any) -> Any:
    """The ``insert`` construct of the connection's dialect (it has ``on_conflict_do_update``)."""
    if conn.engine.dialect.name == "sqlite":
        from sqlalchemy.dialects.sqlite import insert
    else:
        from sqlalchemy.dialects.postgresql import insert
    return insert
