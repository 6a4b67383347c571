"""The alert message of a verdict: its fields, read defensively, and never a secret."""

from __future__ import annotations

from listener.alerts.message import compose, first_finding, scrub, trigger_kind
from tests.listener.helpers import sample_verdict


def test_a_failed_verdict_names_everything_someone_on_call_needs():
    verdict = sample_verdict(alias_reverted="@champion moved back from version 3 to version 2",
                             delivery_key="abc-delivery").to_dict()
    message = compose(verdict, "https://mlflow.example.com/#/models/churn/versions/3")
    assert message.title == "Model version guard: FAILED churn version 3"
    assert message.notify_type == "failure"
    assert message.body.splitlines() == [
        "Model: churn", "Version: 3", "Trigger: event (model_version_alias.created)",
        "Verdict: FAILED: 1 difference from the seal",
        "First finding: changed data/deep/file_000000.bin (vs the seal)",
        "Alias action: @champion moved back from version 3 to version 2",
        "Link: https://mlflow.example.com/#/models/churn/versions/3"]


def test_trigger_kinds():
    reverify = {"trigger": "reverify", "delivery_key": "sweep:mlflow:m:1:reverify:7"}
    assert trigger_kind(reverify) == "re-verification"
    assert trigger_kind({"trigger": "backfill", "delivery_key": "sweep:mlflow:m:1:backfill"}) == "backfill"
    assert trigger_kind({"trigger": "model_version.created",
                         "delivery_key": "sweep:mlflow:m:1:model_version.created"}) == \
        "sweep (missed model_version.created)"
    assert trigger_kind({"trigger": "TRANSITION_REQUEST_CREATED", "delivery_key": "databricks:x"}) == \
        "event (TRANSITION_REQUEST_CREATED)"


def test_a_failed_policy_check_is_the_finding_when_no_file_differs():
    verdict = sample_verdict(n_diffs=0).to_dict()
    verdict["policy"] = {"status": "FAIL", "checks": [
        {"check": "signature", "status": "PASS", "reason": "present"},
        {"check": "serialization", "status": "FAIL", "reason": "pickle opcode GLOBAL os.system"}]}
    assert first_finding(verdict) == "policy check serialization failed: pickle opcode GLOBAL os.system"
    # Read defensively: a malformed policy is no finding, never a crash.
    for broken in ("FAIL", {"checks": "x"}, {"checks": [None, 3]}, None):
        verdict["policy"] = broken
        assert first_finding(verdict) is None
    assert "Verdict: PASSED" in compose(sample_verdict("PASSED", n_diffs=0).to_dict(), None).body


def test_secrets_and_credentials_never_reach_a_message():
    error = "GET https://user:tok3n@s3.example.com/b?X-Amz-Signature=abc failed; secret s3cr3t-value rejected"
    verdict = sample_verdict("ERROR", n_diffs=0, error=error).to_dict()
    message = compose(verdict, "http://viewer:ui-pass@mlflow.local/#/models/churn/versions/3",
                      secrets=["s3cr3t-value"])
    text = message.title + message.body
    for secret in ("tok3n", "X-Amz-Signature=abc", "s3cr3t-value", "ui-pass"):
        assert secret not in text
    assert "http://***@mlflow.local/" in text
    assert scrub("no url here", []) == "no url here"
