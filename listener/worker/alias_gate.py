"""Protected aliases: alias history from events, and moving a protected alias off a bad version.

``GUARD_PROTECTED_ALIASES=champion,production``: when a version whose verdict is FAILED or ERROR holds
one of these aliases (set by a person, found by the sweep, or held when a re-verification failed), the
alias is moved back to the newest earlier holder whose own verdict is not FAILED or ERROR, or removed
when there is none. The alias is reverted after the fact: between the alias being set and the revert, a
client loading ``models:/name@champion`` gets the bad version; a client loading by version number is
never gated at all.

The guard's own alias changes fire ``model_version_alias.created`` like anyone's. Each one is recorded in
the alias history with source ``guard`` BEFORE it is made, so the event it causes is recognised
(:func:`is_own_change`) and neither validated nor acted upon: no loop.
"""

from __future__ import annotations

import dataclasses
import logging
from typing import Any

from core.status import ERROR, FAILED
from listener import metrics
from listener.config import Settings
from listener.protocol.request import ValidationRequest
from listener.store import SOURCE_GUARD, SOURCE_WEBHOOK, Store
from listener.verdict import SUMMARY_LIMIT, Verdict, one_line

log = logging.getLogger(__name__)

BAD = (FAILED, ERROR)
ALIAS_EVENT = "model_version_alias.created"
REVERIFY_TRIGGER = "reverify"


def observe_event(request: ValidationRequest, store: Store) -> bool:
    """Record an alias event in the alias history; True when it is the echo of the guard's own change.

    An echo is recorded too (as a webhook observation), so a person setting the same alias on the same
    version later is not mistaken for another echo.
    """
    if request.trigger != ALIAS_EVENT or not request.alias:
        return False
    newest = store.alias_holder(request.registry, request.model, request.alias)
    echo = newest is not None and newest.source == SOURCE_GUARD and newest.version == str(request.version)
    store.record_alias(request.registry, request.model, request.alias, str(request.version), SOURCE_WEBHOOK,
                       if_changed=not echo)
    if echo:
        log.info("alias event %s: @%s on %s version %s is the guard's own change; ignored",
                 request.delivery_key, request.alias, request.model, request.version)
    return echo


def _replacement(store: Store, verdict: Verdict, alias: str) -> str | None:
    """The newest earlier holder of ``alias`` that is still acceptable, or None (remove the alias)."""
    seen: set[str] = {str(verdict.version)}
    for event in store.alias_history(verdict.registry, verdict.model, alias):
        if event.version is None or event.version in seen:
            continue
        seen.add(event.version)
        latest = store.latest_for_version(verdict.registry, verdict.model, event.version)
        if latest is None or latest["status"] not in BAD:
            return event.version
    return None


def _move(client: Any, store: Store, verdict: Verdict, alias: str, target: str | None) -> str:
    """Record the guard's change first (so its echo is recognised), then make it; returns what was done."""
    store.record_alias(verdict.registry, verdict.model, alias, target, SOURCE_GUARD)
    if target is not None:
        try:
            client.set_registered_model_alias(verdict.model, alias, target)
            return f"@{alias} moved back from version {verdict.version} to version {target}"
        except Exception as exc:  # noqa: BLE001 - the earlier holder may be gone: remove the alias instead
            log.warning("cannot move @%s of %s back to version %s (%s); removing it", alias, verdict.model,
                        target, exc)
            store.record_alias(verdict.registry, verdict.model, alias, None, SOURCE_GUARD)
    client.delete_registered_model_alias(verdict.model, alias)
    return f"@{alias} removed from version {verdict.version} (no earlier acceptable holder)"


def enforce(verdict: Verdict, settings: Settings, adapter: Any, store: Store) -> Verdict:
    """Apply alias protection for a finished verdict; returns the verdict, annotated when an alias moved.

    Reads the version's aliases from the registry now (not from the event), so a retried job, a sweep and
    a re-verification all act on what the registry serves. Counts a re-verification that found tampering.
    Nothing is stored here: the job stores the verdict this returns, once, before publishing it.
    A registry that cannot be reached leaves the alias alone; the sweep's re-publish tries again.
    """
    if verdict.status == FAILED and verdict.trigger == REVERIFY_TRIGGER:
        metrics.record_tamper(verdict.registry)
    protected = set(settings.protected_aliases)
    if verdict.status not in BAD or not protected or adapter is None:
        return verdict
    try:
        held = list(getattr(adapter.client.get_model_version(verdict.model, str(verdict.version)),
                            "aliases", None) or [])
    except Exception as exc:  # noqa: BLE001 - the registry is down: nothing to move now
        log.warning("cannot read the aliases of %s version %s: %s", verdict.model, verdict.version, exc)
        return verdict
    done: list[str] = []
    for alias in sorted(a for a in held if a in protected):
        try:
            done.append(_move(adapter.client, store, verdict, alias,
                              _replacement(store, verdict, alias)))
            metrics.record_alias_reverted(verdict.registry)
        except Exception as exc:  # noqa: BLE001 - reported; the next sweep or retry tries again
            log.error("cannot move protected alias @%s off %s version %s: %s", alias, verdict.model,
                      verdict.version, exc)
    if not done:
        return verdict
    note = "; ".join(done)
    log.warning("protected alias: %s (%s version %s is %s)", note, verdict.model, verdict.version,
                verdict.status)
    previous = f"{verdict.alias_reverted}; " if verdict.alias_reverted else ""
    summary = f"{one_line(verdict.summary, SUMMARY_LIMIT - len(note) - 3)} · {note}"
    return dataclasses.replace(verdict, summary=summary, alias_reverted=previous + note)
