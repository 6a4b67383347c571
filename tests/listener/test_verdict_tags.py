"""A verdict as tags: status, summary, seal and a report that always fits the tag limit."""

from __future__ import annotations

import json

from core.tags import TAG_MANIFEST, TAG_POLICY, TAG_REPORT, TAG_SEAL, TAG_STATUS
from listener.verdict import Verdict
from listener.verdict_tags import render_report_json, render_tags
from tests.listener.helpers import sample_verdict


def test_tags_carry_status_summary_seal_and_report():
    v = sample_verdict()
    tags = render_tags(v)
    assert tags[TAG_STATUS] == "FAILED"
    assert tags[TAG_SEAL] == "ab" * 32
    assert TAG_MANIFEST not in tags  # only written when this validation created the seal
    report = json.loads(tags[TAG_REPORT])
    assert report["seal_differences"][0]["path"] == "data/deep/file_000000.bin"
    assert not any(k.startswith("mlflow.") for k in tags)
    sealed = render_tags(sample_verdict(status="PASSED", n_diffs=0, new_seal_json='{"tree_digest":"x"}'))
    assert sealed[TAG_MANIFEST] == '{"tree_digest":"x"}'


def test_report_tag_truncates_difference_lists_and_says_so():
    v = sample_verdict(n_diffs=5000)
    text = render_report_json(v)
    assert len(text) < 100_000
    report = json.loads(text)
    assert report["truncated"] is True
    assert report["seal_differences_total"] == 5000
    assert 0 < len(report["seal_differences"]) < 5000
    assert "truncated" in report["note"]
    # Small reports are complete and carry no truncation marker.
    small = json.loads(render_report_json(sample_verdict(n_diffs=3)))
    assert "truncated" not in small and len(small["seal_differences"]) == 3


def test_report_tag_cuts_a_huge_error_message():
    v = Verdict.error_verdict(model="m", version="1", registry="mlflow", trigger="t", reason="x" * 300_000)
    text = render_report_json(v)
    assert len(text) < 100_000
    assert json.loads(text)["status"] == "ERROR"


def test_a_seal_made_on_first_sight_says_so_in_the_tags_and_report():
    from core.tags import TAG_SEAL_NOTE

    note = "sealed on first sight (backfill)"
    signed = sample_verdict("PASSED", n_diffs=0, trigger="backfill", seal={"kind": "verified", "note": note})
    unsigned = sample_verdict("PASSED", n_diffs=0, trigger="backfill", new_seal_json='{"files": []}')
    registered = sample_verdict("PASSED", n_diffs=0, trigger="model_version.created", new_seal_json="{}")
    for verdict in (signed, unsigned):
        tags = render_tags(verdict)
        assert tags[TAG_SEAL_NOTE] == note and json.loads(tags["validation.report"])["seal_note"] == note
    assert TAG_SEAL_NOTE not in render_tags(registered)
    assert json.loads(render_tags(registered)["validation.report"])["seal_note"] is None


def test_tags_without_the_report_keep_the_human_ones_short_and_first_the_status_last():
    from listener.verdict_tags import TAG_CHECKED_AT, TAG_SUMMARY, ordered_tags

    tags = render_tags(sample_verdict(n_diffs=5000), with_report=False)
    assert TAG_REPORT not in tags
    assert all(len(value) < 1000 for value in tags.values())
    order = ordered_tags(tags)
    assert order[0] == TAG_SUMMARY and order[1] == TAG_CHECKED_AT and order[-1] == TAG_STATUS


def test_report_names_no_local_seal_store_folder():
    local = sample_verdict(seal={"kind": "verified", "location": "/home/guard/.guard/seals/v1/m/1"})
    assert "location" not in json.loads(render_report_json(local))["seal_detail"]
    remote = sample_verdict(seal={"kind": "verified", "location": "s3://seals/v1/m/1"})
    assert json.loads(render_report_json(remote))["seal_detail"]["location"] == "s3://seals/v1/m/1"


POLICY_FAIL = {"status": "FAIL", "checks": [
    {"check": "serialization", "status": "FAIL", "reason": "model.pkl is pickle (denied)"},
    {"check": "signature", "status": "WARN", "reason": "the MLmodel has no signature"},
    {"check": "requirements", "status": "PASS", "reason": "3 requirements, all pinned"}]}


def test_the_policy_tag_names_the_checks_that_did_not_pass():
    tags = render_tags(sample_verdict(policy=POLICY_FAIL))
    assert tags[TAG_POLICY] == "FAIL: serialization; WARN: signature"
    assert json.loads(tags[TAG_REPORT])["policy"] == POLICY_FAIL
    passing = {"status": "PASS", "checks": [{"check": "signature", "status": "PASS", "reason": "present"}]}
    passed = render_tags(sample_verdict(status="PASSED", n_diffs=0, policy=passing))
    assert TAG_POLICY not in passed  # a passing policy: the summary says so, the tag would only crowd the UI
    assert TAG_POLICY not in render_tags(sample_verdict())  # no policy, no tag


def test_policy_tag_and_report_fit_unity_catalogs_limit():
    reason = "x" * 300
    many = {"status": "FAIL", "checks": [{"check": f"check_{i:02d}_with_a_long_name", "status": "FAIL",
                                          "reason": reason} for i in range(40)]}
    tags = render_tags(sample_verdict(n_diffs=500, policy=many), limit=1000)
    assert all(len(value) < 1000 for value in tags.values())
    assert tags[TAG_POLICY].startswith("FAIL: check_00_with_a_long_name")
    report = json.loads(tags[TAG_REPORT])
    assert report["status"] == "FAILED" and "FAIL" in json.dumps(report["policy"])
