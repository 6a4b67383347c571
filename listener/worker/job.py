"""One validation job, straight through: admission, read the version once, check, store, publish.

Only the model name and version are taken from the request; the registry contacted is always the one
configured in :class:`listener.config.Settings`, never a host, path or URI named in a payload.

Errors travel one way: as exceptions, up to this module. The core and the registry adapters raise
``CheckError`` when a version cannot be checked (``TransientError`` when retrying may help); :func:`_check`
is the edge that turns them into the job's outcome: a ``TransientError`` into :class:`RetryLater` while the
retry budget lasts and into an ERROR verdict after that, anything else into an ERROR verdict at once.
``RetryLater`` is huey's ``RetryTask``: the queue reschedules the job as it is; the job entry point sleeps.
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
from listener.alerts.deliver import Later, after_verdict
from listener.config import Settings
from listener.protocol.request import ValidationRequest
from listener.registries import get_adapter
from listener.registries.base import RegistryAdapter, read_when_ready
from listener.store import Store, database_unavailable, get_store, short_reason
from listener.verdict import Verdict
from listener.worker import alias_gate
from listener.worker.admission import RetryLater, admitted
from listener.worker.policy_context import policy_arguments
from listener.worker.sealing import seal_options

log = logging.getLogger(__name__)

STORE_WAIT_S = 10.0
# The publish error of a verdict kept off the version on purpose (the sweep does not publish it later).
NOT_PUBLISHED = "not published (--no-publish)"


@dataclass
class Checked:
    """A verdict, the model version as read for it (None when it could not be read), the attempts it took."""

    verdict: Verdict
    version: Any
    attempts: int | None = None


def _fields(request: ValidationRequest) -> dict[str, Any]:
    return {"model": request.model, "version": str(request.version), "registry": request.registry,
            "trigger": request.trigger, "action": request.action, "alias": request.alias,
            "to_stage": request.to_stage, "gate": bool(request.gate), "delivery_key": request.delivery_key}


def validate(request: ValidationRequest, settings: Settings, adapter: RegistryAdapter) -> Checked:
    """Read the version once and check it; the core decides the verdict (seal included).

    Raises ``CheckError`` when the version cannot be checked (``TransientError``: retrying may help).
    Nothing is stored or published here.
    """
    from core.check import check_model_version

    started = time.monotonic()
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
                store: Store | None = None, publish: bool = True,
                alert_later: Later | None = None) -> dict[str, Any]:
    """Run one validation job end to end: claim it, validate, store the verdict, publish it.

    The body of the queue task and of the job entry point. Returns ``{"job_key", "state", "status"}``
    (state ``finished``, or why the job did not run: ``ignored``, ``done``, ``busy``, ``skipped``; see
    :mod:`listener.worker.admission`).
    Raises :class:`RetryLater` when the job should run again later (transient failure, publish failure,
    another check of the same version in progress, or the store unreachable for longer than its own
    write retries). ``publish=False`` stores the verdict without writing it onto the version. The verdict's
    alert (``GUARD_NOTIFY``) goes out after it is stored and published: through ``alert_later`` (the
    worker's queue), else from a background thread (:mod:`listener.alerts.deliver`).
    """
    try:
        return _run_job(request_dict, settings, adapter, store or get_store(settings.store_url), publish,
                        alert_later)
    except Exception as exc:
        if not database_unavailable(exc):
            raise
        # The store stayed down past its write retries: the job runs again later, it is never dropped.
        log.warning("job %s: store unavailable (%s); retrying in %.0fs", request_dict.get("delivery_key"),
                    short_reason(exc), STORE_WAIT_S)
        raise RetryLater(f"store unavailable: {short_reason(exc)}", delay=STORE_WAIT_S) from exc


def _run_job(request_dict: dict[str, Any], settings: Settings, adapter: RegistryAdapter | None,
             store: Store, publish: bool, alert_later: Later | None) -> dict[str, Any]:
    request = ValidationRequest.from_dict(request_dict)
    job_key = request.delivery_key
    adapter_error: str | None = None
    if adapter is None:
        try:
            adapter = get_adapter(request.registry, settings)
        except Exception as exc:  # noqa: BLE001 - becomes the verdict's reason
            adapter_error = f"cannot use the {request.registry} registry: {exc}"
    ui_url = adapter.version_url(request.model, request.version) if adapter else None
    with admitted(request, settings, store, ui_url) as admission:
        if not admission.runs:
            return {"job_key": job_key, "state": admission.state, "status": None}
        started = time.monotonic()
        claim, owner = admission.claim, admission.owner
        if claim.verdict is None:
            checked = _check(request, settings, adapter, adapter_error, store, owner, claim.attempts)
        else:  # checked before, not yet published
            checked = Checked(claim.verdict, None)
        verdict = alias_gate.enforce(checked.verdict, settings, adapter, store)
        # Stored once, as it will be published (with any alias the guard moved because of it).
        if claim.verdict is None or verdict is not claim.verdict:
            store.record_verdict(job_key, verdict, attempts=checked.attempts)
        if not publish:
            store.record_publish(job_key, ok=False, error=NOT_PUBLISHED, final=True)
            published = "NOT_PUBLISHED"
        else:
            published = _publish(verdict, checked.version, adapter, store, job_key, claim.publish_attempts,
                                 settings)
        log_outcome(verdict, published, time.monotonic() - started)
        after_verdict(verdict, settings, store, alert_later)
        return {"job_key": job_key, "state": "finished", "status": verdict.status}


def _check(request: ValidationRequest, settings: Settings, adapter: RegistryAdapter | None,
           adapter_error: str | None, store: Store, owner: str, attempts: int) -> Checked:
    """The verdict of a fresh check: the edge where a failure to check becomes a retry or an ERROR verdict.

    :class:`RetryLater` while a transient failure may still pass (the journal counts the attempt).
    """
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
        checked = _error(request, f"gave up after {attempts} attempts: {exc}", started)
    except CheckError as exc:
        checked = _error(request, str(exc), started)
    except Exception as exc:  # noqa: BLE001 - a bug or an unforeseen failure: a permanent ERROR with its reason
        log.exception("job %s: validation failed", request.delivery_key)
        checked = _error(request, f"internal error: {type(exc).__name__}: {exc}", started)
    checked.attempts = attempts
    metrics.record_validation(checked.verdict.status, checked.verdict.duration_s)
    return checked


def _error(request: ValidationRequest, reason: str, started: float) -> Checked:
    """The ERROR verdict of a job that could not check its version, for ``reason`` (user-facing)."""
    return Checked(Verdict.error_verdict(reason=reason, duration_s=time.monotonic() - started,
                                         **_fields(request)), None)


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
