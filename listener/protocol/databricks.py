"""Databricks workspace registry webhook deliveries (``X-Databricks-Signature``): verify, read; pure."""

from __future__ import annotations

import hashlib
import hmac
import math
import re
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

from core.registry.stages import canonical_stage
from listener.protocol.events import IGNORED, rule_for, skip_reason, validation_request
from listener.protocol.request import (
    Ignored,
    Rejected,
    header,
    json_object,
    require_json_content_type,
)

if TYPE_CHECKING:  # annotations only: the request is built by the event table
    from listener.protocol.request import ValidationRequest

MAX_EVENT_LENGTH = 100
_EVENT = re.compile(rf"^[A-Z][A-Z0-9_]{{0,{MAX_EVENT_LENGTH}}}$")
_HEX_SHA256 = re.compile(r"^[0-9a-f]{64}$")


def databricks_signature(secret: str, body: bytes) -> str:
    """The ``X-Databricks-Signature`` value: lowercase hex HMAC-SHA256 of the raw body."""
    return hmac.new(secret.encode("utf-8"), body, hashlib.sha256).hexdigest()


def _verify(headers: Mapping[str, str], body: bytes, secrets: Sequence[str], authorization: str | None,
            allow_unsigned: bool) -> None:
    if not secrets and not allow_unsigned:
        raise Rejected(401, "no secret is configured for this route; deliveries are refused")
    if authorization is not None:
        given = header(headers, "Authorization") or ""
        if not hmac.compare_digest(given.encode("utf-8", "replace"), authorization.encode("utf-8")):
            raise Rejected(401, "missing or wrong Authorization header")
    if not secrets:
        return
    signature = header(headers, "X-Databricks-Signature")
    if not signature:
        raise Rejected(401, "missing X-Databricks-Signature header")
    if not _HEX_SHA256.match(signature):
        raise Rejected(401, "malformed X-Databricks-Signature header")
    ok = False
    for secret in secrets:
        # No short-circuit: every secret is tried, so timing does not tell which one matched.
        ok |= hmac.compare_digest(databricks_signature(secret, body), signature)
    if not ok:
        raise Rejected(401, "invalid signature")


def _stage(named: str | None, in_payload: bool, payload: dict[str, Any]) -> str | None:
    if not in_payload:
        return named
    stage = canonical_stage(payload.get("to_stage"))
    if stage is None:
        raise Rejected(400, "to_stage must be one of None, Staging, Production, Archived")
    return stage


def parse_databricks_delivery(headers: Mapping[str, str], body: bytes, secrets: Sequence[str], now: float,
                              tolerance_s: float = 300, authorization: str | None = None,
                              allow_unsigned: bool = False) -> ValidationRequest:
    """Verify and interpret one Databricks workspace registry webhook delivery: the request to enqueue.

    Raises :class:`Rejected` or :class:`Ignored`. ``authorization``, when configured, must equal the
    delivery's ``Authorization`` header exactly. ``allow_unsigned`` only has an effect when ``secrets``
    is empty.
    """
    require_json_content_type(headers)
    _verify(headers, body, secrets, authorization, allow_unsigned)
    payload = json_object(body)
    stamp = payload.get("event_timestamp")
    if isinstance(stamp, bool) or not isinstance(stamp, (int, float)) or not math.isfinite(stamp):
        raise Rejected(400, "event_timestamp must be a number (epoch milliseconds)")
    if abs(now - stamp / 1000.0) > tolerance_s:
        raise Rejected(401, "event_timestamp is outside the accepted tolerance")
    event = payload.get("event")
    if not isinstance(event, str):
        raise Rejected(400, "event must be a string")
    if not _EVENT.match(event):
        raise Rejected(400, "event is not a valid event name")
    rule = rule_for(event)
    if rule is None:
        if event in IGNORED:
            raise Ignored(IGNORED[event])
        if event.startswith(("MODEL_VERSION_TRANSITIONED_TO_", "TRANSITION_REQUEST_TO_")):
            raise Ignored(f"{event} names no stage we guard")
        raise Ignored(f"{event} is not an event this listener acts on")
    stage = _stage(rule.stage, rule.stage_in_payload, payload)
    reason = skip_reason(event, stage)
    if reason:
        raise Ignored(reason)
    return validation_request(rule, registry="databricks", name=payload.get("model_name"),
                              version=payload.get("version"), trigger=event, to_stage=stage, alias=None,
                              delivery_key="databricks:" + hashlib.sha256(body).hexdigest(), received_at=now)
