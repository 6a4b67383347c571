"""One validation job, straight through: claim, read the version once, check, store, publish.

Only the model name and version are taken from the request; the registry contacted is always the one
configured in :class:`listener.config.Settings`, never a host, path or URI named in a payload.

Errors travel one way: as exceptions. A dependency that is down raises ``TransientError`` (from the
registry adapter, or from the core's "could not check, retrying may help" result); :func:`process_job`
turns it into :class:`RetryLater` while the retry budget lasts, and into an ERROR verdict after that.
The caller (the queue task, the job entry point) decides how to wait.
"""

from __future__ import annotations

import json
import logging
import time
from dataclasses import dataclass
from typing import Any

from core.errors import CheckError, TransientError
from core.remote.progress import LoggingProgress
from listener import metrics
from listener.config import Settings
from listener.protocol.request import ValidationRequest
from listener.registries import get_adapter
from listener.registries.base import RegistryAdapter, read_when_ready
from listener.store import Store, get_store, is_transient, owner_id, short_reason
from listener.verdict import ERROR, Verdict
from listener.worker import alias_gate
from listener.worker.policy_context import policy_arguments
from listener.worker.redundant import answering_check
from listener.worker.sealing import seal_options
from listener.worker.version_lock import kept_alive, version_lock

log = logging.getLogger(__name__)

LOCK_WAIT_S = 2.0
STORE_WAIT_S = 10.0
# The publish error of a verdict kept off the version on purpose (the sweep does not publish it later).
NOT_PUBLISHED = "not published (--no-publish)"


class RetryLater(Exception):
    """Run this job again in ``delay`` seconds (the queue's retry; the job entry point sleeps)."""

    def __init__(self, message: str, delay: float) -> None:
        super().__init__(message)
        self.delay = delay


@dataclass
class Checked:
    """A verdict and the model version as read for it (None when it could not be read)."""

    verdict: Verdict
    version: Any


def _fields(request: ValidationRequest) -> dict[str, Any]:
    return {"model": request.model, "version": str(request.version), "registry": request.registry,
            "trigger": request.trigger, "action": request.action, "alias": request.alias,
            "to_stage": request.to_stage, "gate": bool(request.gate), "delivery_key": request.delivery_key}


def validate(request: ValidationRequest, settings: Settings, adapter: RegistryAdapter) -> Checked:
    """Read the version once and check it; the core decides the verdict (seal included).

    ``TransientError`` propagates (retrying may help); any other failure to check is an ERROR verdict.
    Nothing is stored or published here.
    """
    from core.check import check_model_version

    started = time.monotonic()
    mv = None
    try:
        mv = read_when_ready(adapter, request.model, request.version, settings.ready_timeout_s)
        # Sealing never overwrites an existing seal: a re-delivered "created" event must not bless
        # files that changed since the first one (core.seal.step).
        scratch = settings.data_dir / "scratch"
        scratch.mkdir(parents=True, exist_ok=True)
        # Long checks log their progress now and then; every verified byte is counted for /metrics.
        progress = LoggingProgress(f"model '{request.model}' version {request.version}",
                                   on_verified=metrics.BYTES_VERIFIED.inc)
        result = check_model_version(request.model, request.version, tracking_uri=settings.tracking_uri,
                                     registry_uri=settings.registry_uri, download_dir=scratch,
                                     client=adapter.client, model_version=mv, exclude=settings.exclude,
                                     transfer_concurrency=settings.transfer_concurrency, progress=progress,
                                     signed_seal=seal_options(settings, request, adapter),
                                     **policy_arguments(request, settings))
        if result.status == ERROR:
            reason = result.error or result.summary or "could not check"
            raise TransientError(reason) if result.transient else CheckError(reason)
    except TransientError:
        raise
    except (CheckError, ValueError) as exc:
        return Checked(Verdict.error_verdict(reason=str(exc), duration_s=time.monotonic() - started,
                                             **_fields(request)), mv)
    new_seal = result.new_seal
    verdict = Verdict(status=result.status, summary=result.summary,
                      differences=[d.to_dict() for d in result.differences],
                      seal_differences=[d.to_dict() for d in result.seal_differences],
                      seal_digest=result.seal_digest, duration_s=time.monotonic() - started,
                      new_seal_json=new_seal.to_compact_json() if new_seal is not None else None,
                      seal_bundle=result.seal_record.bundle_location if result.seal_record else None,
                      seal=result.report.get("Seal") if result.seal_outcome is not None else None,
                      policy=result.policy.to_dict() if result.policy is not None else None,
                      **_fields(request))
    return Checked(verdict, mv)


def run_validation(request: ValidationRequest, settings: Settings,
                   adapter: RegistryAdapter | None = None) -> Verdict:
    """The verdict on the version ``request`` names (see :func:`validate`); nothing is stored or published."""
    return validate(request, settings, adapter or get_adapter(request.registry, settings)).verdict


def process_job(request_dict: dict[str, Any], settings: Settings, adapter: RegistryAdapter | None = None,
                store: Store | None = None, publish: bool = True) -> dict[str, Any]:
    """Run one validation job end to end: claim it, validate, store the verdict, publish it.

    The body of the queue task and of the job entry point. Returns ``{"job_key", "state", "status"}``
    (state ``finished``, ``done``, ``busy``, ``ignored``, or ``skipped``: :mod:`listener.worker.redundant`).
    Raises :class:`RetryLater` when the job should run again later (transient failure, publish failure,
    another check of the same version in progress, or the store unreachable for longer than its own
    write retries). ``publish=False`` stores the verdict without writing it onto the version.
    """
    try:
        return _run_job(request_dict, settings, adapter, store or get_store(settings.store_url), publish)
    except Exception as exc:
        if not is_transient(exc):
            raise
        # The store stayed down past its write retries: the job runs again later, it is never dropped.
        log.warning("job %s: store unavailable (%s); retrying in %.0fs", request_dict.get("delivery_key"),
                    short_reason(exc), STORE_WAIT_S)
        raise RetryLater(f"store unavailable: {short_reason(exc)}", delay=STORE_WAIT_S) from exc


def _run_job(request_dict: dict[str, Any], settings: Settings, adapter: RegistryAdapter | None,
             store: Store, publish: bool) -> dict[str, Any]:
    request = ValidationRequest.from_dict(request_dict)
    job_key = request.delivery_key
    if alias_gate.observe_event(request, settings):
        return {"job_key": job_key, "state": "ignored", "status": None}
    adapter_error: str | None = None
    if adapter is None:
        try:
            adapter = get_adapter(request.registry, settings)
        except Exception as exc:  # noqa: BLE001 - becomes the verdict's reason
            adapter_error = f"cannot use the {request.registry} registry: {exc}"
    owner = owner_id()
    claim = store.claim(request.to_dict(), owner, job_key=job_key,
                        ui_url=adapter.version_url(request.model, request.version) if adapter else None)
    if claim.state in ("done", "busy"):
        log.info("job %s: %s, nothing to do", job_key, claim.state)
        return {"job_key": job_key, "state": claim.state, "status": None}
    if claim.state == "locked":
        log.info("job %s: another check of %s version %s is running; retrying in %ss",
                 job_key, request.model, request.version, LOCK_WAIT_S)
        raise RetryLater("version locked", delay=LOCK_WAIT_S)

    try:
        lock = version_lock(settings, request.registry, request.model, request.version, store=store,
                            owner=owner)
        acquired = lock.acquire()
    except Exception as exc:  # noqa: BLE001 - the lock's server is down: the job waits, unclaimed
        store.release(job_key, owner)
        raise RetryLater(f"cannot take the version lock: {exc}", delay=settings.retry_delay(1)) from exc
    if not acquired:
        store.release(job_key, owner)
        log.info("job %s: %s version %s is being checked on another host; retrying in %ss",
                 job_key, request.model, request.version, LOCK_WAIT_S)
        raise RetryLater("version locked on another host", delay=LOCK_WAIT_S)

    started = time.monotonic()
    try:
        # Decided with the job claimed and the version locked: no other check of it can finish meanwhile.
        answer = answering_check(request, store) if claim.verdict is None else None
        if answer is not None:
            store.record_skipped(job_key, owner, answer)
            log.info("job %s: %s version %s was already checked by job %s; skipped", job_key, request.model,
                     request.version, answer.job_key)
            return {"job_key": job_key, "state": "skipped", "status": None}
        with kept_alive(lock, store, job_key, owner):
            checked = Checked(claim.verdict, None) if claim.verdict is not None else _check(
                request, settings, adapter, adapter_error, store, owner, claim.attempts)
            verdict = alias_gate.enforce(checked.verdict, settings, adapter, store)
            if not publish:
                store.record_publish(job_key, ok=False, error=NOT_PUBLISHED, final=True)
                published = "NOT_PUBLISHED"
            else:
                published = _publish(verdict, checked.version, adapter, store, job_key,
                                     claim.publish_attempts, settings)
            log_outcome(verdict, published, time.monotonic() - started)
            return {"job_key": job_key, "state": "finished", "status": verdict.status}
    finally:
        # Always give the job up: a retry must be claimable again, even by this same process.
        store.release(job_key, owner)
        lock.release()


def _check(request: ValidationRequest, settings: Settings, adapter: RegistryAdapter | None,
           adapter_error: str | None, store: Store, owner: str, attempts: int) -> Checked:
    """Validate and store the verdict; :class:`RetryLater` while a transient failure may still pass."""
    started = time.monotonic()
    try:
        if adapter is None:
            raise CheckError(adapter_error or "no registry adapter")
        checked = validate(request, settings, adapter)
    except TransientError as exc:
        attempts += 1
        if attempts <= settings.max_retries:
            delay = settings.retry_delay(attempts)
            log.warning("job %s: transient failure (attempt %d of %d), retrying in %.0fs: %s",
                        request.delivery_key, attempts, settings.max_retries + 1, delay, exc)
            store.release(request.delivery_key, owner, retrying=True, error=str(exc), attempts=attempts)
            raise RetryLater(str(exc), delay=delay) from exc
        checked = Checked(Verdict.error_verdict(reason=f"gave up after {attempts} attempts: {exc}",
                                                duration_s=time.monotonic() - started, **_fields(request)),
                          None)
    except Exception as exc:  # noqa: BLE001 - any other failure is a permanent ERROR with its reason
        if not isinstance(exc, CheckError):
            log.exception("job %s: validation failed", request.delivery_key)
        reason = str(exc) if isinstance(exc, CheckError) else f"internal error: {type(exc).__name__}: {exc}"
        checked = Checked(Verdict.error_verdict(reason=reason, duration_s=time.monotonic() - started,
                                                **_fields(request)), None)
    store.record_verdict(request.delivery_key, checked.verdict, attempts=attempts)
    metrics.record_validation(checked.verdict.status, checked.verdict.duration_s)
    return checked


def _publish(verdict: Verdict, current: Any, adapter: RegistryAdapter | None, store: Store,
             job_key: str, publish_attempts: int, settings: Settings) -> str:
    """Publish a stored verdict; returns the publish status, raises :class:`RetryLater` to try again."""
    if adapter is None:
        store.record_publish(job_key, ok=False, error="no registry adapter", final=True)
        metrics.record_publish_failure(verdict.registry)
        return "FAILED"
    try:
        adapter.publish(verdict, current)
    except Exception as exc:  # noqa: BLE001 - recorded; retried when it may help
        attempt = publish_attempts + 1
        transient = isinstance(exc, TransientError) or not isinstance(exc, CheckError)
        final = not transient or attempt > settings.max_retries
        store.record_publish(job_key, ok=False, error=str(exc)[:2000], final=final)
        metrics.record_publish_failure(verdict.registry)
        if final:
            log.error("job %s: verdict %s stored but not published: %s", job_key, verdict.status, exc)
            return "FAILED"
        delay = settings.retry_delay(attempt)
        log.warning("job %s: publish failed (attempt %d), retrying in %.0fs: %s", job_key, attempt, delay,
                    exc)
        raise RetryLater(f"publish failed: {exc}", delay=delay) from exc
    store.record_publish(job_key, ok=True)
    return "PUBLISHED"


def log_outcome(verdict: Verdict, published: str, duration_s: float) -> None:
    """One structured line per finished job (names, numbers and statuses only: nothing secret)."""
    log.info("job finished %s", json.dumps({
        "job": verdict.delivery_key, "registry": verdict.registry, "model": verdict.model,
        "version": verdict.version, "trigger": verdict.trigger, "verdict": verdict.status,
        "check_s": round(verdict.duration_s, 3), "duration_s": round(duration_s, 3), "publish": published,
    }, ensure_ascii=False))
