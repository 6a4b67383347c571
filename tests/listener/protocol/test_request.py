"""The shared checks of every parser: model names (controls and bidi formatting), versions, JSON bodies."""

from __future__ import annotations

import sys
import unicodedata

import pytest

from listener.protocol import (
    Rejected,
    ValidationRequest,
    check_model_name,
    model_version,
    parse_mlflow_delivery,
)
from listener.protocol.request import json_object
from tests.listener.helpers import MLFLOW_SECRET, mlflow_delivery

# Unicode's explicit directional formatting classes (UAX #9) and the three implicit directional marks.
_FORMATTING_CLASSES = {"LRE", "RLE", "PDF", "LRO", "RLO", "LRI", "RLI", "FSI", "PDI"}
_MARKS = {"\u200e": "LEFT-TO-RIGHT MARK", "\u200f": "RIGHT-TO-LEFT MARK", "\u061c": "ARABIC LETTER MARK"}


def _bidi_controls() -> list[str]:
    found = [chr(c) for c in range(sys.maxunicode + 1)
             if unicodedata.bidirectional(chr(c)) in _FORMATTING_CLASSES]
    return found + list(_MARKS)


def test_every_bidi_control_is_refused_in_a_model_name():
    controls = _bidi_controls()
    assert len(controls) == 12 and all(unicodedata.name(ch) == name for ch, name in _MARKS.items())
    for ch in controls:
        assert check_model_name(f"churn{ch}model") == "model name contains control characters", hex(ord(ch))


def test_a_delivery_naming_a_model_with_an_arabic_letter_mark_is_400():
    headers, body = mlflow_delivery({"name": "fraud\u061cmodel", "version": "1"})
    with pytest.raises(Rejected) as info:
        parse_mlflow_delivery(headers, body, [MLFLOW_SECRET], now=float(headers["X-MLflow-Timestamp"]))
    assert info.value.status_code == 400 and "control characters" in info.value.reason


def test_legal_unicode_names_pass():
    for name in ("модель", "模型-v2", "churn model", "naïve_bayes", "مدل"):
        assert check_model_name(name) is None, name


@pytest.mark.parametrize("value, expected", [("1", "1"), ("007", "7"), (12, "12"),
                                             ("4294967295", "4294967295")])
def test_versions_are_normalised(value, expected):
    assert model_version(value) == expected


@pytest.mark.parametrize("value", ["0", "-1", "1.5", "", " 1", "12345678901", True, None, 2.0, "\u0661"])
def test_bad_versions_are_400(value):
    with pytest.raises(Rejected) as info:
        model_version(value)
    assert info.value.status_code == 400


@pytest.mark.parametrize("body", [b"\xff", b"[1]", b"{", b'{"a": NaN}', b"\xef\xbb\xbf{}"])
def test_bodies_that_are_not_a_json_object_are_400(body):
    with pytest.raises(Rejected) as info:
        json_object(body)
    assert info.value.status_code == 400


def test_to_dict_lists_every_field_as_asdict_would():
    """``to_dict`` is written out for speed; it must still hold every field, unchanged."""
    from dataclasses import asdict

    req = ValidationRequest(registry="databricks", model="m", version="2",
                            trigger="TRANSITION_REQUEST_CREATED", action="check", to_stage="Production",
                            alias=None, gate=True, delivery_key="databricks:abc", received_at=1700000000.5)
    assert req.to_dict() == asdict(req)
    assert list(req.to_dict()) == list(asdict(req))
