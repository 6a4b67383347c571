"""When a version's creation check is already answered: its webhook job and the sweep's catch-up racing.

A version is created once, so the check its creation asks for (seal, then check) is wanted once. The
sweep cannot see a webhook job that still waits in the queue (it is journaled when a worker claims it),
so it may queue a catch-up for the same version; and a webhook can arrive late, after the sweep caught
its version up. The job claimed second is skipped: no second verdict is written onto the version.
"""

from __future__ import annotations

from core.status import FAILED, PASSED
from listener.protocol.events import SEAL_AND_CHECK
from listener.protocol.request import ValidationRequest, origin_of
from listener.store import FinishedCheck, Store


def answering_check(request: ValidationRequest, store: Store) -> FinishedCheck | None:
    """The verdict another job stored on the version that makes ``request`` redundant, or None: check it.

    Only creation checks from the queue are ever redundant, and only by a PASSED or FAILED verdict (an
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
