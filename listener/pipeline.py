"""One validation job, start to verdict: re-read the version, wait until it is ready, check, seal.

Only the model name and version are taken from the request; the registry contacted is always the one
configured in :class:`listener.config.Settings`, never a host, path or URI named in a payload.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from core.errors import CheckError, TransientError
from listener.registries import get_adapter
from listener.results import ResultsStore, owner_id
from listener.verdict import ERROR, FAILED, PASSED, Verdict
from listener.version_lock import NoLock, RedisVersionLock, version_lock

log = logging.getLogger(__name__)

READY = "READY"
PENDING = "PENDING_REGISTRATION"
FAILED_REGISTRATION = "FAILED_REGISTRATION"
DEFAULT_READY_TIMEOUT_S = 120.0


def _setting(settings: Any, name: str, env: str, default: float) -> float:
    value = getattr(settings, name, None)
    if value is None:
        value = os.environ.get(env) or default
    return float(value)


def version_status(mv: Any) -> str:
    """Normalised registration status of a ModelVersion-like object (MLflow string or SDK enum)."""
    status = getattr(mv, "status", None)
    if status is None:
        return READY
    status = getattr(status, "value", status)
    return str(status).rsplit(".", 1)[-1].upper()


def wait_until_ready(adapter: Any, model: str, version: str, timeout_s: float, poll_s: float = 0.5) -> Any:
    """Poll the version until it is READY; FAILED_REGISTRATION → CheckError; still pending → TransientError.

    A version still registering after ``timeout_s`` is retried later by the task rather than failed.
    """
    deadline = time.monotonic() + timeout_s
    delay = poll_s
    while True:
        mv = adapter.read_version(model, version)
        status = version_status(mv)
        if status == READY:
            return mv
        if status == FAILED_REGISTRATION:
            raise CheckError(f"{model} version {version} failed to register (status FAILED_REGISTRATION)")
        if status != PENDING:
            raise CheckError(f"{model} version {version} has an unknown status {status!r}")
        if time.monotonic() >= deadline:
            raise TransientError(
                f"{model} version {version} still PENDING_REGISTRATION after {timeout_s:.0f} s")
        time.sleep(min(delay, max(0.0, deadline - time.monotonic())))
        delay = min(delay * 1.5, 5.0)


def _request_fields(request: Any) -> dict[str, Any]:
    return {"model": request.model, "version": str(request.version), "registry": request.registry,
            "trigger": request.trigger, "action": request.action, "alias": request.alias,
            "to_stage": request.to_stage, "gate": bool(request.gate), "delivery_key": request.delivery_key}


def run_validation(request: Any, settings: Any, adapter: Any = None) -> Verdict:
    """Validate the version named by ``request`` against the configured registry and return the verdict.

    ``TransientError`` propagates (the caller retries later); any other failure becomes an ERROR verdict.
    Nothing is published here: the caller stores the verdict first, then publishes it.
    """
    from core.check import check_model_version

    started = time.monotonic()
    fields = _request_fields(request)
    try:
        if adapter is None:
            adapter = get_adapter(request.registry, settings)
        timeout = _setting(settings, "ready_timeout_s", "GUARD_READY_TIMEOUT", DEFAULT_READY_TIMEOUT_S)
        mv = wait_until_ready(adapter, request.model, str(request.version), timeout)
        # Sealing never overwrites an existing seal: a re-delivered "created" event must not bless
        # files that changed since the first one.
        if hasattr(adapter, "seal_of"):
            seal = adapter.seal_of(mv)
        else:
            seal = adapter.load_seal(request.model, str(request.version))
        scratch = os.path.join(str(settings.data_dir), "scratch")
        os.makedirs(scratch, exist_ok=True)
        result = check_model_version(request.model, str(request.version), tracking_uri=settings.tracking_uri,
                                     registry_uri=settings.registry_uri, download_dir=scratch, seal=seal,
                                     client=getattr(adapter, "client", None),
                                     exclude=getattr(settings, "exclude", ()))
    except TransientError:
        raise
    except (CheckError, ValueError) as exc:
        return Verdict.error_verdict(reason=str(exc), duration_s=time.monotonic() - started, **fields)

    if result.status == ERROR:
        reason = result.error or result.summary or "could not check"
        if getattr(result, "transient", False):
            raise TransientError(reason)
        return Verdict.error_verdict(reason=reason, duration_s=time.monotonic() - started, **fields)

    new_seal_json = None
    if seal is not None:
        seal_digest = seal.tree_digest
    elif result.manifest is not None:
        seal_digest = result.manifest.tree_digest
        new_seal_json = result.manifest.to_compact_json()
    else:
        seal_digest = None
    differences = [d.to_dict() for d in result.differences]
    seal_differences = [d.to_dict() for d in (result.seal_differences or [])]
    status = PASSED if result.status == PASSED and not differences and not seal_differences else FAILED
    summary = result.summary or (f"{len(differences) + len(seal_differences)} difference(s)"
                                 if status == FAILED else "identical")
    return Verdict(status=status, summary=summary, differences=differences, seal_differences=seal_differences,
                   seal_digest=seal_digest, duration_s=time.monotonic() - started,
                   new_seal_json=new_seal_json, **fields)


# ------------------------------------------------------------------------------------- one queued job

class RetryLater(Exception):
    """Run this job again in ``delay`` seconds (the queue's retry; the job entry point sleeps)."""

    def __init__(self, message: str, delay: float) -> None:
        super().__init__(message)
        self.delay = delay


HEARTBEAT_S = 5.0
LOCK_WAIT_S = 2.0


def _env_number(name: str, default: float) -> float:
    raw = os.environ.get(name)
    try:
        return float(raw) if raw else default
    except ValueError:
        log.warning("ignoring %s=%r: not a number", name, raw)
        return default


# Retry policy: transient failures wait 2, 4, 8, … seconds (capped), then the verdict is ERROR.
MAX_RETRIES = int(_env_number("GUARD_MAX_RETRIES", 6))
RETRY_BASE_S = _env_number("GUARD_RETRY_BASE_S", 2.0)
RETRY_MAX_S = _env_number("GUARD_RETRY_MAX_S", 60.0)


def results_path(settings: Any) -> Path:
    """Where the results store of ``settings`` lives (``<data_dir>/results.db``)."""
    return Path(settings.data_dir) / "results.db"


def retry_delay(attempt: int) -> float:
    """Seconds to wait before retry number ``attempt`` (1-based): exponential, capped."""
    return float(min(RETRY_MAX_S, RETRY_BASE_S * (2 ** max(0, attempt - 1))))


def _metric(name: str, *args: Any) -> None:
    # Metrics must never break a validation.
    try:
        from listener import metrics

        getattr(metrics, name)(*args)
    except Exception:  # noqa: BLE001
        log.debug("metric %s not recorded", name, exc_info=True)


@contextmanager
def _heartbeat(store: ResultsStore, job_key: str, owner: str,
               lock: NoLock | RedisVersionLock) -> Iterator[None]:
    stop = threading.Event()

    def beat() -> None:
        while not stop.wait(HEARTBEAT_S):
            try:
                store.heartbeat(job_key, owner)
                lock.refresh()
            except Exception:  # noqa: BLE001 - a missed beat only makes the job look stale sooner
                log.warning("heartbeat for %s failed", job_key, exc_info=True)

    thread = threading.Thread(target=beat, name=f"heartbeat-{job_key[:16]}", daemon=True)
    thread.start()
    try:
        yield
    finally:
        stop.set()
        thread.join(timeout=HEARTBEAT_S)


def _ui_url(adapter: Any, model: str, version: str) -> str | None:
    try:
        return adapter.version_url(model, version) if hasattr(adapter, "version_url") else None
    except Exception:  # noqa: BLE001
        return None


def process_job(request_dict: dict[str, Any], settings: Any, adapter: Any = None,
                store: ResultsStore | None = None) -> dict[str, Any]:
    """Run one validation job end to end: claim it, validate, store the verdict, publish it.

    The body of the queue task ``listener.tasks.validate_version`` and of ``python -m listener.job``.
    Returns ``{"job_key", "state", "status"}`` (state ``finished``, ``done`` or ``busy``). Raises
    :class:`RetryLater` when the job should run again later (transient failure, publish failure, or
    another check of the same version in progress); the caller decides how to wait.
    """
    from listener.events import ValidationRequest

    request = ValidationRequest.from_dict(request_dict)
    job_key = request.delivery_key
    store = store or ResultsStore(results_path(settings))
    adapter_error: str | None = None
    if adapter is None:
        try:
            adapter = get_adapter(request.registry, settings)
        except Exception as exc:  # noqa: BLE001 - becomes the verdict's reason
            adapter_error = f"cannot use the {request.registry} registry: {exc}"
    owner = owner_id()
    claim = store.claim(request.to_dict(), owner, job_key=job_key,
                        ui_url=_ui_url(adapter, request.model, request.version) if adapter else None)
    if claim.state in ("done", "busy"):
        log.info("job %s: %s, nothing to do", job_key, claim.state)
        return {"job_key": job_key, "state": claim.state, "status": None}
    if claim.state == "locked":
        log.info("job %s: another check of %s version %s is running; retrying in %ss",
                 job_key, request.model, request.version, LOCK_WAIT_S)
        raise RetryLater("version locked", delay=LOCK_WAIT_S)

    try:
        lock = version_lock(settings, request.registry, request.model, request.version)
        acquired = lock.acquire()
    except Exception as exc:  # noqa: BLE001 - the shared queue's Redis is down: the job waits, unclaimed
        store.release(job_key, owner)
        raise RetryLater(f"cannot take the version lock: {exc}", delay=retry_delay(1)) from exc
    if not acquired:
        store.release(job_key, owner)
        log.info("job %s: %s version %s is being checked on another host; retrying in %ss",
                 job_key, request.model, request.version, LOCK_WAIT_S)
        raise RetryLater("version locked on another host", delay=LOCK_WAIT_S)

    retry: RetryLater | None = None
    try:
        with _heartbeat(store, job_key, owner, lock):
            verdict = claim.verdict
            if verdict is None:
                verdict, retry = _validate(request, settings, adapter, adapter_error, store, owner,
                                           claim.attempts)
                if verdict is None:
                    raise retry  # type: ignore[misc]
            retry = _publish(verdict, adapter, store, job_key, claim.publish_attempts)
            if retry is not None:
                store.release(job_key, owner, retrying=True)
                raise retry
            return {"job_key": job_key, "state": "finished", "status": verdict.status}
    finally:
        # Always give the job up: a retry must be claimable again, even by this same process.
        store.release(job_key, owner)
        lock.release()


def _validate(request: Any, settings: Any, adapter: Any, adapter_error: str | None,
              store: ResultsStore, owner: str, attempts: int) -> tuple[Verdict | None, RetryLater | None]:
    """Check the version; returns (verdict, None) when decided or (None, RetryLater) to try later."""
    fields = {"model": request.model, "version": str(request.version), "registry": request.registry,
              "trigger": request.trigger, "action": request.action, "alias": request.alias,
              "to_stage": request.to_stage, "gate": bool(request.gate), "delivery_key": request.delivery_key}
    started = time.monotonic()
    if adapter_error is not None:
        verdict = Verdict.error_verdict(reason=adapter_error, **fields)
    else:
        try:
            verdict = run_validation(request, settings, adapter=adapter)
        except TransientError as exc:
            attempts += 1
            if attempts <= MAX_RETRIES:
                delay = retry_delay(attempts)
                log.warning("job %s: transient failure (attempt %d of %d), retrying in %.0fs: %s",
                            request.delivery_key, attempts, MAX_RETRIES + 1, delay, exc)
                store.release(request.delivery_key, owner, retrying=True, error=str(exc), attempts=attempts)
                return None, RetryLater(str(exc), delay=delay)
            verdict = Verdict.error_verdict(
                reason=f"gave up after {attempts} attempts: {exc}", duration_s=time.monotonic() - started,
                **fields)
        except Exception as exc:  # noqa: BLE001 - any other failure is a permanent ERROR with its reason
            log.exception("job %s: validation failed", request.delivery_key)
            reason = (str(exc) if isinstance(exc, CheckError)
                      else f"internal error: {type(exc).__name__}: {exc}")
            verdict = Verdict.error_verdict(reason=reason, duration_s=time.monotonic() - started, **fields)
    store.record_verdict(request.delivery_key, verdict, attempts=attempts)
    _metric("record_validation", verdict.status, verdict.duration_s)
    log.info("job %s: %s %s version %s: %s", request.delivery_key, verdict.status, request.model,
             request.version, verdict.summary)
    return verdict, None


def _publish(verdict: Verdict, adapter: Any, store: ResultsStore, job_key: str,
             publish_attempts: int) -> RetryLater | None:
    """Publish a stored verdict; returns a RetryLater when it should be tried again later."""
    if adapter is None:
        store.record_publish(job_key, ok=False, error="no registry adapter", final=True)
        _metric("record_publish_failure", verdict.registry)
        return None
    try:
        adapter.publish(verdict)
    except Exception as exc:  # noqa: BLE001 - recorded; retried when it may help
        attempt = publish_attempts + 1
        transient = isinstance(exc, TransientError) or not isinstance(exc, CheckError)
        final = not transient or attempt > MAX_RETRIES
        store.record_publish(job_key, ok=False, error=str(exc)[:2000], final=final)
        _metric("record_publish_failure", verdict.registry)
        if final:
            log.error("job %s: verdict %s stored but not published: %s", job_key, verdict.status, exc)
            return None
        delay = retry_delay(attempt)
        log.warning("job %s: publish failed (attempt %d), retrying in %.0fs: %s", job_key, attempt, delay,
                    exc)
        return RetryLater(f"publish failed: {exc}", delay=delay)
    store.record_publish(job_key, ok=True)
    return None


