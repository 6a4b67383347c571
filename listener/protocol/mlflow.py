"""Open-source MLflow webhook deliveries (``X-MLflow-Signature``): verify, then read the event; pure."""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import re
from collections.abc import Mapping, Sequence

from core.tags import TAG_PREFIX
from listener.protocol.events import rule_for, validation_request
from listener.protocol.request import (
    Ignored,
    Rejected,
    ValidationRequest,
    header,
    json_object,
    require_json_content_type,
)

MAX_ALIAS_LENGTH = 255         # MLflow's alias limit
MAX_EVENT_LENGTH = 100

_DELIVERY_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_-]{0,127}$")
_TIMESTAMP = re.compile(r"^[0-9]{1,12}$")
_ALIAS = re.compile(rf"^[A-Za-z0-9_-]{{1,{MAX_ALIAS_LENGTH}}}$")
_WORD = re.compile(rf"^[a-z][a-z0-9_]{{0,{MAX_EVENT_LENGTH}}}$")


def mlflow_signature(secret: str, delivery_id: str, timestamp: str, body: bytes) -> str:
    """The ``X-MLflow-Signature`` value MLflow sends: ``v1,`` + base64 HMAC-SHA256 of ``id.ts.body``."""
    message = f"{delivery_id}.{timestamp}.".encode() + body
    digest = hmac.new(secret.encode("utf-8"), message, hashlib.sha256).digest()
    return "v1," + base64.b64encode(digest).decode("ascii")


def _verified_delivery_id(headers: Mapping[str, str], body: bytes, secrets: Sequence[str], now: float,
                          tolerance_s: float, allow_unsigned: bool) -> str:
    """The delivery id once the headers and the signature are verified; :class:`Rejected` (401) if not."""
    delivery_id = header(headers, "X-MLflow-Delivery-Id")
    timestamp = header(headers, "X-MLflow-Timestamp")
    signature = header(headers, "X-MLflow-Signature")
    if not secrets and not allow_unsigned:
        raise Rejected(401, "no secret is configured for this route; deliveries are refused")
    if not delivery_id:
        raise Rejected(401, "missing X-MLflow-Delivery-Id header")
    if not _DELIVERY_ID.match(delivery_id):
        raise Rejected(401, "malformed X-MLflow-Delivery-Id header")
    if not timestamp:
        raise Rejected(401, "missing X-MLflow-Timestamp header")
    if not _TIMESTAMP.match(timestamp):
        raise Rejected(401, "malformed X-MLflow-Timestamp header")
    if abs(now - int(timestamp)) > tolerance_s:
        raise Rejected(401, "X-MLflow-Timestamp is outside the accepted tolerance")
    if not secrets:
        return delivery_id  # explicitly allowed unsigned route
    if not signature:
        raise Rejected(401, "missing X-MLflow-Signature header")
    # One "v1,<base64>" value; a space-separated list (several schemes or keys) is accepted too.
    candidates = signature.split()
    if len(signature) > 1000 or not candidates:
        raise Rejected(401, "malformed X-MLflow-Signature header")
    valid_v1 = []
    for candidate in candidates:
        if not candidate.startswith("v1,"):
            continue
        try:
            base64.b64decode(candidate[3:], validate=True)
        except (binascii.Error, ValueError):
            continue
        valid_v1.append(candidate)
    if not valid_v1:
        raise Rejected(401, "unsupported or malformed X-MLflow-Signature header")
    expected = [mlflow_signature(s, delivery_id, timestamp, body) for s in secrets]
    ok = False
    for candidate in valid_v1:
        for value in expected:
            # No short-circuit: timing does not tell which secret or signature matched.
            ok |= hmac.compare_digest(value, candidate)
    if not ok:
        raise Rejected(401, "invalid signature")
    return delivery_id


def parse_mlflow_delivery(headers: Mapping[str, str], body: bytes, secrets: Sequence[str], now: float,
                          tolerance_s: float = 300, allow_unsigned: bool = False) -> ValidationRequest:
    """Verify and interpret one open-source MLflow webhook delivery: the request to enqueue.

    Raises :class:`Rejected` or :class:`Ignored`. ``allow_unsigned`` only has an effect when ``secrets``
    is empty (the route was opened explicitly).
    """
    require_json_content_type(headers)
    delivery_id = _verified_delivery_id(headers, body, secrets, now, tolerance_s, allow_unsigned)
    payload = json_object(body)
    entity, action, data = payload.get("entity"), payload.get("action"), payload.get("data")
    if not isinstance(entity, str) or not isinstance(action, str):
        raise Rejected(400, "entity and action must be strings")
    if not _WORD.match(entity) or not _WORD.match(action):
        raise Rejected(400, "entity or action is not a valid event name")
    if not isinstance(data, dict):
        raise Rejected(400, "data must be a JSON object")
    event = f"{entity}.{action}"
    rule = rule_for(event)
    if rule is None:
        key = data.get("key")
        if entity == "model_version_tag" and isinstance(key, str) and key.startswith(TAG_PREFIX):
            raise Ignored(f"{event} for our own validation.* tag")
        raise Ignored(f"{event} does not trigger a validation")
    alias = None
    if event == "model_version_alias.created":
        alias = data.get("alias")
        if not isinstance(alias, str) or not _ALIAS.match(alias):
            raise Rejected(400, "alias must be a string of letters, digits, '_' or '-'")
    return validation_request(rule, registry="mlflow", name=data.get("name"), version=data.get("version"),
                              trigger=event, to_stage=None, alias=alias, delivery_key=delivery_id,
                              received_at=now)
