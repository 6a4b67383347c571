"""SQL database URLs as the guard uses them: the driver it connects with, and the form fit to show.

Shared by the seal store's SQL backend (:mod:`core.seal.sql_store`) and the listener's store, which open
the same databases.
"""

from __future__ import annotations

from sqlalchemy.engine import make_url


def driver_url(uri: str) -> str:
    """``uri`` with the driver the guard uses: ``postgres[ql][+x]://`` becomes ``postgresql+psycopg://``."""
    scheme, sep, rest = uri.partition("://")
    if sep and scheme.lower().startswith("postgres"):
        return "postgresql+psycopg://" + rest
    return uri


def shown_url(uri: str, what: str = "URL") -> str:
    """``uri`` as it may appear in logs, answers and errors: any password masked."""
    try:
        return make_url(driver_url(uri)).render_as_string(hide_password=True)
    except Exception:  # noqa: BLE001 - never echo something unparseable: it may hold a secret
        return f"<unparseable {what}>"
