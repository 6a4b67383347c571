"""The SQL seal store (``core/seal/sql_store.py``) on a SQLite file and on a real PostgreSQL server."""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from core.errors import SealExistsError, TransientError
from core.seal.attestation import SealIdentity
from core.seal.digest import make_seal
from core.seal.signed import MISMATCH, TAG_SEAL_BUNDLE, VERIFIED, create_signed_seal, verify_signed_seal
from core.seal.sql_store import SqlSealStore
from core.seal.store import StoredSeal, open_seal_store
from tests.core.signing_support import make_key, write_model
from tests.support.postgres import PostgresServer, find_postgres_bin
from tests.support.procs import free_port

IDENTITY = SealIdentity("http://mlflow.example.com", "churn/κ model", "3")
NESTED = "data/deep/nested/weights.bin"
_numbers = itertools.count(1)
needs_postgres = pytest.mark.skipif(find_postgres_bin() is None, reason="PostgreSQL is not installed")


@pytest.fixture(scope="module")
def postgres() -> Iterator[PostgresServer]:
    server = PostgresServer().start()
    yield server
    server.remove()


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=needs_postgres)])
def seal_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'store' / 'results.db'}"
    return request.getfixturevalue("postgres").new_database(f"seals_{next(_numbers)}")


def test_a_seal_is_written_once_and_read_back_by_another_process_s_store(seal_url):
    writer = open_seal_store(seal_url)
    assert isinstance(writer, SqlSealStore)
    assert writer.read(IDENTITY) is None
    seal = StoredSeal(b"bundle \x00\xff" * 1000, b'{"attestation": 1}')
    assert writer.write(IDENTITY, seal) == "guard-store:churn%2F%CE%BA%20model/3"
    reader = open_seal_store(seal_url)  # another host opening the same database
    assert reader.read(IDENTITY) == seal
    assert reader.read(SealIdentity(IDENTITY.registry, IDENTITY.model, "4")) is None
    assert reader.read(SealIdentity("http://other-registry", IDENTITY.model, "3")) is None
    with pytest.raises(SealExistsError, match="never replaced"):
        reader.write(IDENTITY, StoredSeal(b"other", b"other"))
    assert writer.read(IDENTITY) == seal


def test_two_hosts_sealing_at_once_leave_exactly_one_seal(seal_url):
    stores = [open_seal_store(seal_url) for _ in range(8)]

    def write(i: int) -> str:
        try:
            stores[i].write(IDENTITY, StoredSeal(f"bundle {i}".encode(), f"att {i}".encode()))
            return "won"
        except SealExistsError:
            return "exists"

    with ThreadPoolExecutor(max_workers=8) as pool:
        outcomes = list(pool.map(write, range(8)))
    assert sorted(outcomes) == ["exists"] * 7 + ["won"]
    winner = outcomes.index("won")
    assert stores[0].read(IDENTITY) == StoredSeal(f"bundle {winner}".encode(), f"att {winner}".encode())


def test_signed_seal_through_the_sql_store_passes_then_names_the_changed_nested_file(seal_url, tmp_path):
    pair = make_key(tmp_path / "keys")
    model = write_model(tmp_path / "model")
    store = open_seal_store(seal_url)
    record = create_signed_seal(store, IDENTITY, make_seal(model), pair.key, run_id="r1", source="models:/m")
    tags = record.tags()
    # The version's tag names the seal, not the database: no host, no path, no credentials.
    assert tags[TAG_SEAL_BUNDLE] == "guard-store:churn%2F%CE%BA%20model/3/model.sig"
    other_host = open_seal_store(seal_url)
    out = verify_signed_seal(other_host, IDENTITY, make_seal(model), pair.trusted, tags=tags)
    assert out.kind == VERIFIED
    (model / NESTED).write_bytes(b"tampered")
    out = verify_signed_seal(other_host, IDENTITY, make_seal(model), pair.trusted, tags={})
    assert out.kind == MISMATCH and NESTED in out.reason


def test_reading_an_absent_sqlite_store_creates_nothing(tmp_path):
    store = open_seal_store(f"sqlite:///{tmp_path / 'none' / 'results.db'}")
    assert store.read(IDENTITY) is None
    assert not (tmp_path / "none").exists()


@needs_postgres
def test_unreachable_database_is_transient_and_never_shows_the_password():
    store = open_seal_store(f"postgresql://guard:s3cret-pw@127.0.0.1:{free_port()}/guard")
    assert "s3cret-pw" not in store.uri
    for act in (lambda: store.read(IDENTITY), lambda: store.write(IDENTITY, StoredSeal(b"b", b"a"))):
        with pytest.raises(TransientError, match="unreachable") as failed:
            act()
        assert "s3cret-pw" not in str(failed.value)
