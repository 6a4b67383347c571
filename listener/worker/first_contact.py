"""First contact: a new deployment watches a registry from the moment the guard first started against it.

Without a high-water mark the first catch-up sweep would hand out a job for every version the registry
ever held: download and hash all of them, seal each as it is now, write tags onto all of them, and post
a comment on every version of a Databricks workspace. Nobody asked for that. Instead the first sweep
starts at the moment recorded here (per registry, in the store), and the aliases it finds on versions
created before that moment are recorded as the starting point of their history, not validated. Older
versions are checked only by a deliberate backfill (``guard-sweep --backfill``).

``GUARD_SWEEP_SINCE`` moves the starting point on purpose: an ISO date, or ``all`` (every version and
every alias, what releases before this one did).
"""

from __future__ import annotations

import logging
import time

from listener.config import Settings
from listener.store import Store, get_store

log = logging.getLogger(__name__)


# Versions committed slightly out of order (or under a skewed clock) still fall inside the next window.
OVERLAP_MS = 300_000


def versions_mark(registry: str) -> str:
    """The sweep's high-water mark: the newest version creation time (epoch ms) a catch-up has covered."""
    return f"sweep:versions:{registry}"


def aliases_mark(registry: str) -> str:
    """The mark set once the sweep has recorded the aliases it found at first contact."""
    return f"sweep:aliases:{registry}"


def note_first_contact(settings: Settings, now: float | None = None) -> float:
    """Record (once) that the guard started against the configured registry; returns that moment."""
    store = get_store(settings.store_url)
    start = _first_contact(store, settings.registry_kind, now)
    log.debug("first contact with the %s registry: %s", settings.registry_kind, start)
    return start


def starting_point(store: Store, settings: Settings, registry: str, now: float | None = None) -> float:
    """Epoch seconds where the first catch-up starts: ``GUARD_SWEEP_SINCE``, else the first contact."""
    if settings.sweep_since is not None:
        return settings.sweep_since
    return _first_contact(store, registry, now)


def _first_contact(store: Store, registry: str, now: float | None) -> float:
    # A deployment older than this record has a sweep mark: it was watching from (at least) that window.
    mark = store.get_mark(versions_mark(registry))
    start = time.time() if now is None else now
    if mark is not None:
        start = min(start, (mark - OVERLAP_MS) / 1000)
    return store.first_contact(registry, start)


def validates_alias_at_first_sight(settings: Settings, model: str, version: str,
                                   created_since_start: set[tuple[str, str]]) -> bool:
    """Whether an alias found by the first sweep is validated, or only recorded as the starting point.

    A registry does not say when an alias was set, but an alias on a version created after the starting
    point was set after it too: that one is validated as if its event had arrived. ``all`` validates
    every alias.
    """
    return settings.sweep_since == 0.0 or (model, str(version)) in created_since_start
