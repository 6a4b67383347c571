"""Prometheus metrics of the listener and the worker.

Counters live in each process. Under gunicorn (several workers) and with a separate huey consumer, set
``PROMETHEUS_MULTIPROC_DIR`` to one empty, shared, writable folder (for example ``$GUARD_DATA_DIR/metrics``)
in the environment of every process BEFORE it starts: prometheus-client then writes the values to files
there and ``/metrics`` adds them up across processes. The queue depth is read from the queue at scrape time.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import REGISTRY, Collector

DELIVERIES = Counter("guard_deliveries_total", "Webhook deliveries by route and HTTP answer",
                     ["route", "code"])
VALIDATIONS = Counter("guard_validations_total", "Finished validations by verdict", ["status"])
CHECK_DURATION = Histogram("guard_check_duration_seconds", "Time to check one model version",
                           buckets=(0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600, 1800))
TAMPER_DETECTED = Counter("guard_tamper_detected_total",
                          "Re-verifications that found a version's files no longer match its seal",
                          ["registry"])
ALIASES_REVERTED = Counter("guard_alias_reverted_total",
                           "Protected aliases moved back (or removed) off a FAILED or ERROR version",
                           ["registry"])
BYTES_VERIFIED = Counter("guard_bytes_verified_total",
                         "Model file bytes read and hashed by checks (counted as each file completes)")
ADMISSIONS = Counter("guard_admissions_total", "Worker jobs by admission: run, or why not (echo, duplicate, "
                     "redundant)", ["decision"])
NOTIFY_FAILURES = Counter("guard_notify_failures_total",
                          "Verdict alerts given up after their retries (GUARD_NOTIFY)")
PUBLISH_FAILURES = Counter("guard_publish_failures_total", "Failed attempts to publish a verdict",
                           ["registry"])


# Labelled children of DELIVERIES by (route, code). ``labels()`` validates and looks the labels up under a
# lock on every call; the set of answers is small and fixed, so each child is looked up once per process.
_delivery_counters: dict[tuple[str, int], Any] = {}


def record_delivery(route: str, code: int) -> None:
    """Count one webhook answer."""
    counter = _delivery_counters.get((route, code))
    if counter is None:
        counter = _delivery_counters.setdefault((route, code), DELIVERIES.labels(route=route, code=str(code)))
    counter.inc()


def record_validation(status: str, duration_s: float | None = None) -> None:
    """Count one finished validation (worker side) and observe its duration."""
    VALIDATIONS.labels(status=status).inc()
    if duration_s is not None:
        CHECK_DURATION.observe(duration_s)


def record_admission(decision: str) -> None:
    """Count one job's admission (worker side): ``run``, or why it does not run."""
    ADMISSIONS.labels(decision=decision).inc()


def record_publish_failure(registry: str) -> None:
    """Count one failed publish attempt (worker side)."""
    PUBLISH_FAILURES.labels(registry=registry).inc()


def record_notify_failure() -> None:
    """Count one verdict alert given up after its retries."""
    NOTIFY_FAILURES.inc()


def record_tamper(registry: str) -> None:
    """Count one re-verification that found a sealed version changed (worker side)."""
    TAMPER_DETECTED.labels(registry=registry).inc()


def record_alias_reverted(registry: str) -> None:
    """Count one protected alias the guard moved back or removed (worker side)."""
    ALIASES_REVERTED.labels(registry=registry).inc()


class QueueDepthCollector(Collector):
    """``guard_queue_depth``, read from the queue when scraped (a gauge per process would disagree)."""

    def __init__(self, depth: Callable[[], int]) -> None:
        self._depth = depth

    def collect(self) -> Iterable[GaugeMetricFamily]:
        """Yield the current queue depth; a queue that cannot be read is left out rather than made up."""
        family = GaugeMetricFamily("guard_queue_depth", "Jobs waiting in the validation queue")
        try:
            family.add_metric([], float(self._depth()))
        except Exception:  # noqa: BLE001 - a scrape must not fail because the queue is down
            return
        yield family


def render(depth: Callable[[], int], multiprocess_dir: str | None) -> tuple[bytes, str]:
    """The Prometheus text exposition of every metric: (body, content type).

    ``multiprocess_dir``: prometheus-client's multiprocess folder (``PROMETHEUS_MULTIPROC_DIR``), whose
    files are added up across processes; None for this process's own counters.
    """
    if multiprocess_dir:
        from prometheus_client import multiprocess

        registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(registry)
        body = generate_latest(registry)
    else:
        body = generate_latest(REGISTRY)
    live = CollectorRegistry()
    live.register(QueueDepthCollector(depth))
    return body + generate_latest(live), CONTENT_TYPE_LATEST
