"""The event table: which registry event leads to which validation (docs/listener.md, "Routes and answers").

One table for the webhook parsers and the job entry point (``guard-job``), so the two cannot drift.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from core.registry.stages import canonical_stage
from listener.protocol.request import ValidationRequest, model_name, model_version

SEAL_AND_CHECK = "seal_and_check"
CHECK = "check"
# The trigger of a deliberate backfill's jobs (guard-sweep --backfill): versions older than the deployment,
# sealed as found. Their seal, tags and report say so, so nobody mistakes it for a registration-time seal.
BACKFILL_TRIGGER = "backfill"
FIRST_SIGHT_NOTE = "sealed on first sight (backfill)"
# Moving a version out of service needs no proof; gating it would block retiring a bad version.
UNGUARDED_STAGES = frozenset({"None", "Archived"})


@dataclass(frozen=True)
class EventRule:
    """What an event asks for: the action, whether a transition request is gated, where its stage is."""

    action: str
    gate: bool = False
    stage: str | None = None          # the stage named in the event itself (``..._TO_PRODUCTION``)
    stage_in_payload: bool = False    # the stage is the payload's ``to_stage``


_EXACT = {
    # open-source MLflow webhooks
    "model_version.created": EventRule(SEAL_AND_CHECK),
    "model_version_alias.created": EventRule(CHECK),
    # Databricks workspace registry webhooks
    "MODEL_VERSION_CREATED": EventRule(SEAL_AND_CHECK),
    "MODEL_VERSION_TRANSITIONED_STAGE": EventRule(CHECK, stage_in_payload=True),
    "TRANSITION_REQUEST_CREATED": EventRule(CHECK, gate=True, stage_in_payload=True),
}
# Only the job entry point sees these: Unity Catalog model update triggers and job runners saying a
# version became ready.
_JOB_ONLY = {
    "MODEL_VERSION_READY": EventRule(SEAL_AND_CHECK),
    "model_version_ready": EventRule(SEAL_AND_CHECK),
    "version_ready": EventRule(SEAL_AND_CHECK),
    "created": EventRule(SEAL_AND_CHECK),
    "ready": EventRule(SEAL_AND_CHECK),
    # A Unity Catalog trigger item with an ``alias_name``: the alias was set; check, keep the alias.
    "MODEL_VERSION_ALIAS_SET": EventRule(CHECK),
}
_TRANSITIONED_TO = re.compile(r"^MODEL_VERSION_TRANSITIONED_TO_([A-Z]+)$")
_REQUESTED_TO = re.compile(r"^TRANSITION_REQUEST_TO_([A-Z]+)_CREATED$")

# Genuine events that never trigger a validation, with the reason the listener answers.
IGNORED = {
    "MODEL_VERSION_TAG_SET": "MODEL_VERSION_TAG_SET does not trigger a validation (our own validation.* "
                             "tags included)",
    "COMMENT_CREATED": "COMMENT_CREATED does not trigger a validation (our own comments included)",
    "REGISTERED_MODEL_CREATED": "REGISTERED_MODEL_CREATED does not trigger a validation",
}


def rule_for(event: str) -> EventRule | None:
    """The rule of a webhook ``event``, or None for an event that triggers nothing.

    A ``..._TO_<STAGE>`` event names its stage; one that names no stage we know has no rule.
    """
    rule = _EXACT.get(event)
    if rule is not None:
        return rule
    for pattern, gate in ((_TRANSITIONED_TO, False), (_REQUESTED_TO, True)):
        match = pattern.match(event)
        if match:
            stage = canonical_stage(match.group(1))
            return EventRule(CHECK, gate=gate, stage=stage) if stage is not None else None
    return None


def skip_reason(event: str, stage: str | None) -> str | None:
    """Why ``event`` (moving to ``stage``) triggers nothing, or None when it does; both paths ask this."""
    if event in IGNORED:
        return IGNORED[event]
    if stage in UNGUARDED_STAGES:
        return f"{event} to {stage} does not need a validation"
    return None


def validation_request(rule: EventRule, *, registry: str, name: Any, version: Any, trigger: str,
                       to_stage: str | None, alias: str | None, delivery_key: str,
                       received_at: float) -> ValidationRequest:
    """The request a delivery's event asks for under ``rule``, for the model ``name`` ``version`` it names.

    Raises :class:`~listener.protocol.request.Rejected` (400) when the name or the version is not acceptable.
    """
    return ValidationRequest(registry=registry, model=model_name(name), version=model_version(version),
                             trigger=trigger, action=rule.action, to_stage=to_stage, alias=alias,
                             gate=rule.gate, delivery_key=delivery_key, received_at=float(received_at))


def job_rule(event: str) -> EventRule:
    """The rule the job entry point follows: the table's, else a plain check (a promotion, a manual run)."""
    return rule_for(event) or _JOB_ONLY.get(event) or EventRule(CHECK)


def webhook_events(registry: str) -> tuple[str, ...]:
    """The events of ``registry`` (``mlflow`` or ``databricks``) a webhook is subscribed to: the table's.

    MLflow names events ``entity.action``; Databricks in capitals. The ``..._TO_<STAGE>`` forms are left
    out: ``MODEL_VERSION_TRANSITIONED_STAGE`` and ``TRANSITION_REQUEST_CREATED`` already cover every stage.
    """
    return tuple(e for e in _EXACT if ("." in e) == (registry == "mlflow"))
