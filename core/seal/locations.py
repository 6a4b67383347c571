"""What kind of place a seal store location names (kept free of heavy imports: read at start-up)."""

from __future__ import annotations

import urllib.parse
from pathlib import Path

#: URI schemes of the SQL seal store (:mod:`core.seal.sql_store`).
SQL_SCHEMES = ("sqlite", "postgresql", "postgres", "postgresql+psycopg", "postgresql+psycopg2")


def is_local_folder(location: str | Path) -> bool:
    """True when ``location`` names a folder of this host (a path or ``file://``), not a shared service."""
    if isinstance(location, Path):
        return True
    scheme = urllib.parse.urlsplit(location).scheme
    return not scheme or len(scheme) == 1 or scheme == "file"  # a one-letter scheme is a Windows drive


def is_sql_uri(location: str | Path) -> bool:
    """True for a seal store URI naming a SQL database (``sqlite:///…``, ``postgresql://…``)."""
    return not isinstance(location, Path) and urllib.parse.urlsplit(location).scheme.lower() in SQL_SCHEMES
