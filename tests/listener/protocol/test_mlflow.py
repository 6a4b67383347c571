"""The MLflow parser against real captured deliveries: signatures, headers, bodies, the events it acts on."""

from __future__ import annotations

import json

import pytest

from listener.protocol import ValidationRequest, mlflow_signature
from tests.listener.protocol.helpers import Decision, load_mlflow_deliveries, parse_mlflow_delivery

SECRET = "s3cr3t"
MLFLOW = load_mlflow_deliveries()


def _expected(delivery: dict) -> tuple[int, str | None, str | None]:
    """What a captured delivery must give: (status, action, reason fragment)."""
    if "X-MLflow-Signature" not in delivery["headers"]:
        return 401, None, "X-MLflow-Signature"
    body = json.loads(delivery["raw_body"])
    event = f"{body['entity']}.{body['action']}"
    if event == "model_version.created":
        return 202, "seal_and_check", None
    if event == "model_version_alias.created":
        return 202, "check", None
    return 200, None, event


def _now(delivery: dict) -> float:
    return float(delivery["headers"]["X-MLflow-Timestamp"])


def _parse(delivery: dict, *, headers: dict | None = None, body: bytes | None = None,
           secrets=(SECRET,), now: float | None = None, **kw) -> Decision:
    return parse_mlflow_delivery(headers if headers is not None else delivery["headers"],
                                 body if body is not None else delivery["raw_body"].encode(),
                                 list(secrets), _now(delivery) if now is None else now, **kw)


def test_fixture_file_has_every_kind_of_delivery():
    statuses = [_expected(d)[0] for d in MLFLOW]
    assert len(MLFLOW) == 13
    assert statuses.count(202) >= 4 and statuses.count(401) == 1 and statuses.count(200) >= 5


@pytest.mark.parametrize("index", range(len(MLFLOW)))
def test_every_captured_mlflow_delivery(index):
    delivery = MLFLOW[index]
    status, action, reason = _expected(delivery)
    decision = _parse(delivery)
    assert decision.status_code == status, decision.body
    if status == 202:
        body = json.loads(delivery["raw_body"])
        req = decision.request
        assert isinstance(req, ValidationRequest)
        assert (req.registry, req.model, req.version, req.action) == (
            "mlflow", body["data"]["name"], body["data"]["version"], action)
        assert req.trigger == f"{body['entity']}.{body['action']}"
        assert req.delivery_key == delivery["headers"]["X-MLflow-Delivery-Id"]
        assert req.received_at == _now(delivery)
        assert req.alias == body["data"].get("alias")
        assert req.gate is False and req.to_stage is None
        assert decision.body == {"status": "queued", "id": None}
        assert ValidationRequest.from_dict(json.loads(json.dumps(req.to_dict()))) == req
    else:
        assert decision.request is None
        assert reason in decision.body["reason"]
        if status == 200:
            assert decision.body["status"] == "ignored"


def test_our_own_validation_tag_events_are_ignored_with_their_reason():
    body = {"entity": "model_version_tag", "action": "set", "timestamp": "x",
            "data": {"name": "m", "version": "1", "key": "validation.status", "value": "PASSED"}}
    raw = json.dumps(body).encode()
    signature = mlflow_signature(SECRET, "abc-1", "100", raw)
    headers = {"content-type": "application/json", "x-mlflow-delivery-id": "abc-1",
               "x-mlflow-timestamp": "100", "x-mlflow-signature": signature}
    decision = parse_mlflow_delivery(headers, raw, [SECRET], 100.0)
    assert decision.status_code == 200 and "validation.*" in decision.body["reason"]


def _signed_valid() -> dict:
    return next(d for d in MLFLOW if _expected(d)[0] == 202)


def test_header_names_are_case_insensitive():
    d = _signed_valid()
    headers = {k.upper(): v for k, v in d["headers"].items()}
    assert _parse(d, headers=headers).status_code == 202


@pytest.mark.parametrize("mutate", [
    lambda b: b.replace(b'"version": "1"', b'"version": "2"'),
    lambda b: b + b" ",
    lambda b: b[:-1],
    lambda b: b.replace(b"demo-model", b"demo-modeL").replace(b"example_model", b"example_modeL"),
])
def test_tampered_body_is_refused(mutate):
    d = _signed_valid()
    tampered = mutate(d["raw_body"].encode())
    assert tampered != d["raw_body"].encode()
    decision = _parse(d, body=tampered)
    assert decision.status_code == 401 and decision.request is None


def test_wrong_secret_is_refused_and_rotated_list_accepted():
    d = _signed_valid()
    assert _parse(d, secrets=["wrong"]).status_code == 401
    assert _parse(d, secrets=["S3CR3T"]).status_code == 401
    assert _parse(d, secrets=["old-one", SECRET, "next-one"]).status_code == 202
    assert _parse(d, secrets=[SECRET, "next-one"]).status_code == 202


def test_no_secret_configured_refuses_unless_explicitly_unsigned():
    d = _signed_valid()
    assert _parse(d, secrets=[]).status_code == 401
    assert _parse(d, secrets=[], allow_unsigned=True).status_code == 202
    unsigned = next(x for x in MLFLOW if "X-MLflow-Signature" not in x["headers"])
    assert _parse(unsigned, secrets=[]).status_code == 401
    assert _parse(unsigned, secrets=[], allow_unsigned=True).status_code == 202
    # A configured secret always wins over the unsigned switch.
    assert _parse(unsigned, allow_unsigned=True).status_code == 401


@pytest.mark.parametrize("offset, status", [(0, 202), (300, 202), (-300, 202), (301, 401), (-301, 401),
                                            (86400, 401), (-86400, 401)])
def test_timestamp_tolerance_past_and_future(offset, status):
    d = _signed_valid()
    assert _parse(d, now=_now(d) + offset).status_code == status
    assert _parse(d, now=_now(d) + offset * 2, tolerance_s=600).status_code == status


@pytest.mark.parametrize("header", ["X-MLflow-Signature", "X-MLflow-Timestamp", "X-MLflow-Delivery-Id"])
def test_missing_headers_are_refused(header):
    d = _signed_valid()
    headers = {k: v for k, v in d["headers"].items() if k != header}
    decision = _parse(d, headers=headers)
    assert decision.status_code == 401 and header in decision.body["reason"]


@pytest.mark.parametrize("header, value", [
    ("X-MLflow-Signature", "v2,AAAA"),
    ("X-MLflow-Signature", "v1,not base64!!"),
    ("X-MLflow-Signature", "v1,é"),
    ("X-MLflow-Signature", ""),
    ("X-MLflow-Timestamp", "soon"),
    ("X-MLflow-Timestamp", "-5"),
    ("X-MLflow-Timestamp", "1" * 40),
    ("X-MLflow-Delivery-Id", "../../etc/passwd"),
    ("X-MLflow-Delivery-Id", "a" * 500),
    ("X-MLflow-Delivery-Id", "id\x00x"),
])
def test_malformed_headers_are_refused(header, value):
    d = _signed_valid()
    decision = _parse(d, headers={**d["headers"], header: value})
    assert decision.status_code == 401 and decision.request is None


def test_delivery_id_is_part_of_the_signature():
    d = _signed_valid()
    headers = {**d["headers"], "X-MLflow-Delivery-Id": "00000000-0000-0000-0000-000000000000"}
    assert _parse(d, headers=headers).status_code == 401


@pytest.mark.parametrize("content_type, status", [
    ("application/json", 202), ("application/json; charset=utf-8", 202), ("Application/JSON", 202),
    ("text/plain", 415), ("application/x-www-form-urlencoded", 415), (None, 415),
])
def test_content_type(content_type, status):
    d = _signed_valid()
    headers = {k: v for k, v in d["headers"].items() if k != "Content-Type"}
    if content_type:
        headers["Content-Type"] = content_type
    assert _parse(d, headers=headers).status_code == status


def _signed_mlflow(body: bytes | dict, now: float = 1000.0, delivery_id: str = "d-1") -> Decision:
    raw = body if isinstance(body, bytes) else json.dumps(body).encode()
    ts = str(int(now))
    headers = {"Content-Type": "application/json", "X-MLflow-Delivery-Id": delivery_id,
               "X-MLflow-Timestamp": ts, "X-MLflow-Signature": mlflow_signature(SECRET, delivery_id, ts, raw)}
    return parse_mlflow_delivery(headers, raw, [SECRET], now)


def _mv(**data) -> dict:
    return {"entity": "model_version", "action": "created", "timestamp": "t",
            "data": {"name": "m", "version": "1", **data}}


@pytest.mark.parametrize("body", [
    b"not json", b"", b"[1, 2]", b'"text"', b"\xff\xfe", b'{"entity": NaN}', b"[" * 100000,
    {"entity": 1, "action": "created", "data": {}},
    {"entity": "model_version", "action": None, "data": {}},
    {"entity": "model_version", "action": "created", "data": []},
    {"entity": "model_version", "action": "created"},
    {"entity": "../x", "action": "created", "data": {}},
    {"entity": "MODEL_VERSION", "action": "created", "data": {}},
    _mv(name=None), _mv(name=5), _mv(name=""), _mv(name="   "), _mv(name="../../etc"), _mv(name="a/b"),
    _mv(name="a:b"), _mv(name="x" * 10_000), _mv(name="bad\x00name"), _mv(name="line\nbreak"),
    _mv(name="\u202egnp.exe"), _mv(name=".."), _mv(name=" padded"),
    _mv(version=None), _mv(version="one"), _mv(version="1.0"), _mv(version="-1"), _mv(version="0"),
    _mv(version=True), _mv(version=[1]), _mv(version="9" * 11), _mv(version=" 1"),
    {"entity": "model_version_alias", "action": "created", "data": {"name": "m", "version": "1"}},
    {"entity": "model_version_alias", "action": "created",
     "data": {"name": "m", "version": "1", "alias": "<script>"}},
])
def test_malformed_bodies_are_400(body):
    decision = _signed_mlflow(body)
    assert decision.status_code == 400, decision.body
    assert decision.request is None and decision.body["reason"]


def test_hostile_but_legal_names_pass_through_unchanged():
    for name in ("<script>alert(1)<\\script>", "<img src=x onerror=alert(1)>", "Ünïcødé model", "a" * 256,
                 "x.y-z_1 (copy)"):
        decision = _signed_mlflow(_mv(name=name))
        assert decision.status_code == 202 and decision.request.model == name


def test_integer_version_is_tolerated_and_normalised():
    assert _signed_mlflow(_mv(version=3)).request.version == "3"


@pytest.mark.parametrize("entity, action", [("registered_model", "created"), ("prompt", "created"),
                                            ("model_version", "deleted"), ("some_future_entity", "created")])
def test_well_formed_events_we_do_not_act_on_are_ignored(entity, action):
    decision = _signed_mlflow({"entity": entity, "action": action, "data": {"name": "m"}})
    assert decision.status_code == 200 and decision.body["status"] == "ignored"


def test_space_separated_signature_list_needs_one_valid_v1():
    d = _signed_valid()
    good = d["headers"]["X-MLflow-Signature"]
    other = mlflow_signature("another-key", d["headers"]["X-MLflow-Delivery-Id"],
                             d["headers"]["X-MLflow-Timestamp"], d["raw_body"].encode())
    for value, status in ((f"v2,xyz {good}", 202), (f"{other} {good}", 202), (f"{other} v2,xyz", 401),
                          (" ".join([other] * 40), 401)):
        assert _parse(d, headers={**d["headers"], "X-MLflow-Signature": value}).status_code == status


@pytest.mark.parametrize("key", ["sweep:mlflow:m:1:model_version.created", "job:m:1", "databricks:abc"])
def test_a_signed_delivery_cannot_take_a_key_of_another_origin(key):
    # The worker treats sweep and job keys differently (listener.worker.admission): a delivery id of
    # that shape is refused, even with a valid signature.
    assert _signed_mlflow(_mv(), delivery_id=key).status_code == 401
    assert _signed_mlflow(_mv(), delivery_id="d-1").request.origin == "webhook"
