"""GUARD_STORE: which URLs are accepted, how they are shown, what the default is."""

from __future__ import annotations

from pathlib import Path

import pytest

from listener.config import Settings
from listener.config_parsing import ConfigError
from listener.store import Store, normalise_url, redacted


def test_plain_postgresql_urls_use_the_psycopg_driver():
    assert normalise_url("postgresql://u@h:5432/db") == "postgresql+psycopg://u@h:5432/db"
    assert normalise_url("postgres://u@h/db") == "postgresql+psycopg://u@h/db"
    assert normalise_url("postgresql+psycopg://u@h/db") == "postgresql+psycopg://u@h/db"
    assert normalise_url("sqlite:////var/guard/results.db") == "sqlite:////var/guard/results.db"


@pytest.mark.parametrize("url", ["mysql://u@h/db", "sqlite://", "results.db", "redis://h:6379/0"])
def test_other_urls_are_refused_by_name(url: str):
    with pytest.raises(ConfigError, match="GUARD_STORE"):
        Settings.from_env({"GUARD_STORE": url})


def test_passwords_never_show():
    url = "postgresql://guard:s3cr3t-pw@db.internal:5432/guard"
    assert "s3cr3t-pw" not in redacted(url) and "db.internal:5432/guard" in redacted(url)
    settings = Settings.from_env({"GUARD_STORE": url})
    assert settings.store_url == "postgresql+psycopg://guard:s3cr3t-pw@db.internal:5432/guard"
    assert "s3cr3t-pw" not in repr(settings)
    assert "s3cr3t-pw" not in repr(Store(url))


def test_default_store_is_the_results_file_under_the_data_dir(tmp_path: Path):
    settings = Settings.from_env({"GUARD_DATA_DIR": str(tmp_path / "guard")})
    assert settings.store_url == f"sqlite:///{tmp_path / 'guard' / 'results.db'}"
    store = Store(settings.store_url)
    assert store.ready() is None and not store.shared
    assert (tmp_path / "guard" / "results.db").exists()
    store.dispose()
