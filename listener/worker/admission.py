"""Whether a job runs, and why not: decided once per job, in one place.

A job does not run when it is

- an **echo** of the guard's own change: its own approval of a Databricks transition request, or its own
  move of a protected alias (answered ``ignored``);
- a **duplicate**: the job is finished already (published, or skipped), or a live worker is on it
  (``done`` / ``busy``);
- **redundant**: a creation check another job already answered (``skipped``, see :func:`answering_check`).

Every other job runs, held by its worker (claimed in the journal, its model version locked) until it
leaves. "Not now" is not a refusal: while another check of the same version runs, :class:`RetryLater`.

Where each is decided. Events the event table does not act on are ignored by the protocol parsers (pure,
:mod:`listener.protocol.events`). A delivery the queue already took is a duplicate at intake
(:func:`listener.intake.submit`, atomic with the enqueue). The echo of an own approval is answered by
the web layer with this module's :func:`own_approval_echo` before anything is queued, so the workspace's
delivery log shows it ``ignored`` and no job exists for it; the same function serves jobs that never
passed the web layer (the job entry point). Everything else is :func:`admitted`, once per job.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

from huey.exceptions import RetryTask

from core.status import FAILED, PASSED
from listener import metrics
from listener.config import Settings
from listener.protocol.events import SEAL_AND_CHECK
from listener.protocol.request import ValidationRequest, origin_of
from listener.store import Claim, FinishedCheck, Store, get_store, owner_id
from listener.worker import alias_gate
from listener.worker.version_lock import kept_alive, version_lock

log = logging.getLogger(__name__)

# Why a job does not run (the label of ``guard_admissions_total``; RUN when it does).
RUN, ECHO, DUPLICATE, REDUNDANT = "run", "echo", "duplicate", "redundant"
LOCK_WAIT_S = 2.0
OWN_APPROVAL_EVENT = "MODEL_VERSION_TRANSITIONED_STAGE"


class RetryLater(RetryTask):
    """Run this job again in ``delay`` seconds: the queue reschedules it as it is, the job entry point sleeps.

    A huey ``RetryTask``, so it travels up to the queue unchanged; the attempt budget lives in the journal.
    """

    def __init__(self, message: str, delay: float) -> None:
        super().__init__(message, delay=delay)
        self.delay = delay


@dataclass(frozen=True)
class Admission:
    """What :func:`admitted` decided: ``why`` (RUN, or why not), the job's state; its claim when it runs."""

    why: str
    state: str
    reason: str = ""
    claim: Claim | None = None
    owner: str = ""

    @property
    def runs(self) -> bool:
        """True when the job runs (this worker holds it)."""
        return self.why == RUN


def claim_own_approval(settings: Settings, request: ValidationRequest) -> bool:
    """True (once) when the guard itself approved the transition ``request`` reports."""
    return get_store(settings.store_url).claim_own_approval(request.registry, request.model, request.version,
                                                            request.to_stage)


def own_approval_echo(request: ValidationRequest, settings: Settings) -> str | None:
    """Why ``request`` is the echo of the guard's own approval of a transition request, or None.

    Approving makes the workspace fire a transition event for a version validated a moment ago; validating
    it again would post a second comment. The record is claimed, so only that one event is the echo.
    """
    if request.trigger != OWN_APPROVAL_EVENT or not claim_own_approval(settings, request):
        return None
    return (f"{request.model} version {request.version} moved to {request.to_stage} by the guard's own "
            "approval: it was validated just before")


def answering_check(request: ValidationRequest, store: Store) -> FinishedCheck | None:
    """The verdict another job stored on the version that makes ``request`` redundant, or None: check it.

    A version is created once, so the check its creation asks for is wanted once; but the sweep cannot see
    a webhook job still waiting in the queue, and a webhook can arrive after the sweep caught its version
    up. Only creation checks from the queue are ever redundant, and only by a PASSED or FAILED verdict (an
    ERROR could not check: another attempt is worth it):

    - a catch-up, by any such verdict: it is for versions nobody checked;
    - a webhook's, by a creation check that is a catch-up (the event was caught up before its delivery
      came) or that was stored after this job was queued (the two waited in the queue together).

    A creation event sent again once a verdict is out is checked again. Alias and stage events,
    transition requests, re-verifications and the job entry point (it reports its own verdict) are
    always checked.
    """
    if request.action != SEAL_AND_CHECK or request.origin == "job":
        return None
    for check in store.finished_checks(request.registry, request.model, request.version,
                                       excluding=request.delivery_key):
        if check.status not in (PASSED, FAILED):
            continue
        if request.origin == "sweep":
            return check
        if check.action == SEAL_AND_CHECK and (origin_of(check.job_key) == "sweep"
                                               or check.finished_at > request.received_at):
            return check
    return None


def _decided(admission: Admission, request: ValidationRequest) -> Admission:
    metrics.record_admission(admission.why)
    if not admission.runs:
        log.info("job %s (%s version %s): %s", request.delivery_key, request.model, request.version,
                 admission.reason)
    return admission


@contextmanager
def admitted(request: ValidationRequest, settings: Settings, store: Store,
             ui_url: str | None = None) -> Iterator[Admission]:
    """Decide whether ``request``'s job runs (see the module docstring), and hold it while it does.

    Yields one :class:`Admission`. When it runs, the job is claimed for this process and its model version
    locked until the block ends (heartbeats keep both alive); both are given up however the block ends.
    Raises :class:`RetryLater` while another check of the version holds it, here or on another host.
    """
    job_key = request.delivery_key
    echo = own_approval_echo(request, settings) if request.origin != "webhook" else None
    if echo is None and alias_gate.observe_event(request, store):
        echo = f"@{request.alias} on version {request.version} is the guard's own change"
    if echo is not None:
        yield _decided(Admission(ECHO, "ignored", echo), request)
        return
    owner = owner_id()
    claim = store.claim(request.to_dict(), owner, job_key=job_key, ui_url=ui_url)
    if claim.state in ("done", "busy"):
        yield _decided(Admission(DUPLICATE, claim.state, f"{claim.state}, nothing to do"), request)
        return
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
    try:
        # Decided with the job claimed and the version locked: no other check of it can finish meanwhile.
        answer = answering_check(request, store) if claim.verdict is None else None
        if answer is not None:
            store.record_skipped(job_key, owner, answer)
            yield _decided(Admission(REDUNDANT, "skipped", f"already checked by job {answer.job_key}"),
                           request)
            return
        with kept_alive(lock, store, job_key, owner):
            yield _decided(Admission(RUN, "run", claim=claim, owner=owner), request)
    finally:
        # Always give the job up: a retry must be claimable again, even by this same process.
        store.release(job_key, owner)
        lock.release()
