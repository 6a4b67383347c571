"""The verdict model: statuses, one-line summaries, a round trip through JSON."""

from __future__ import annotations

import json

import pytest

from listener.verdict import Verdict
from tests.listener.helpers import sample_verdict


def test_summary_is_one_line():
    v = sample_verdict(summary="line one\nline two\n\n  three")
    assert v.summary == "line one line two three"


def test_verdict_round_trip_and_rejects_unknown_status():
    v = sample_verdict()
    assert Verdict.from_dict(json.loads(json.dumps(v.to_dict()))) == v
    with pytest.raises(ValueError):
        sample_verdict(status="MAYBE")


def test_the_policy_result_round_trips_through_json():
    policy = {"status": "WARN",
              "checks": [{"check": "signature", "status": "WARN", "reason": "no signature"}]}
    v = sample_verdict(policy=policy)
    again = Verdict.from_dict(json.loads(json.dumps(v.to_dict())))
    assert again.policy == policy and again == v
