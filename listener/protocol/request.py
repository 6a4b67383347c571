"""What every delivery parser shares: the validation request, typed refusals, name and body checks.

Pure functions, no I/O. A parser returns the :class:`ValidationRequest` to enqueue, or raises
:class:`Rejected` (a 4xx answer) or :class:`Ignored` (a genuine event we do not act on, 200); the web
layer turns those into HTTP answers in one place.
"""

from __future__ import annotations

import json
import re
import unicodedata
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

MAX_NAME_LENGTH = 256          # MLflow's registered model name column is VARCHAR(256)
MAX_VERSION_DIGITS = 10

_VERSION = re.compile(rf"^[0-9]{{1,{MAX_VERSION_DIGITS}}}$")
# Every Unicode bidirectional formatting character (UAX #9: the embeddings and overrides LRE..RLO, the
# isolates LRI..PDI, and the implicit marks LRM, RLM and ALM): each can make a name render as another.
BIDI_CONTROLS = frozenset(chr(c) for c in (0x061C, 0x200E, 0x200F, *range(0x202A, 0x202F),
                                           *range(0x2066, 0x206A)))


class Rejected(Exception):
    """The delivery is refused: ``status_code`` (400, 401, 413, 415) and a reason for the sender."""

    def __init__(self, status_code: int, reason: str) -> None:
        super().__init__(reason)
        self.status_code = status_code
        self.reason = reason

    @property
    def body(self) -> dict[str, Any]:
        """The JSON answer."""
        return {"status": "rejected", "reason": self.reason}


class Ignored(Exception):
    """A genuine, verified event that triggers no validation (answered 200)."""

    status_code = 200

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason

    @property
    def body(self) -> dict[str, Any]:
        """The JSON answer."""
        return {"status": "ignored", "reason": self.reason}


# Keys of jobs no webhook delivered start with their origin. A webhook's key never does: an MLflow delivery
# id has no colon, and a Databricks key starts with "databricks:".
SWEEP_KEY_PREFIX = "sweep:"
JOB_KEY_PREFIX = "job:"


def origin_of(delivery_key: str) -> str:
    """Who asked for the job with this key: ``sweep`` (catch-up, re-verification), ``job`` (the job entry
    point) or ``webhook``."""
    if delivery_key.startswith(SWEEP_KEY_PREFIX):
        return "sweep"
    return "job" if delivery_key.startswith(JOB_KEY_PREFIX) else "webhook"


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
    delivery_key: str             # MLflow delivery id, "databricks:" + sha256(raw body), "sweep:…", "job:…"
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

    @property
    def origin(self) -> str:
        """Who asked for this job: see :func:`origin_of`."""
        return origin_of(self.delivery_key)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> ValidationRequest:
        """Inverse of :meth:`to_dict`; unknown keys are ignored so stored jobs survive additions."""
        names = cls.__dataclass_fields__.keys()
        return cls(**{k: data[k] for k in names if k in data})


def header(headers: Mapping[str, str], name: str) -> str | None:
    """Case-insensitive header lookup that works for plain dicts and werkzeug Headers alike."""
    value = headers.get(name)
    if value is None:
        lowered = name.lower()
        for key, val in headers.items():
            if key.lower() == lowered:
                return val
        return None
    return value


def require_json_content_type(headers: Mapping[str, str]) -> None:
    """Raise 415 unless the Content-Type is JSON (``application/json`` or ``application/*+json``)."""
    value = header(headers, "Content-Type")
    mime = (value or "").split(";", 1)[0].strip().lower()
    if not (mime == "application/json" or (mime.startswith("application/") and mime.endswith("+json"))):
        raise Rejected(415, "Content-Type must be application/json")


def hostile_text_reason(value: str, what: str, max_length: int) -> str | None:
    """Why ``value`` cannot be a name we pass on, or None when it is acceptable."""
    if not value or not value.strip():
        return f"{what} is empty"
    if len(value) > max_length:
        return f"{what} is longer than {max_length} characters"
    for ch in value:
        if ch in BIDI_CONTROLS or unicodedata.category(ch) in ("Cc", "Cs", "Zl", "Zp"):
            return f"{what} contains control characters"
    return None


def check_model_name(name: Any) -> str | None:
    """Why ``name`` is not an acceptable model name (None if it is): MLflow's rules, plus no controls."""
    if not isinstance(name, str):
        return "model name must be a string"
    reason = hostile_text_reason(name, "model name", MAX_NAME_LENGTH)
    if reason:
        return reason
    if "/" in name or ":" in name:
        return "model name must not contain '/' or ':'"
    if name in (".", "..") or name != name.strip():
        return "model name is not a valid registered model name"
    return None


def model_name(value: Any) -> str:
    """``value`` as a model name; :class:`Rejected` (400) with the reason when it is not one."""
    reason = check_model_name(value)
    if reason:
        raise Rejected(400, reason)
    return value


def model_version(value: Any) -> str:
    """A version number as the registry spells it (``"007"`` -> ``"7"``); ints are tolerated.

    :class:`Rejected` (400) unless it is a positive number of at most 10 digits.
    """
    if isinstance(value, bool):
        raise Rejected(400, "version must be a string of digits")
    if isinstance(value, int):
        value = str(value)
    if not isinstance(value, str):
        raise Rejected(400, "version must be a string of digits")
    if not _VERSION.match(value) or int(value) < 1:
        raise Rejected(400, f"version must be a positive number of at most {MAX_VERSION_DIGITS} digits")
    return str(int(value))


def _reject_constant(name: str) -> Any:
    # NaN / Infinity are not JSON; Python accepts them unless told otherwise.
    raise ValueError(f"{name} is not valid JSON")


# One decoder for every delivery: ``json.loads`` with any keyword builds a new JSONDecoder on each call.
# (A UTF-8 BOM is refused either way: ``decode`` does not skip it, so the body is not valid JSON.)
_JSON_DECODER = json.JSONDecoder(parse_constant=_reject_constant)


def json_object(body: bytes | str) -> dict[str, Any]:
    """The body as a JSON object; :class:`Rejected` (400) when it is not UTF-8 JSON holding an object."""
    if isinstance(body, bytes):
        try:
            body = body.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise Rejected(400, "body is not UTF-8") from exc
    try:
        payload = _JSON_DECODER.decode(body)
    except (ValueError, RecursionError) as exc:
        raise Rejected(400, "body is not valid JSON") from exc
    if not isinstance(payload, dict):
        raise Rejected(400, "body must be a JSON object")
    return payload
