"""Verify and parse webhook deliveries: pure functions of (headers, raw body, secrets, now), no I/O.

Each parser answers with a :class:`Decision`: the HTTP status and JSON body to send, and the
:class:`ValidationRequest` to enqueue when (and only when) the status is 202. Only the model name, the
version and a few event attributes are taken from a payload; hosts, paths and URIs in it are never used.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
import math
import re
import unicodedata
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

MAX_NAME_LENGTH = 256          # MLflow's registered model name column is VARCHAR(256)
MAX_ALIAS_LENGTH = 255         # MLflow's alias limit
MAX_VERSION_DIGITS = 10
MAX_EVENT_LENGTH = 100

_DELIVERY_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_-]{0,127}$")
_TIMESTAMP = re.compile(r"^[0-9]{1,12}$")
_VERSION = re.compile(rf"^[0-9]{{1,{MAX_VERSION_DIGITS}}}$")
_ALIAS = re.compile(rf"^[A-Za-z0-9_-]{{1,{MAX_ALIAS_LENGTH}}}$")
_MLFLOW_WORD = re.compile(rf"^[a-z][a-z0-9_]{{0,{MAX_EVENT_LENGTH}}}$")
_DATABRICKS_EVENT = re.compile(rf"^[A-Z][A-Z0-9_]{{0,{MAX_EVENT_LENGTH}}}$")
_HEX_SHA256 = re.compile(r"^[0-9a-f]{64}$")
# Bidirectional overrides can make a name render as something else in the UI.
_BIDI = {chr(c) for c in (*range(0x202A, 0x202F), *range(0x2066, 0x206A), 0x200E, 0x200F)}
_STAGES = {"none": "None", "staging": "Staging", "production": "Production", "archived": "Archived"}

ValidationAction = str  # "seal_and_check" | "check"


@dataclass(frozen=True)
class ValidationRequest:
    """One model version to validate, as stored in the queue."""

    registry: str                 # "mlflow" | "databricks"
    model: str
    version: str
    trigger: str                  # event name, e.g. "model_version.created", "TRANSITION_REQUEST_CREATED"
    action: str                   # "seal_and_check" | "check"
    to_stage: str | None
    alias: str | None
    gate: bool                    # a Databricks transition request (approve/reject it when gating is on)
    delivery_key: str             # MLflow delivery id / "databricks:" + sha256(raw body)
    received_at: float

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-able dict (what the queue stores).

        Written out rather than ``dataclasses.asdict``: every field is an immutable scalar, so asdict's
        recursive deep copy buys nothing and costs more than the rest of building the job. A test keeps
        this list in step with the fields.
        """
        return {"registry": self.registry, "model": self.model, "version": self.version,
                "trigger": self.trigger, "action": self.action, "to_stage": self.to_stage,
                "alias": self.alias, "gate": self.gate, "delivery_key": self.delivery_key,
                "received_at": self.received_at}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> ValidationRequest:
        """Inverse of :meth:`to_dict`; unknown keys are ignored so stored jobs survive additions."""
        names = cls.__dataclass_fields__.keys()
        return cls(**{k: data[k] for k in names if k in data})


@dataclass(frozen=True)
class Decision:
    """What to answer a delivery with, and what to enqueue (only for status 202)."""

    status_code: int
    body: dict[str, Any]
    request: ValidationRequest | None = None


def _reject(code: int, reason: str) -> Decision:
    return Decision(code, {"status": "rejected", "reason": reason})


def _ignored(reason: str) -> Decision:
    return Decision(200, {"status": "ignored", "reason": reason})


def _header(headers: Mapping[str, str], name: str) -> str | None:
    """Case-insensitive header lookup that works for plain dicts and werkzeug Headers alike."""
    value = headers.get(name)
    if value is None:
        lowered = name.lower()
        for key, val in headers.items():
            if key.lower() == lowered:
                return val
        return None
    return value


def _is_json_content_type(headers: Mapping[str, str]) -> bool:
    value = _header(headers, "Content-Type")
    if not value:
        return False
    mime = value.split(";", 1)[0].strip().lower()
    return mime == "application/json" or (mime.startswith("application/") and mime.endswith("+json"))


def _hostile_text_reason(value: str, what: str, max_length: int) -> str | None:
    """Why ``value`` cannot be a name we pass on, or None when it is acceptable."""
    if not value or not value.strip():
        return f"{what} is empty"
    if len(value) > max_length:
        return f"{what} is longer than {max_length} characters"
    for ch in value:
        if ch in _BIDI or unicodedata.category(ch) in ("Cc", "Cs", "Zl", "Zp"):
            return f"{what} contains control characters"
    return None


def check_model_name(name: Any) -> str | None:
    """Why ``name`` is not an acceptable model name (None if it is): MLflow's rules, plus no controls."""
    if not isinstance(name, str):
        return "model name must be a string"
    reason = _hostile_text_reason(name, "model name", MAX_NAME_LENGTH)
    if reason:
        return reason
    if "/" in name or ":" in name:
        return "model name must not contain '/' or ':'"
    if name in (".", "..") or name != name.strip():
        return "model name is not a valid registered model name"
    return None


def _check_version(version: Any) -> tuple[str | None, str | None]:
    """(normalised version, reason): versions arrive as strings of digits; ints are tolerated."""
    if isinstance(version, bool):
        return None, "version must be a string of digits"
    if isinstance(version, int):
        version = str(version)
    if not isinstance(version, str):
        return None, "version must be a string of digits"
    if not _VERSION.match(version) or int(version) < 1:
        return None, "version must be a positive number of at most 10 digits"
    return str(int(version)), None


def _parse_json_object(body: bytes) -> tuple[dict[str, Any] | None, str | None]:
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError:
        return None, "body is not UTF-8"
    try:
        payload = _JSON_DECODER.decode(text)
    except (ValueError, RecursionError):
        return None, "body is not valid JSON"
    if not isinstance(payload, dict):
        return None, "body must be a JSON object"
    return payload, None


def _reject_constant(name: str) -> Any:
    # NaN / Infinity are not JSON; Python accepts them unless told otherwise.
    raise ValueError(f"{name} is not valid JSON")


# One decoder for every delivery: ``json.loads`` with any keyword builds a new JSONDecoder on each call.
# (A UTF-8 BOM is refused either way: ``decode`` does not skip it, so the body is not valid JSON.)
_JSON_DECODER = json.JSONDecoder(parse_constant=_reject_constant)


def _matches_any(expected_for: Any, given: str, secrets: Sequence[str]) -> bool:
    """Constant-time comparison against each configured secret (a list means rotation)."""
    ok = False
    for secret in secrets:
        # No short-circuit: every secret is tried, so timing does not tell which one matched.
        ok |= hmac.compare_digest(expected_for(secret), given)
    return ok


# ----------------------------------------------------------------------------------------------- MLflow

def mlflow_signature(secret: str, delivery_id: str, timestamp: str, body: bytes) -> str:
    """The ``X-MLflow-Signature`` value MLflow sends: ``v1,`` + base64 HMAC-SHA256 of ``id.ts.body``."""
    message = f"{delivery_id}.{timestamp}.".encode() + body
    digest = hmac.new(secret.encode("utf-8"), message, hashlib.sha256).digest()
    return "v1," + base64.b64encode(digest).decode("ascii")


def _mlflow_auth(headers: Mapping[str, str], body: bytes, secrets: Sequence[str], now: float,
                 tolerance_s: float, allow_unsigned: bool) -> tuple[str | None, Decision | None]:
    delivery_id = _header(headers, "X-MLflow-Delivery-Id")
    timestamp = _header(headers, "X-MLflow-Timestamp")
    signature = _header(headers, "X-MLflow-Signature")
    if not secrets and not allow_unsigned:
        return None, _reject(401, "no secret is configured for this route; deliveries are refused")
    if not delivery_id:
        return None, _reject(401, "missing X-MLflow-Delivery-Id header")
    if not _DELIVERY_ID.match(delivery_id):
        return None, _reject(401, "malformed X-MLflow-Delivery-Id header")
    if not timestamp:
        return None, _reject(401, "missing X-MLflow-Timestamp header")
    if not _TIMESTAMP.match(timestamp):
        return None, _reject(401, "malformed X-MLflow-Timestamp header")
    if abs(now - int(timestamp)) > tolerance_s:
        return None, _reject(401, "X-MLflow-Timestamp is outside the accepted tolerance")
    if not secrets:
        return delivery_id, None  # explicitly allowed unsigned route
    if not signature:
        return None, _reject(401, "missing X-MLflow-Signature header")
    # One "v1,<base64>" value; a space-separated list (several schemes or keys) is accepted too.
    candidates = signature.split()
    if len(signature) > 1000 or not candidates:
        return None, _reject(401, "malformed X-MLflow-Signature header")
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
        return None, _reject(401, "unsupported or malformed X-MLflow-Signature header")
    expected = [mlflow_signature(s, delivery_id, timestamp, body) for s in secrets]
    ok = False
    for candidate in valid_v1:
        for value in expected:
            # No short-circuit: timing does not tell which secret or signature matched.
            ok |= hmac.compare_digest(value, candidate)
    if not ok:
        return None, _reject(401, "invalid signature")
    return delivery_id, None


def parse_mlflow_delivery(headers: Mapping[str, str], body: bytes, secrets: Sequence[str], now: float,
                          tolerance_s: float = 300, allow_unsigned: bool = False) -> Decision:
    """Verify and interpret one open-source MLflow webhook delivery.

    ``allow_unsigned`` only has an effect when ``secrets`` is empty (the route was opened explicitly).
    """
    if not _is_json_content_type(headers):
        return _reject(415, "Content-Type must be application/json")
    delivery_id, failure = _mlflow_auth(headers, body, secrets, now, tolerance_s, allow_unsigned)
    if failure is not None:
        return failure
    assert delivery_id is not None
    payload, reason = _parse_json_object(body)
    if payload is None:
        return _reject(400, reason or "malformed body")
    entity, action, data = payload.get("entity"), payload.get("action"), payload.get("data")
    if not isinstance(entity, str) or not isinstance(action, str):
        return _reject(400, "entity and action must be strings")
    if not _MLFLOW_WORD.match(entity) or not _MLFLOW_WORD.match(action):
        return _reject(400, "entity or action is not a valid event name")
    if not isinstance(data, dict):
        return _reject(400, "data must be a JSON object")
    event = f"{entity}.{action}"
    if event == "model_version.created":
        return _mlflow_request(event, "seal_and_check", data, delivery_id, now, alias=None)
    if event == "model_version_alias.created":
        alias = data.get("alias")
        if not isinstance(alias, str) or not _ALIAS.match(alias):
            return _reject(400, "alias must be a string of letters, digits, '_' or '-'")
        return _mlflow_request(event, "check", data, delivery_id, now, alias=alias)
    if entity == "model_version_tag":
        key = data.get("key")
        if isinstance(key, str) and key.startswith("validation."):
            return _ignored(f"{event} for our own validation.* tag")
    return _ignored(f"{event} does not trigger a validation")


def _mlflow_request(event: str, action: str, data: dict[str, Any], delivery_id: str, now: float,
                    alias: str | None) -> Decision:
    name = data.get("name")
    reason = check_model_name(name)
    if reason:
        return _reject(400, reason)
    version, reason = _check_version(data.get("version"))
    if reason:
        return _reject(400, reason)
    assert isinstance(name, str) and version is not None
    request = ValidationRequest(registry="mlflow", model=name, version=version, trigger=event, action=action,
                                to_stage=None, alias=alias, gate=False, delivery_key=delivery_id,
                                received_at=float(now))
    return Decision(202, {"status": "queued", "id": None}, request)


# ------------------------------------------------------------------------------------------- Databricks

def databricks_signature(secret: str, body: bytes) -> str:
    """The ``X-Databricks-Signature`` value: lowercase hex HMAC-SHA256 of the raw body."""
    return hmac.new(secret.encode("utf-8"), body, hashlib.sha256).hexdigest()


_DATABRICKS_SEAL = {"MODEL_VERSION_CREATED"}
_DATABRICKS_TRANSITIONED = re.compile(r"^MODEL_VERSION_TRANSITIONED_(?:STAGE|TO_([A-Z]+))$")
_DATABRICKS_REQUESTED = re.compile(r"^TRANSITION_REQUEST_(?:CREATED|TO_([A-Z]+)_CREATED)$")
_DATABRICKS_KNOWN_IGNORED = {
    "COMMENT_CREATED", "MODEL_VERSION_TAG_SET", "REGISTERED_MODEL_CREATED",
}
# Moving a version out of service needs no proof; gating it would block retiring a bad version.
_UNGUARDED_STAGES = {"None", "Archived"}


def _normalise_stage(value: Any) -> str | None:
    if isinstance(value, str):
        return _STAGES.get(value.strip().lower())
    return None


def parse_databricks_delivery(headers: Mapping[str, str], body: bytes, secrets: Sequence[str], now: float,
                              tolerance_s: float = 300, authorization: str | None = None,
                              allow_unsigned: bool = False) -> Decision:
    """Verify and interpret one Databricks workspace registry webhook delivery.

    ``authorization``, when configured, must equal the delivery's ``Authorization`` header exactly.
    ``allow_unsigned`` only has an effect when ``secrets`` is empty.
    """
    if not _is_json_content_type(headers):
        return _reject(415, "Content-Type must be application/json")
    if not secrets and not allow_unsigned:
        return _reject(401, "no secret is configured for this route; deliveries are refused")
    if authorization is not None:
        given = _header(headers, "Authorization") or ""
        if not hmac.compare_digest(given.encode("utf-8", "replace"), authorization.encode("utf-8")):
            return _reject(401, "missing or wrong Authorization header")
    if secrets:
        signature = _header(headers, "X-Databricks-Signature")
        if not signature:
            return _reject(401, "missing X-Databricks-Signature header")
        if not _HEX_SHA256.match(signature):
            return _reject(401, "malformed X-Databricks-Signature header")
        if not _matches_any(lambda s: databricks_signature(s, body), signature, secrets):
            return _reject(401, "invalid signature")
    payload, reason = _parse_json_object(body)
    if payload is None:
        return _reject(400, reason or "malformed body")
    stamp = payload.get("event_timestamp")
    if isinstance(stamp, bool) or not isinstance(stamp, (int, float)) or not math.isfinite(stamp):
        return _reject(400, "event_timestamp must be a number (epoch milliseconds)")
    if abs(now - stamp / 1000.0) > tolerance_s:
        return _reject(401, "event_timestamp is outside the accepted tolerance")
    event = payload.get("event")
    if not isinstance(event, str):
        return _reject(400, "event must be a string")
    if not _DATABRICKS_EVENT.match(event):
        return _reject(400, "event is not a valid event name")
    delivery_key = "databricks:" + hashlib.sha256(body).hexdigest()

    if event in _DATABRICKS_SEAL:
        return _databricks_request(payload, event, "seal_and_check", None, False, delivery_key, now)
    for pattern, gate in ((_DATABRICKS_TRANSITIONED, False), (_DATABRICKS_REQUESTED, True)):
        match = pattern.match(event)
        if not match:
            continue
        named = match.group(1)
        if named is not None:
            stage = _normalise_stage(named)
            if stage is None:
                return _ignored(f"{event} names no stage we guard")
        else:
            stage = _normalise_stage(payload.get("to_stage"))
            if stage is None:
                return _reject(400, "to_stage must be one of None, Staging, Production, Archived")
        if stage in _UNGUARDED_STAGES:
            return _ignored(f"{event} to {stage} does not need a validation")
        return _databricks_request(payload, event, "check", stage, gate, delivery_key, now)
    if event == "MODEL_VERSION_TAG_SET":
        return _ignored("MODEL_VERSION_TAG_SET does not trigger a validation (our own validation.* tags "
                        "included)")
    if event == "COMMENT_CREATED":
        return _ignored("COMMENT_CREATED does not trigger a validation (our own comments included)")
    if event in _DATABRICKS_KNOWN_IGNORED:
        return _ignored(f"{event} does not trigger a validation")
    return _ignored(f"{event} is not an event this listener acts on")


def _databricks_request(payload: dict[str, Any], event: str, action: str, stage: str | None, gate: bool,
                        delivery_key: str, now: float) -> Decision:
    name = payload.get("model_name")
    reason = check_model_name(name)
    if reason:
        return _reject(400, reason)
    version, reason = _check_version(payload.get("version"))
    if reason:
        return _reject(400, reason)
    assert isinstance(name, str) and version is not None
    request = ValidationRequest(registry="databricks", model=name, version=version, trigger=event,
                                action=action, to_stage=stage, alias=None, gate=gate,
                                delivery_key=delivery_key, received_at=float(now))
    return Decision(202, {"status": "queued", "id": None}, request)
