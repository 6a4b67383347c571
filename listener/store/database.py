"""The store's connection to its database: transactions, the database clock, retries, readiness.

Every write runs in one transaction that is retried with exponential backoff while the database is
unreachable or busy (PostgreSQL restarting, a failover, SQLite's write lock), for up to
``write_retry_s`` seconds: a worker that has taken a job or decided a verdict does not lose it to a
short outage. Reads retry for a shorter time so a status page answers 503 rather than hanging.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import TypeVar

from sqlalchemy import Connection, Engine, text
from sqlalchemy.exc import DBAPIError, InterfaceError, OperationalError

from listener.store.engine import is_sqlite, make_engine, redacted
from listener.store.schema import SCHEMA_VERSION, current_version, migrate

log = logging.getLogger(__name__)

T = TypeVar("T")

WRITE_RETRY_S = 120.0
READ_RETRY_S = 3.0
_FIRST_DELAY_S = 0.1
_MAX_DELAY_S = 5.0
_SQLITE_TRANSIENT = ("database is locked", "database is busy", "unable to open database")


def database_unavailable(exc: BaseException) -> bool:
    """True for a failure that may pass by itself: a lost or refused connection, a busy database."""
    if isinstance(exc, DBAPIError) and exc.connection_invalidated:
        return True
    if isinstance(exc, OperationalError):
        # sqlite3 also raises OperationalError for mistakes in SQL; only lock contention is transient.
        orig = getattr(exc, "orig", None)
        if type(orig).__module__.startswith("sqlite3"):
            return any(marker in str(orig).lower() for marker in _SQLITE_TRANSIENT)
        return True
    return isinstance(exc, InterfaceError)


def short_reason(exc: BaseException) -> str:
    """The first line of the driver's message (no SQL, no parameters, no URL)."""
    orig = getattr(exc, "orig", None) or exc
    lines = str(orig).strip().splitlines()
    return f"{type(orig).__name__}: {lines[0] if lines else ''}".strip().rstrip(":")


class Database:
    """One engine per process (re-created after a fork) and the transaction helpers the store uses."""

    def __init__(self, url: str, *, write_retry_s: float = WRITE_RETRY_S,
                 read_retry_s: float = READ_RETRY_S) -> None:
        self.url = url
        self.write_retry_s = write_retry_s
        self.read_retry_s = read_retry_s
        self._engine: Engine = make_engine(url)
        self._pid = os.getpid()
        # The schema is brought up to date on first use, not here: opening a store never blocks on a
        # database that is down (a probe must be able to say so at once).
        self._schema_ready = False
        self._schema_lock = threading.Lock()

    def __repr__(self) -> str:
        return f"{type(self).__name__}({redacted(self.url)!r})"

    @property
    def engine(self) -> Engine:
        """The engine, safe to use after a fork (a child never reuses its parent's connections)."""
        if os.getpid() != self._pid:
            self._engine.dispose(close=False)
            self._pid = os.getpid()
        return self._engine

    @property
    def shared(self) -> bool:
        """True when hosts can share this store (PostgreSQL), False for the embedded SQLite file."""
        return not is_sqlite(self._engine)

    def dispose(self) -> None:
        """Close every pooled connection (tests, shutdown)."""
        self._engine.dispose()

    def migrate(self) -> int:
        """Bring the schema up to date now (retried like a write); returns its version."""
        return self._retrying(self._ensure_schema, self.write_retry_s, "migrate")

    def _ensure_schema(self) -> int:
        with self._schema_lock:
            if not self._schema_ready:
                migrate(self.engine)
                self._schema_ready = True
        return SCHEMA_VERSION

    # ----------------------------------------------------------------------------- transactions

    @contextmanager
    def _transaction(self, write: bool) -> Iterator[Connection]:
        self._ensure_schema()
        with self.engine.connect() as conn:
            if write:
                conn = conn.execution_options(guard_write=True)
            with conn.begin():
                yield conn

    def _write(self, work: Callable[[Connection], T], what: str = "write") -> T:
        """Run ``work`` in one write transaction, retried as a whole on transient failures."""
        def attempt() -> T:
            with self._transaction(write=True) as conn:
                return work(conn)
        return self._retrying(attempt, self.write_retry_s, what)

    def _read(self, work: Callable[[Connection], T], what: str = "read") -> T:
        """Run ``work`` in one read transaction, retried briefly."""
        def attempt() -> T:
            with self._transaction(write=False) as conn:
                return work(conn)
        return self._retrying(attempt, self.read_retry_s, what)

    def _retrying(self, attempt: Callable[[], T], budget_s: float, what: str) -> T:
        deadline = time.monotonic() + budget_s
        delay = _FIRST_DELAY_S
        tries = 0
        while True:
            tries += 1
            try:
                return attempt()
            except Exception as exc:
                if not database_unavailable(exc) or time.monotonic() + delay > deadline:
                    raise
                if tries == 1 or tries % 10 == 0:
                    log.warning("store %s failed (%s); retrying for up to %.0f s", what, short_reason(exc),
                                max(0.0, deadline - time.monotonic()))
                time.sleep(delay)
                delay = min(delay * 2, _MAX_DELAY_S)

    def now(self, conn: Connection) -> float:
        """Epoch seconds by the database's clock when hosts share it (no clock skew between hosts)."""
        if is_sqlite(self._engine):
            return time.time()
        return float(conn.execute(text("SELECT EXTRACT(EPOCH FROM clock_timestamp())")).scalar_one())

    # ----------------------------------------------------------------------------- readiness

    def ready(self) -> str | None:
        """None when the store can be read and written and its schema is current, else the reason."""
        try:
            with self._transaction(write=True) as conn:
                conn.execute(text("SELECT 1"))
            version = current_version(self.engine)
        except Exception as exc:  # noqa: BLE001 - any failure is "not ready", told as one line
            return f"store {redacted(self.url)} unreachable: {short_reason(exc)}"
        if version < SCHEMA_VERSION:
            return f"store schema is version {version}, this release needs {SCHEMA_VERSION}"
        return None
