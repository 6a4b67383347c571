"""A deliberate backfill (``guard-sweep --backfill``): check the versions older than the deployment.

A new deployment watches a registry from its first start (:mod:`listener.worker.first_contact`); the
versions the registry held before are checked only when someone asks, here, and in a bounded way:

- ``--since DATE``, ``--model GLOB`` (repeatable) and ``--limit N`` choose the versions (newest first);
- ``--dry-run`` lists them (versions, models, and total bytes where the artifact store is a local
  folder, whose sizes cost nothing to read) and writes nothing;
- otherwise their jobs are handed to the worker's queue at ``--rate N/min``, so the tracking server and
  the artifact store are not flooded, or with ``--run`` checked one after another in this process.

Progress is kept in the store, one row per version handed out: a backfill run again continues where the
last one stopped, and a version already checked (by anything) is never checked again. SIGTERM stops a
``--run`` backfill once the version being checked is done (a second SIGTERM stops it at once).

Backfilled versions are sealed as found (trust on first use): their seal's attestation, their tags and
their report say ``sealed on first sight (backfill)`` (:mod:`listener.worker.sealing`).
"""

from __future__ import annotations

import fnmatch
import os
import re
import signal
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any

from listener.config import Settings
from listener.config_parsing import ConfigError
from listener.protocol.events import SEAL_AND_CHECK
from listener.registries import get_adapter
from listener.store import Store, first_contact_mark, get_store
from listener.worker.first_contact import note_first_contact
from listener.worker.sealing import BACKFILL_TRIGGER
from listener.worker.sweep import Dispatch, queue_dispatch, registry_pages, sweep_key, sweep_request

# A registry of a few hundred versions is handed out in minutes; the worker checks them at its own pace.
DEFAULT_RATE_PER_MIN = 30.0
_RATE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(?:/\s*(s|sec|m|min|h|hour))?\s*$", re.IGNORECASE)
_PER_MINUTE = {None: 1.0, "m": 1.0, "min": 1.0, "s": 60.0, "sec": 60.0, "h": 1 / 60, "hour": 1 / 60}


def parse_rate(text: str) -> float:
    """``30/min`` (also ``N/s``, ``N/h``, or a bare number of versions a minute) -> versions per minute."""
    match = _RATE.match(text or "")
    rate = float(match.group(1)) * _PER_MINUTE[(match.group(2) or "").lower() or None] if match else 0.0
    if rate <= 0:
        raise ConfigError(f"--rate must be a positive number of versions a minute such as 30/min, "
                          f"got {text!r}")
    return rate


@dataclass
class BackfillOptions:
    """Which versions a backfill takes and how (see the module docstring); ``since`` in epoch seconds."""

    since: float | None = None
    models: list[str] = field(default_factory=list)
    limit: int | None = None
    rate_per_min: float = DEFAULT_RATE_PER_MIN
    dry_run: bool = False
    run_inline: bool = False


@dataclass
class Candidate:
    """One version a backfill would check; ``size`` None when its store cannot list sizes cheaply."""

    model: str
    version: str
    created_ms: float
    size: int | None = None


def _iso(epoch_s: float | None) -> str | None:
    if epoch_s is None:
        return None
    return datetime.fromtimestamp(epoch_s, timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


@dataclass
class BackfillReport:
    """What a backfill found and did."""

    dry_run: bool
    before: float
    since: float | None
    versions: list[Candidate] = field(default_factory=list)
    handed_out: list[str] = field(default_factory=list)
    already_checked: int = 0
    interrupted: bool = False
    duration_s: float = 0.0

    def to_dict(self) -> dict[str, Any]:
        """The JSON ``guard-sweep --backfill`` prints."""
        sizes = [c.size for c in self.versions if c.size is not None]
        return {
            "dry_run": self.dry_run, "created_before": _iso(self.before), "since": _iso(self.since),
            "versions": [{"model": c.model, "version": c.version, "created": _iso(c.created_ms / 1000),
                          "bytes": c.size} for c in self.versions],
            "models": dict(sorted(Counter(c.model for c in self.versions).items())),
            "total_versions": len(self.versions),
            "total_bytes": sum(sizes) if self.dry_run else None,
            "bytes_unknown": (len(self.versions) - len(sizes)) if self.dry_run else None,
            "handed_out": self.handed_out, "already_checked": self.already_checked,
            "interrupted": self.interrupted, "duration_s": round(self.duration_s, 3),
        }


def select_versions(client: Any, store: Store, registry: str, options: BackfillOptions,
                    before: float) -> tuple[list[Candidate], int]:
    """The versions to check, newest first, and how many matching ones were checked already.

    A version counts as checked when the store holds a verdict on it (from any trigger). One a backfill
    already queued is left to the worker; with ``run_inline`` one whose check was interrupted is taken again.
    """
    taken = store.backfilled(registry)
    picked: list[Candidate] = []
    checked = 0
    for mv in registry_pages(client.search_model_versions, order_by=["creation_timestamp DESC"]):
        created = float(getattr(mv, "creation_timestamp", 0) or 0)
        if created >= before * 1000:
            continue  # the sweep's part: created after the guard started watching
        if options.since is not None and created < options.since * 1000:
            break
        if options.models and not any(fnmatch.fnmatchcase(mv.name, glob) for glob in options.models):
            continue
        version = str(mv.version)
        if store.latest_for_version(registry, mv.name, version, with_verdict=True) is not None:
            checked += 1
            continue
        queued_before = (mv.name, version) in taken
        if queued_before and not options.run_inline:
            continue
        if not queued_before and store.latest_for_version(registry, mv.name, version,
                                                          with_verdict=False) is not None:
            continue  # being checked right now by another job
        picked.append(Candidate(mv.name, version, created))
        if options.limit is not None and len(picked) >= options.limit:
            break
    return picked, checked


def local_size(client: Any, candidate: Candidate) -> int | None:
    """Bytes of a version whose files are in a local folder (free to read); None for any other store."""
    from core.compare.fetch import local_path

    try:
        path = local_path(client.get_model_version_download_uri(candidate.model, candidate.version))
    except Exception:  # noqa: BLE001 - a size is a courtesy of the dry run, never a reason to fail it
        return None
    if path is None or not path.exists():
        return None
    if path.is_file():
        return path.stat().st_size
    return sum(os.path.getsize(os.path.join(root, name))
               for root, _, names in os.walk(path) for name in names)


class _StopOnTerm:
    """SIGTERM asks the backfill to stop after the current version; a second one stops it at once."""

    def __init__(self) -> None:
        self.requested = False
        self._previous: Any = None

    def __enter__(self) -> _StopOnTerm:
        if threading.current_thread() is threading.main_thread():
            self._previous = signal.signal(signal.SIGTERM, self._handle)
        return self

    def _handle(self, signum: int, frame: Any) -> None:
        if self.requested:
            raise SystemExit(143)
        self.requested = True

    def __exit__(self, *exc: object) -> None:
        if self._previous is not None:
            signal.signal(signal.SIGTERM, self._previous)

    def sleep_until(self, moment: float) -> None:
        while not self.requested and time.monotonic() < moment:
            time.sleep(min(0.2, max(0.0, moment - time.monotonic())))


def run_backfill(settings: Settings, options: BackfillOptions, dispatch: Dispatch | None = None,
                 client: Any = None) -> BackfillReport:
    """Select the versions older than the deployment (see :class:`BackfillOptions`), then list them
    (``dry_run``) or hand each out once, at ``rate_per_min``; ``dispatch`` defaults to the worker's queue.
    """
    started = time.monotonic()
    registry = settings.registry_kind
    store = get_store(settings.store_url)
    client = client or get_adapter(registry, settings).client
    if options.dry_run:
        before = store.get_mark(first_contact_mark(registry)) or time.time()
    else:
        before = note_first_contact(settings)
    report = BackfillReport(options.dry_run, before, options.since)
    report.versions, report.already_checked = select_versions(client, store, registry, options, before)
    if options.dry_run:
        if registry == "mlflow":
            for candidate in report.versions:
                candidate.size = local_size(client, candidate)
    else:
        _hand_out(settings, store, options, dispatch or queue_dispatch(settings), report)
    report.duration_s = time.monotonic() - started
    return report


def _hand_out(settings: Settings, store: Store, options: BackfillOptions, dispatch: Dispatch,
              report: BackfillReport) -> None:
    registry = settings.registry_kind
    interval = 60.0 / options.rate_per_min
    next_start = time.monotonic()
    with _StopOnTerm() as stop:
        for candidate in report.versions:
            stop.sleep_until(next_start)
            if stop.requested:
                report.interrupted = True
                return
            next_start = time.monotonic() + interval
            key = sweep_key(registry, candidate.model, candidate.version, BACKFILL_TRIGGER)
            if not store.take_for_backfill(registry, candidate.model, candidate.version, key) \
                    and not options.run_inline:
                continue  # another backfill running at the same time took it
            dispatch(sweep_request(registry, candidate.model, candidate.version, BACKFILL_TRIGGER,
                                   SEAL_AND_CHECK, key), True)
            report.handed_out.append(key)
