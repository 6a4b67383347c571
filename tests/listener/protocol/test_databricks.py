"""The Databricks parser against the documented payloads: signature, Authorization, timestamp, event table."""

from __future__ import annotations

import hashlib
import json

import pytest

from listener.protocol import databricks_signature
from tests.listener.protocol.helpers import Decision, load_databricks_payloads, parse_databricks_delivery

DATABRICKS = load_databricks_payloads()


DB_SECRET = "databricks-test-secret"


def _db(payload: dict | bytes, *, secret: str | None = DB_SECRET, now: float | None = None,
        headers: dict | None = None, secrets=(DB_SECRET,), **kw) -> Decision:
    raw = payload if isinstance(payload, bytes) else json.dumps(payload).encode()
    hdrs = {"Content-Type": "application/json"}
    if secret is not None:
        hdrs["X-Databricks-Signature"] = databricks_signature(secret, raw)
    hdrs.update(headers or {})
    if now is None:
        now = (payload["event_timestamp"] / 1000.0) if isinstance(payload, dict) else 1589859029.343
    return parse_databricks_delivery(hdrs, raw, list(secrets), now, **kw)


@pytest.mark.parametrize("event, status, action, gate", [
    ("MODEL_VERSION_TRANSITIONED_STAGE", 202, "check", False),
    ("MODEL_VERSION_TAG_SET", 200, None, False),
    ("COMMENT_CREATED", 200, None, False),
    ("TRANSITION_REQUEST_CREATED", 202, "check", True),
])
def test_every_documented_databricks_payload(event, status, action, gate):
    payload = DATABRICKS[event]
    decision = _db(payload)
    assert decision.status_code == status, decision.body
    if status == 202:
        req = decision.request
        assert (req.registry, req.model, req.version, req.trigger, req.action, req.gate, req.to_stage) == (
            "databricks", payload["model_name"], payload["version"], event, action, gate, payload["to_stage"])
        raw = json.dumps(payload).encode()
        assert req.delivery_key == "databricks:" + hashlib.sha256(raw).hexdigest()
    else:
        assert decision.body["status"] == "ignored" and decision.request is None


def _event(event: str, **extra) -> dict:
    return {"event": event, "webhook_id": "w", "event_timestamp": 1_700_000_000_000, "model_name": "m",
            "version": "4", **extra}


@pytest.mark.parametrize("event, extra, status, action, stage, gate", [
    ("MODEL_VERSION_CREATED", {}, 202, "seal_and_check", None, False),
    ("MODEL_VERSION_TRANSITIONED_TO_STAGING", {}, 202, "check", "Staging", False),
    ("MODEL_VERSION_TRANSITIONED_TO_PRODUCTION", {"to_stage": "Production"}, 202, "check", "Production",
     False),
    ("MODEL_VERSION_TRANSITIONED_TO_ARCHIVED", {}, 200, None, None, False),
    ("MODEL_VERSION_TRANSITIONED_STAGE", {"to_stage": "staging"}, 202, "check", "Staging", False),
    ("MODEL_VERSION_TRANSITIONED_STAGE", {"to_stage": "Archived"}, 200, None, None, False),
    ("TRANSITION_REQUEST_TO_PRODUCTION_CREATED", {}, 202, "check", "Production", True),
    ("TRANSITION_REQUEST_TO_STAGING_CREATED", {}, 202, "check", "Staging", True),
    ("TRANSITION_REQUEST_TO_ARCHIVED_CREATED", {}, 200, None, None, False),
    ("TRANSITION_REQUEST_CREATED", {"to_stage": "Production"}, 202, "check", "Production", True),
    ("REGISTERED_MODEL_CREATED", {}, 200, None, None, False),
    ("SOME_FUTURE_EVENT", {}, 200, None, None, False),
])
def test_databricks_event_table(event, extra, status, action, stage, gate):
    decision = _db(_event(event, **extra))
    assert decision.status_code == status, decision.body
    if status == 202:
        req = decision.request
        assert (req.action, req.to_stage, req.gate) == (action, stage, gate)


def test_databricks_signature_rotation_tamper_and_missing():
    payload = _event("MODEL_VERSION_CREATED")
    raw = json.dumps(payload).encode()
    assert _db(payload, secrets=["old", DB_SECRET]).status_code == 202
    assert _db(payload, secret="wrong").status_code == 401
    assert _db(payload, secret=None).status_code == 401
    assert _db(payload, secrets=[]).status_code == 401
    assert _db(payload, secret=None, secrets=[], allow_unsigned=True).status_code == 202
    tampered = raw.replace(b'"4"', b'"5"')
    hdrs = {"Content-Type": "application/json",
            "X-Databricks-Signature": databricks_signature(DB_SECRET, raw)}
    assert parse_databricks_delivery(hdrs, tampered, [DB_SECRET], 1_700_000_000).status_code == 401
    upper = {"Content-Type": "application/json",
             "X-Databricks-Signature": databricks_signature(DB_SECRET, raw).upper()}
    assert parse_databricks_delivery(upper, raw, [DB_SECRET], 1_700_000_000).status_code == 401


def test_databricks_timestamp_tolerance_past_and_future():
    payload = _event("MODEL_VERSION_CREATED")
    base = payload["event_timestamp"] / 1000
    assert _db(payload, now=base + 299).status_code == 202
    assert _db(payload, now=base - 299).status_code == 202
    assert _db(payload, now=base + 301).status_code == 401
    assert _db(payload, now=base - 301).status_code == 401


def test_databricks_authorization_header():
    payload = _event("MODEL_VERSION_CREATED")
    expect = "Bearer abc"
    assert _db(payload, authorization=expect, headers={"Authorization": "Bearer abc"}).status_code == 202
    assert _db(payload, authorization=expect, headers={"authorization": "Bearer abc"}).status_code == 202
    assert _db(payload, authorization=expect, headers={"Authorization": "Bearer abd"}).status_code == 401
    assert _db(payload, authorization=expect).status_code == 401
    assert _db(payload, authorization=expect, headers={"Authorization": "Bearer é"}).status_code == 401


@pytest.mark.parametrize("payload", [
    b"{not json", b"[]",
    {**_event("MODEL_VERSION_CREATED"), "event_timestamp": "1700000000000"},
    {k: v for k, v in _event("MODEL_VERSION_CREATED").items() if k != "event_timestamp"},
    {**_event("MODEL_VERSION_CREATED"), "event": 7},
    {k: v for k, v in _event("MODEL_VERSION_CREATED").items() if k != "event"},
    {**_event("MODEL_VERSION_CREATED"), "event": "model version created"},
    {**_event("MODEL_VERSION_CREATED"), "model_name": "<script>/x"},
    {**_event("MODEL_VERSION_CREATED"), "model_name": ["m"]},
    {**_event("MODEL_VERSION_CREATED"), "version": "v4"},
    {**_event("TRANSITION_REQUEST_CREATED"), "to_stage": "Prod"},
    {**_event("TRANSITION_REQUEST_CREATED")},
])
def test_databricks_malformed_is_400(payload):
    decision = _db(payload, now=1_700_000_000)
    assert decision.status_code == 400, decision.body
    assert decision.request is None


def test_databricks_payload_hosts_are_never_taken():
    payload = _event("MODEL_VERSION_CREATED", source="dbfs:/evil", host="http://attacker.example",
                     tracking_uri="http://attacker.example")
    req = _db(payload).request
    assert "attacker" not in json.dumps(req.to_dict())
