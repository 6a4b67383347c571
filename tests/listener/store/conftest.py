"""Every store test runs against the embedded SQLite file and a real PostgreSQL server."""

from __future__ import annotations

import itertools
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from listener.store import Store
from tests.support.postgres import PostgresServer, find_postgres_bin

needs_postgres = pytest.mark.skipif(find_postgres_bin() is None,
                                    reason="PostgreSQL server binaries are not installed")
_database_numbers = itertools.count(1)


@pytest.fixture(scope="session")
def postgres() -> Iterator[PostgresServer]:
    """One PostgreSQL server for the session; each test takes a database of its own."""
    if find_postgres_bin() is None:
        pytest.skip("PostgreSQL server binaries are not installed")
    server = PostgresServer().start()
    yield server
    server.remove()


@pytest.fixture
def restartable_postgres() -> Iterator[PostgresServer]:
    """A PostgreSQL server of the test's own, which it may stop and start again."""
    if find_postgres_bin() is None:
        pytest.skip("PostgreSQL server binaries are not installed")
    server = PostgresServer().start()
    yield server
    server.remove()


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=needs_postgres)])
def store_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """A fresh, empty store: a SQLite file, or a new database on the session's PostgreSQL server."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'results.db'}"
    server: PostgresServer = request.getfixturevalue("postgres")
    return server.new_database(f"store_{next(_database_numbers)}")


@pytest.fixture
def open_store(store_url: str) -> Iterator[Callable[..., Store]]:
    """Open stores on the test's database, as separate hosts do (one engine each); closed afterwards."""
    opened: list[Store] = []

    def make(**kwargs: object) -> Store:
        store = Store(store_url, **kwargs)  # type: ignore[arg-type]
        opened.append(store)
        return store

    yield make
    for store in opened:
        store.dispose()


@pytest.fixture
def store(open_store: Callable[..., Store]) -> Store:
    """One store on a fresh database."""
    return open_store()
