"""The sweep (``guard-sweep``, and a periodic worker task): catch-up, re-verification, re-publish.

Webhook deliveries get lost (a listener down for a deploy, a misconfigured webhook; MLflow gives up
after a few seconds and keeps no log), and files changed after an alias was set fire no event. One
sweep, run every ``GUARD_SWEEP_INTERVAL`` seconds by the worker or by cron/CI with ``guard-sweep``:

- **catch-up**: every version created since the high-water mark (kept in the store, minus an overlap)
  that has no verdict gets the job its ``model_version.created`` webhook would have given it; every
  alias whose holder changed since the last observation gets its ``model_version_alias.created`` job.
  Versions are read newest first, a page at a time, and reading stops at the mark, so a sweep costs
  the versions since the last sweep plus one request per page of registered models. Delivery keys are
  deterministic (``sweep:<registry>:<model>:<version>:<event>``): a sweep run twice enqueues once, and a
  version validated by a delivery is not validated again. A catch-up queued while the version's webhook
  job still waited in the queue (not journaled yet) is skipped when it is claimed after that job's
  verdict, and a late webhook job after a catch-up's (:mod:`listener.worker.redundant`).
- **re-verification**: every version holding a protected alias (``GUARD_REVERIFY=all``: any alias;
  ``GUARD_REVERIFY=production-stage``: every version in the Production stage as well) is checked against
  its seal once per ``GUARD_REVERIFY_INTERVAL``. Each version's turn is offset by a hash
  of its identity, so the checks spread over the interval instead of landing together. A mismatch is
  FAILED, counted in ``guard_tamper_detected_total``, and alias protection applies.
- **re-publish**: a stored verdict whose publishing gave up (the registry was down past the retries) is
  published again, now that the registry answered this sweep's reads.
"""

from __future__ import annotations

import hashlib
import logging
import math
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

from core.registry.stages import canonical_stage
from listener import intake
from listener.config import ConfigError, Settings
from listener.protocol.events import CHECK, SEAL_AND_CHECK
from listener.protocol.request import SWEEP_KEY_PREFIX, ValidationRequest
from listener.registries import get_adapter
from listener.store import SOURCE_SWEEP, Store, get_store
from listener.worker.alias_gate import ALIAS_EVENT, REVERIFY_TRIGGER
from listener.worker.job import NOT_PUBLISHED

log = logging.getLogger(__name__)

CREATED_EVENT = "model_version.created"
PAGE_SIZE = 1000
# Versions committed slightly out of order (or under a skewed clock) still fall inside the next window.
OVERLAP_MS = 300_000
LAST_RUN_MARK = "sweep:last_run"
PRODUCTION_STAGE = "Production"

# A dispatcher takes a request dict and whether it is a new job (False: a journaled job run again).
Dispatch = Callable[[dict[str, Any], bool], None]


@dataclass
class SweepReport:
    """What one sweep did (delivery keys of the jobs it handed out)."""

    versions_scanned: int = 0
    caught_up: list[str] = field(default_factory=list)
    aliases_changed: list[str] = field(default_factory=list)
    reverified: list[str] = field(default_factory=list)
    republished: list[str] = field(default_factory=list)
    duration_s: float = 0.0


def queue_dispatch(settings: Settings) -> Dispatch:
    """Hand jobs to the worker's queue: new ones through the intake (deduplicated by key), old ones again."""
    def dispatch(request: dict[str, Any], fresh: bool) -> None:
        if fresh:
            intake.submit(settings, ValidationRequest.from_dict(request))
        else:
            intake.requeue(settings, request)
    return dispatch


def _request(registry: str, model: str, version: str, trigger: str, action: str, key: str,
             alias: str | None = None) -> dict[str, Any]:
    return ValidationRequest(registry=registry, model=model, version=str(version), trigger=trigger,
                             action=action, to_stage=None, alias=alias, gate=False, delivery_key=key,
                             received_at=time.time()).to_dict()


def sweep_key(registry: str, model: str, version: str, event: str) -> str:
    """The deterministic delivery key of a job the sweep hands out."""
    return f"{SWEEP_KEY_PREFIX}{registry}:{model}:{version}:{event}"


def _pages(search: Callable[..., Any], **kwargs: Any) -> Iterator[Any]:
    token = None
    while True:
        page = search(max_results=PAGE_SIZE, page_token=token, **kwargs)
        yield from page
        token = getattr(page, "token", None)
        if not token:
            return


def catch_up_versions(client: Any, store: Store, registry: str, dispatch: Dispatch,
                      report: SweepReport) -> None:
    """Jobs for versions created since the mark that have no verdict; then move the mark forward."""
    mark_name = f"sweep:versions:{registry}"
    mark = store.get_mark(mark_name)
    since = None if mark is None else mark - OVERLAP_MS
    newest = mark
    for mv in _pages(client.search_model_versions, order_by=["creation_timestamp DESC"]):
        created = float(getattr(mv, "creation_timestamp", 0) or 0)
        if since is not None and created < since:
            break
        report.versions_scanned += 1
        newest = created if newest is None else max(newest, created)
        version = str(mv.version)
        if store.latest_for_version(registry, mv.name, version, with_verdict=False) is not None:
            continue  # journaled: validated (or being validated) already
        key = sweep_key(registry, mv.name, version, CREATED_EVENT)
        dispatch(_request(registry, mv.name, version, CREATED_EVENT, SEAL_AND_CHECK, key), True)
        report.caught_up.append(key)
    if newest is not None:
        store.advance_mark(mark_name, newest)


def reverify_due(store: Store, registry: str, model: str, version: str, interval_s: float,
                 now: float) -> int | None:
    """The re-verification period now due for a version, or None when its turn has not come.

    Period ``n`` of a version starts at ``n * interval + offset``, with the offset a hash of the
    version's identity: versions fall due at different moments of the interval. The first sighting only
    records the current period (the alias event that made the version interesting was checked then).
    """
    digest = hashlib.sha256(f"{registry}\x1f{model}\x1f{version}".encode()).digest()
    offset = int.from_bytes(digest[:8], "big") / 2**64 * interval_s
    period = math.floor((now - offset) / interval_s)
    name = f"reverify:{registry}:{model}:{version}"
    done = store.get_mark(name)
    if done is not None and period <= done:
        return None
    store.advance_mark(name, period)
    return None if done is None else period


def _reverify_if_due(store: Store, settings: Settings, registry: str, model: str, version: str,
                     alias: str | None, dispatch: Dispatch, report: SweepReport, now: float) -> None:
    period = reverify_due(store, registry, model, version, settings.reverify_interval_s, now)
    if period is not None:
        key = sweep_key(registry, model, version, f"{REVERIFY_TRIGGER}:{period}")
        dispatch(_request(registry, model, version, REVERIFY_TRIGGER, CHECK, key, alias), True)
        report.reverified.append(key)


def reverify_production_stage(client: Any, store: Store, settings: Settings, registry: str,
                              dispatch: Dispatch, report: SweepReport, now: float) -> None:
    """Re-verification jobs for every version in the Production stage (``GUARD_REVERIFY=production-stage``).

    The workspace registry serves by stage and has no aliases. A transition creates no version, so the
    mark cannot bound this read: every version is read, one request per page of versions.
    """
    for mv in _pages(client.search_model_versions):
        if canonical_stage(getattr(mv, "current_stage", None)) == PRODUCTION_STAGE:
            _reverify_if_due(store, settings, registry, mv.name, str(mv.version), None, dispatch, report, now)


def observe_aliases(client: Any, store: Store, settings: Settings, registry: str, dispatch: Dispatch,
                    report: SweepReport, now: float) -> None:
    """Record every alias's holder; jobs for aliases that changed unseen, and for re-verifications due."""
    protected = set(settings.protected_aliases)
    for rm in _pages(client.search_registered_models):
        aliases = dict(getattr(rm, "aliases", None) or {})
        reverify: dict[str, str] = {}
        for alias, version in sorted(aliases.items()):
            version = str(version)
            if store.record_alias(registry, rm.name, alias, version, SOURCE_SWEEP, if_changed=True):
                key = sweep_key(registry, rm.name, version, f"{ALIAS_EVENT}:{alias}")
                dispatch(_request(registry, rm.name, version, ALIAS_EVENT, CHECK, key, alias), True)
                report.aliases_changed.append(key)
            if settings.reverify_scope == "all" or alias in protected:
                reverify.setdefault(version, alias)
        for version, alias in reverify.items():
            _reverify_if_due(store, settings, registry, rm.name, version, alias, dispatch, report, now)


def republish(store: Store, dispatch: Dispatch, report: SweepReport) -> None:
    """Run again every finished job whose publish gave up; its claim finds the stored verdict."""
    for job_key, request in store.unpublished(exclude_error=NOT_PUBLISHED):
        # Pending again: the job's claim hands it the stored verdict to publish, nothing is re-checked.
        store.record_publish(job_key, ok=False, error="publishing again (sweep)", final=False)
        dispatch(request, False)
        report.republished.append(job_key)


def run_sweep(settings: Settings, dispatch: Dispatch | None = None, client: Any = None,
              now: float | None = None) -> SweepReport:
    """One sweep over the configured registry (see the module docstring); returns what it handed out.

    ``dispatch`` defaults to the worker's queue. Raises when the registry cannot be read (nothing is
    re-published then: the registry is not reachable).
    """
    started = time.monotonic()
    registry = settings.registry_kind
    store = get_store(settings.store_url)
    dispatch = dispatch or queue_dispatch(settings)
    client = client or get_adapter(registry, settings).client
    now = time.time() if now is None else now
    report = SweepReport()
    catch_up_versions(client, store, registry, dispatch, report)
    observe_aliases(client, store, settings, registry, dispatch, report, now)
    if settings.reverify_scope == "production-stage":
        reverify_production_stage(client, store, settings, registry, dispatch, report, now)
    republish(store, dispatch, report)
    store.set_mark(LAST_RUN_MARK, now)
    report.duration_s = time.monotonic() - started
    log.info("sweep: %d versions read, %d caught up, %d alias changes, %d re-verifications, "
             "%d re-published in %.2fs", report.versions_scanned, len(report.caught_up),
             len(report.aliases_changed), len(report.reverified), len(report.republished),
             report.duration_s)
    return report


def sweep_if_due(settings: Settings) -> SweepReport | None:
    """Run a sweep when ``GUARD_SWEEP_INTERVAL`` has passed since the last one (any host's).

    The very first call only starts the clock; ``guard-sweep`` sweeps at once.
    """
    store = get_store(settings.store_url)
    last = store.get_mark(LAST_RUN_MARK)
    if last is None:
        # A new deployment: its webhook jobs may still sit in the queue, not yet journaled, and a sweep now
        # would queue them a second time. The first periodic sweep comes one interval later.
        store.advance_mark(LAST_RUN_MARK, time.time())
        return None
    if time.time() - last < settings.sweep_interval_s:
        return None
    return run_sweep(settings)


def inline_dispatch(settings: Settings) -> Dispatch:
    """Run each job in this process to its end (``guard-sweep --run``: no worker needed)."""
    from listener.worker.entry import run_job

    def dispatch(request: dict[str, Any], fresh: bool) -> None:
        run_job(request, settings)
    return dispatch


def main(argv: list[str] | None = None) -> int:
    """``guard-sweep``: one sweep; exit 0 when it ran, 2 when the registry or the store could not be read."""
    import argparse
    import json
    import sys

    parser = argparse.ArgumentParser(prog="guard-sweep", description=__doc__.split("\n\n")[0])
    parser.add_argument("--run", action="store_true",
                        help="run the jobs in this process instead of handing them to the worker's queue")
    args = parser.parse_args(sys.argv[1:] if argv is None else argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    try:
        settings = Settings.from_env()
    except ConfigError as exc:
        print(f"error: refusing to start: {exc}", file=sys.stderr)
        return 2
    try:
        report = run_sweep(settings, inline_dispatch(settings) if args.run else None)
    except Exception as exc:  # noqa: BLE001 - the reason is the answer
        print(f"error: sweep not done: {exc}", file=sys.stderr)
        return 2
    print(json.dumps({"versions_scanned": report.versions_scanned, "caught_up": report.caught_up,
                      "aliases_changed": report.aliases_changed, "reverified": report.reverified,
                      "republished": report.republished, "duration_s": round(report.duration_s, 3)},
                     sort_keys=True))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
