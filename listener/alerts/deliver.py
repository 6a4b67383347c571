"""Send each verdict's alert once, after the verdict is stored and published, with retries.

Once: the alert of a verdict is a row in the store keyed by the verdict's job, created by whichever
process finishes the verdict first; a retried job, a re-published verdict or a second host finds the row
and sends nothing. Each attempt holds a short lease on the row, so two processes never send it together.

After the verdict: the job stores and publishes the verdict first, then opens the alert. Sending never
changes the verdict, and never holds the job up:

- in the worker the alert is a task of its own in the queue (:func:`listener.worker.tasks.deliver_alert`),
  re-scheduled with backoff while the service fails: a receiver that is down for minutes occupies no
  worker thread, and the schedule survives a worker restart (the queue keeps it; an alert whose process
  died mid-attempt is picked up again once its lease runs out);
- ``guard-job`` and ``guard-sweep --run`` have no queue consumer (a Databricks job run is one process),
  so they send from a background thread of their own, with the same bounded backoff, after the verdict
  was stored and published (and printed); the command waits for it before it exits
  (:func:`wait_for_alerts`: the interpreter's shutdown would stop apprise's own threads).

After ``GUARD_NOTIFY_RETRIES`` failed retries the alert is given up: logged, counted in
``guard_notify_failures_total``, and kept in the store as ``failed`` with the reason. With several URLs,
a retry goes only to the ones that have not had the message yet.
"""

from __future__ import annotations

import logging
import threading
import time
import urllib.parse
from collections.abc import Callable

from listener import metrics
from listener.alerts.message import compose, scrub
from listener.alerts.send import send
from listener.config import Settings
from listener.registries import version_url
from listener.store import Store
from listener.verdict import Verdict

log = logging.getLogger(__name__)

# Schedules an attempt of the alert of a job key in a number of seconds (the worker's queue).
Later = Callable[[str, float], None]

_threads: set[threading.Thread] = set()
_threads_lock = threading.Lock()


def wants_alert(settings: Settings, status: str) -> bool:
    """True when alerts are configured and ``status`` is one of ``GUARD_NOTIFY_ON``."""
    return bool(settings.notify_urls) and status in settings.notify_on


def secrets_of(settings: Settings) -> list[str]:
    """Every configured secret a message must never show (webhook secrets, credentials in alert URLs)."""
    secrets = [*settings.mlflow_secrets, *settings.databricks_secrets]
    if settings.databricks_authorization:
        secrets.append(settings.databricks_authorization)
    for url in settings.notify_urls:
        parts = urllib.parse.urlsplit(url)
        secrets.extend(p for p in (parts.username, parts.password) if p)
    return secrets


def after_verdict(verdict: Verdict, settings: Settings, store: Store, later: Later | None = None) -> None:
    """Open the alert of a stored, published verdict (once across hosts and retries) and have it sent:
    by ``later`` (the worker's queue), else by a background thread of this process. Never raises."""
    try:
        if not wants_alert(settings, verdict.status) or not verdict.delivery_key:
            return
        if not store.open_notification(verdict.delivery_key):
            return  # sent, or being sent, for this verdict already
        if later is not None:
            later(verdict.delivery_key, 0.0)
        else:
            thread = threading.Thread(target=deliver_in_process, args=(verdict.delivery_key, settings, store),
                                      name="guard-alert", daemon=False)
            with _threads_lock:
                _threads.add(thread)
            thread.start()
    except Exception:  # noqa: BLE001 - an alert never fails a job
        log.warning("alert for job %s not sent", verdict.delivery_key, exc_info=True)


def attempt(job_key: str, settings: Settings, store: Store) -> float | None:
    """One attempt to send the alert of ``job_key``; the seconds until the next attempt, or None when
    there is nothing more to do (sent, given up, not due, or another process is sending it)."""
    lease = store.lease_notification(job_key)
    if lease is None:
        return None
    attempts, owed = lease
    stored = store.verdict_of(job_key)
    if stored is None:
        store.settle_notification(job_key, sent=False, error="no stored verdict")
        return None
    verdict, link = stored
    link = link or version_url(settings, str(verdict.get("registry")), str(verdict.get("model")),
                               str(verdict.get("version")))
    message = compose(verdict, link, secrets_of(settings))
    results = send(settings.notify_urls, message, owed)
    failed = {r.index for r in results if not r.ok}
    if not failed:
        store.settle_notification(job_key, sent=True)
        log.info("alert sent for job %s (%s) to %d URL(s)", job_key, verdict.get("status"), len(results))
        return None
    error = scrub("; ".join(f"{r.target}: {r.error}" for r in results if not r.ok),
                  secrets_of(settings))[:2000]
    retry = attempts + 1
    if retry <= settings.notify_retries:
        delay = settings.notify_retry_delay(retry)
        store.settle_notification(job_key, sent=False, error=error, retry_at=time.time() + delay, owed=failed)
        log.warning("alert for job %s not delivered (attempt %d), again in %.0fs: %s", job_key, retry, delay,
                    error)
        return delay
    store.settle_notification(job_key, sent=False, error=error, owed=failed)
    metrics.record_notify_failure()
    log.error("alert for job %s given up after %d attempts: %s", job_key, retry, error)
    return None


def deliver_in_process(job_key: str, settings: Settings, store: Store) -> None:
    """Attempt the alert until it is sent or given up, sleeping through the backoff (no queue consumer)."""
    try:
        while (delay := attempt(job_key, settings, store)) is not None:
            time.sleep(delay)
    except Exception:  # noqa: BLE001 - the store went away: the row stays pending for a worker to pick up
        log.warning("alert for job %s interrupted", job_key, exc_info=True)
    finally:
        with _threads_lock:
            _threads.discard(threading.current_thread())


def wait_for_alerts(timeout: float | None = None) -> None:
    """Wait until this process's alerts are sent or given up (a command calls it before it exits)."""
    with _threads_lock:
        pending = list(_threads)
    for thread in pending:
        thread.join(timeout)
