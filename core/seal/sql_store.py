"""Signed seals kept in a SQL database: the guard's store, so every host that shares it shares the seals.

Selected by a ``sqlite:///PATH`` or ``postgresql://USER@HOST:PORT/DB`` seal store URI; when
``GUARD_SEAL_STORE`` is unset the listener passes its own ``GUARD_STORE`` here. One table,
``signed_seals``, one row per version's identity (registry, model, version) holding the two files
of the seal as bytes. The primary key makes a seal write-once across hosts: a second insert for the
same identity fails, and is reported as :class:`~core.errors.SealExistsError`.

The table is created here (``CREATE TABLE IF NOT EXISTS``), not by the listener's schema
migrations: this module belongs to ``core``, which works without the listener (the CLI reads seals
through it).
"""

from __future__ import annotations

import os
import threading
import time

from sqlalchemy import (
    Column,
    Engine,
    Float,
    LargeBinary,
    MetaData,
    PrimaryKeyConstraint,
    Table,
    Text,
    create_engine,
    insert,
    select,
)
from sqlalchemy.engine import make_url
from sqlalchemy.exc import DBAPIError, IntegrityError, InterfaceError, OperationalError, ProgrammingError
from sqlalchemy.pool import NullPool

from core.errors import CheckError, SealExistsError, TransientError
from core.seal.attestation import SealIdentity
from core.seal.store import BUNDLE_FILE, StoredSeal, encode_component
from core.sql_url import driver_url, shown_url

#: Prefix of the seal locations this store names: no host path, no credentials (they go onto versions).
PUBLIC_SCHEME = "guard-store:"
_SQLITE_TIMEOUT_S = 30.0
_PG_CONNECT_TIMEOUT_S = 5

_metadata = MetaData()
signed_seals = Table(
    "signed_seals", _metadata,
    Column("registry", Text, nullable=False),
    Column("model", Text, nullable=False),
    Column("version", Text, nullable=False),
    Column("bundle", LargeBinary, nullable=False),
    Column("attestation", LargeBinary, nullable=False),
    Column("stored_at", Float, nullable=False),
    PrimaryKeyConstraint("registry", "model", "version", name="signed_seals_pk"),
)

_engines: dict[str, tuple[int, Engine]] = {}
# Databases known to have the table, so the worker's store opened per job does not ask each time.
_tables_seen: set[str] = set()
_engines_lock = threading.Lock()


def _engine(uri: str) -> Engine:
    """One engine per URL and process (a child after a fork never reuses its parent's connections)."""
    url = driver_url(uri)
    with _engines_lock:
        held = _engines.get(url)
        if held is not None and held[0] == os.getpid():
            return held[1]
        if held is not None:
            held[1].dispose(close=False)
        if url.startswith("sqlite"):
            engine = create_engine(url, poolclass=NullPool, connect_args={"timeout": _SQLITE_TIMEOUT_S})
        else:
            engine = create_engine(url, pool_pre_ping=True, pool_size=2, max_overflow=3, pool_recycle=1800,
                                   connect_args={"connect_timeout": _PG_CONNECT_TIMEOUT_S,
                                                 "application_name": "mlflow-version-guard-seals"})
        _engines[url] = (os.getpid(), engine)
        return engine


def _db_error(exc: BaseException, store: str, doing: str) -> CheckError:
    orig = getattr(exc, "orig", None) or exc
    text = (str(orig).strip().splitlines() or [type(orig).__name__])[0][:300]
    transient = isinstance(exc, (OperationalError, InterfaceError)) or (
        isinstance(exc, DBAPIError) and exc.connection_invalidated)
    if transient:
        return TransientError(f"seal store {store} is unreachable ({doing}): {text}")
    return CheckError(f"seal store {store}: {doing} failed: {text}")


class SqlSealStore:
    """Seals in the ``signed_seals`` table of a SQLite or PostgreSQL database (see the module docstring)."""

    def __init__(self, uri: str) -> None:
        self.uri = shown_url(uri, "seal store URL")
        self._url = uri

    def _sqlite_file(self) -> str | None:
        url = make_url(driver_url(self._url))
        return url.database if url.get_backend_name() == "sqlite" else None

    def _has_table(self, engine: Engine) -> bool:
        path = self._sqlite_file()
        if path and not os.path.exists(path):
            return False  # connecting would create the file: a read creates nothing
        url = driver_url(self._url)
        if url not in _tables_seen:
            with engine.connect() as conn:
                if not engine.dialect.has_table(conn, signed_seals.name):
                    return False
            _tables_seen.add(url)
        return True

    def _ensure_table(self, engine: Engine) -> None:
        if self._has_table(engine):
            return
        path = self._sqlite_file()
        if path:
            os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
        try:
            _metadata.create_all(engine, checkfirst=True)
        except (IntegrityError, ProgrammingError, OperationalError):
            # Two processes creating the table at the same moment (PostgreSQL: a duplicate type; SQLite:
            # "table already exists" between the check and the CREATE): one wins, the other sees it.
            with engine.connect() as conn:
                if not engine.dialect.has_table(conn, signed_seals.name):
                    raise
        _tables_seen.add(driver_url(self._url))

    def location(self, identity: SealIdentity) -> str:  # noqa: D102 - see SealStore
        return f"{PUBLIC_SCHEME}{encode_component(identity.model)}/{encode_component(identity.version)}"

    def bundle_location(self, identity: SealIdentity) -> str:  # noqa: D102 - see SealStore
        return f"{self.location(identity)}/{BUNDLE_FILE}"

    def _key(self, identity: SealIdentity) -> list:
        return [signed_seals.c.registry == identity.registry, signed_seals.c.model == identity.model,
                signed_seals.c.version == str(identity.version)]

    def read(self, identity: SealIdentity) -> StoredSeal | None:  # noqa: D102 - see SealStore
        try:
            engine = _engine(self._url)
            if not self._has_table(engine):
                return None  # no seal was ever written here; reading creates nothing
            with engine.connect() as conn:
                row = conn.execute(select(signed_seals.c.bundle, signed_seals.c.attestation)
                                   .where(*self._key(identity))).first()
        except Exception as exc:  # noqa: BLE001 - classified below
            raise _db_error(exc, self.uri, "reading a seal") from exc
        return None if row is None else StoredSeal(bytes(row.bundle), bytes(row.attestation))

    def write(self, identity: SealIdentity, seal: StoredSeal) -> str:  # noqa: D102 - see SealStore
        try:
            engine = _engine(self._url)
            self._ensure_table(engine)
            with engine.begin() as conn:
                conn.execute(insert(signed_seals).values(
                    registry=identity.registry, model=identity.model, version=str(identity.version),
                    bundle=seal.bundle, attestation=seal.attestation, stored_at=time.time()))
        except IntegrityError:
            raise SealExistsError(f"{identity.describe()} already has a signed seal at "
                                  f"{self.location(identity)}: seals are written once and never replaced"
                                  ) from None
        except Exception as exc:  # noqa: BLE001 - classified below
            raise _db_error(exc, self.uri, "writing a seal") from exc
        return self.location(identity)
