"""The guard's store: results (the read model), the job journal, version locks, alias history, sweep marks,
the guard's own approvals and publish progress.

One interface, :class:`Store`, over one database chosen by ``GUARD_STORE``:

- ``sqlite:///PATH`` (the default, ``<GUARD_DATA_DIR>/results.db``): embedded, for the processes of one
  host (WAL mode, busy timeout);
- ``postgresql://USER:PASSWORD@HOST:PORT/DB``: shared by any number of hosts. Every status page shows
  every host's validations, a job journaled by a host that died is recovered by another once its
  heartbeat expires, and one version is never checked on two hosts at once.

Writes are retried with backoff while the database is unreachable; :meth:`Store.ready` tells why it
is not usable. The schema is plain versioned DDL (:mod:`listener.store.schema`), applied on open.
"""

from __future__ import annotations

import threading

from listener.store.alias_history import (
    SOURCE_GUARD,
    SOURCE_SWEEP,
    SOURCE_WEBHOOK,
    Aliases,
    AliasEvent,
)
from listener.store.database import database_unavailable, short_reason
from listener.store.engine import StoreConfigError, default_store_url, normalise_url, redacted
from listener.store.first_contact import FirstContact, first_contact_mark
from listener.store.journal import (
    PUBLISH_DONE,
    PUBLISH_FAILED,
    PUBLISH_PENDING,
    QUEUED,
    RETRYING,
    RUNNING,
    SKIPPED,
    Claim,
    FinishedCheck,
    Journal,
)
from listener.store.locks import LOCK_TTL_S, Locks, StoreVersionLock, version_lock_key
from listener.store.notifications import NOTIFY_FAILED, NOTIFY_PENDING, NOTIFY_SENT, Notifications
from listener.store.owners import STALE_AFTER_S, owner_alive, owner_id, pid_alive
from listener.store.publish_state import OWN_APPROVAL_MAX_AGE_S, PublishState
from listener.store.results import Results

__all__ = [
    "LOCK_TTL_S", "NOTIFY_FAILED", "NOTIFY_PENDING", "NOTIFY_SENT", "OWN_APPROVAL_MAX_AGE_S", "PUBLISH_DONE",
    "PUBLISH_FAILED", "PUBLISH_PENDING", "QUEUED", "RETRYING", "RUNNING", "SKIPPED", "SOURCE_GUARD",
    "SOURCE_SWEEP", "SOURCE_WEBHOOK", "STALE_AFTER_S", "AliasEvent", "Claim", "FinishedCheck", "Store",
    "StoreConfigError",
    "StoreVersionLock", "close_all", "database_unavailable", "default_store_url", "first_contact_mark",
    "get_store", "normalise_url", "owner_alive", "owner_id", "pid_alive", "redacted", "short_reason",
    "version_lock_key",
]


class Store(Journal, Results, Locks, Aliases, FirstContact, Notifications, PublishState):
    """Everything the listener and the worker keep, in one database (see the module docstring).

    ``Store(url)`` opens (and migrates) the database; most callers use :func:`get_store` instead, which
    keeps one store per URL and process.
    """


_stores: dict[str, Store] = {}
_stores_lock = threading.Lock()


def get_store(url: str) -> Store:
    """The process's store for ``url`` (opened, and its schema brought up to date, on first use)."""
    key = normalise_url(url)
    with _stores_lock:
        store = _stores.get(key)
        if store is None:
            store = _stores[key] = Store(url)
        return store


def close_all() -> None:
    """Close the connections of every store this process opened (tests, shutdown)."""
    with _stores_lock:
        for store in _stores.values():
            store.dispose()
        _stores.clear()
