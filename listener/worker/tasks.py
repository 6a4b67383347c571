"""The worker: huey tasks that validate model versions and publish the verdicts.

Run it with ``huey_consumer listener.worker.tasks.huey`` (same environment as the listener).

Durability. huey removes a job from the queue when a worker takes it, so a worker killed mid-check
would lose it. Every job therefore gets a row in the store (``GUARD_STORE``: the journal) the moment a
worker claims it, with the worker's identity and a heartbeat (see :func:`listener.worker.job.process_job`). A
job is finished only when its verdict is stored AND published. At consumer start-up (once per process,
however many worker threads it runs) and once a minute
:func:`recover_unfinished` re-enqueues every unfinished job whose worker is gone and which is not
waiting in the queue or its schedule. Claims are idempotent, so a job enqueued twice still runs once:
the second copy finds it done, or busy.

Order of writes. The verdict is stored before it is published, so it is never lost; a publish that
fails is retried (``publish_status`` stays ``PENDING``) and counted in ``guard_publish_failures_total``.

Concurrency. Two checks of the same registry/model/version never run at once: the claim in the results
store is refused while another live worker holds a job of that version, and the job is re-tried a few
seconds later without using up its retries.
"""

from __future__ import annotations

import fcntl
import logging
import os
import sys
import threading
from pathlib import Path
from typing import Any

from huey import crontab
from huey.exceptions import RetryTask

from listener.alerts.deliver import attempt
from listener.config import ConfigError, Settings
from listener.intake import get_huey
from listener.store import get_store
from listener.worker.job import process_job

log = logging.getLogger(__name__)

_settings: Settings | None = None


def get_settings() -> Settings:
    """The worker's settings, read once from the environment."""
    global _settings
    if _settings is None:
        try:
            _settings = Settings.from_env()
        except ConfigError as exc:
            # The consumer imports this module to start: it refuses, with the one line that says why.
            print(f"error: refusing to start: {exc}", file=sys.stderr)
            raise SystemExit(2) from None
    return _settings


huey = get_huey(get_settings())


def _drop_mlflow_huey_handler() -> None:
    # Importing MLflow (done above, before huey_consumer sets up its logging) gives the ``huey`` logger
    # a handler of MLflow's, which runs huey for its own jobs; next to the consumer's handler it would
    # print every huey line twice, in two formats.
    logger = logging.getLogger("huey")
    logger.handlers = [handler for handler in logger.handlers
                       if type(handler.formatter).__module__ != "mlflow.utils.logging_utils"]


_drop_mlflow_huey_handler()


@huey.task()
def validate_version(request_dict: dict[str, Any]) -> dict[str, Any]:
    """Validate one model version (a ``ValidationRequest.to_dict()``), store and publish the verdict."""
    # A RetryLater it raises is huey's RetryTask: the job is rescheduled; the attempt budget is the journal's.
    return process_job(request_dict, get_settings(), alert_later=_alert_later)


@huey.task()
def deliver_alert(job_key: str) -> None:
    """Send the alert of one stored verdict (:mod:`listener.alerts.deliver`); again later while it fails."""
    settings = get_settings()
    delay = attempt(job_key, settings, get_store(settings.store_url))
    if delay is not None:
        raise RetryTask(f"alert of {job_key} not delivered", delay=delay)


def _alert_later(job_key: str, delay: float) -> None:
    if delay > 0:
        deliver_alert.schedule((job_key,), delay=delay)
    else:
        deliver_alert(job_key)



def _ensure_registered(instance: Any) -> None:
    # Another huey instance (tests, tools) must know the task by name to store or read it.
    registry = instance._registry  # noqa: SLF001 - huey serialises by registered task name
    task_class = validate_version.task_class
    if registry.task_to_string(task_class) not in registry._registry:  # noqa: SLF001
        registry.register(task_class)


def _queued_keys(instance: Any) -> set[str]:
    keys: set[str] = set()
    for task in [*instance.pending(), *instance.scheduled()]:
        args = getattr(task, "args", None) or ()
        if args and isinstance(args[0], dict) and args[0].get("delivery_key"):
            keys.add(str(args[0]["delivery_key"]))
    return keys


def recover_unfinished(settings: Settings | None = None, instance: Any = None) -> list[str]:
    """Re-enqueue journaled jobs whose worker died (SIGKILL, crash, lost retry); returns their keys.

    Skips jobs held by a live worker and jobs already waiting in the queue or its schedule. Serialised
    by a file lock so several consumers of this host starting together do not enqueue the same job
    twice; across hosts sharing a store, :meth:`listener.store.Store.take_unfinished` hands each job to
    one consumer only.
    """
    settings = settings or get_settings()
    instance = instance or huey
    _ensure_registered(instance)
    store = get_store(settings.store_url)
    lock_path = Path(settings.data_dir) / "recovery.lock"
    # A worker whose store and queue are remote (a dyno) has nothing else in its data folder yet.
    lock_path.parent.mkdir(parents=True, exist_ok=True)
    requeued: list[str] = []
    with open(lock_path, "a+") as lock_file:
        fcntl.flock(lock_file, fcntl.LOCK_EX)
        try:
            candidates = store.take_unfinished()
            if not candidates:
                return requeued
            waiting = _queued_keys(instance)
            for job_key, request_dict in candidates:
                if job_key in waiting:
                    continue
                task = validate_version.s(request_dict)
                instance.enqueue(task)
                requeued.append(job_key)
                log.warning("re-enqueued unfinished job %s (%s version %s)", job_key,
                            request_dict.get("model"), request_dict.get("version"))
        finally:
            fcntl.flock(lock_file, fcntl.LOCK_UN)
    return requeued


def _log_job_lines() -> None:
    """Send the worker's own INFO lines (one per finished job) to stderr, next to the consumer's.

    ``huey_consumer`` sets up logging for the ``huey`` logger only; without this the line each finished
    job logs would be dropped.
    """
    logger = logging.getLogger("listener")
    if logger.handlers:
        return
    handler = logging.StreamHandler()
    handler.setFormatter(logging.Formatter("[%(asctime)s] %(levelname)s:%(name)s:%(threadName)s:%(message)s"))
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    logger.propagate = False


_started_in: int | None = None  # the pid whose start-up work is done
_startup_lock = threading.Lock()


@huey.on_startup()
def _start_process() -> None:
    """Once per consumer process (huey calls its start-up hooks in every worker thread)."""
    global _started_in
    with _startup_lock:
        if _started_in == os.getpid():
            return
        _started_in = os.getpid()
        _log_job_lines()
        # Load MLflow here rather than inside the first job: it takes a second or two, which would
        # otherwise delay the first verdict after a worker starts.
        import core.check  # noqa: F401
        from listener.worker.first_contact import note_first_contact

        try:
            # A new deployment watches the registry from now: the first sweep starts here.
            note_first_contact(get_settings())
        except Exception:  # noqa: BLE001 - the store may be down; the first sweep records it then
            log.warning("could not record the first contact with the registry", exc_info=True)
        recover_unfinished()


@huey.periodic_task(crontab(minute="*"))
def sweep_periodically() -> None:
    """Once a minute: a sweep when GUARD_SWEEP_INTERVAL has passed (catch-up, re-verification, re-publish)."""
    from listener.worker.sweep import sweep_if_due

    try:
        sweep_if_due(get_settings())
    except Exception:  # noqa: BLE001 - the registry may be down; the next minute tries again
        log.warning("sweep failed", exc_info=True)


@huey.periodic_task(crontab(minute="*"))
def recover_periodically() -> list[str]:
    """Once a minute: pick up jobs of workers that died while other workers stayed up, and alerts left
    pending by a process that stopped (their lease has run out)."""
    settings = get_settings()
    for job_key in get_store(settings.store_url).due_notifications():
        deliver_alert(job_key)
    return recover_unfinished()
