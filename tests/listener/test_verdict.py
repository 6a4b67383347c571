"""Verdict rendering: tags, the marked description section, the Databricks comment, size limits."""

from __future__ import annotations

import json

import pytest

from listener.verdict import (
    COMMENT_LIMIT,
    SECTION_END,
    SECTION_START,
    TAG_MANIFEST,
    TAG_REPORT,
    TAG_SEAL,
    TAG_STATUS,
    Verdict,
    render_comment,
    render_description_section,
    render_report_json,
    render_tags,
    update_description,
)


def _verdict(status: str = "FAILED", n_diffs: int = 1, **kw) -> Verdict:
    diffs = [{"path": f"data/deep/file_{i:06d}.bin", "kind": "changed",
              "detail": {"size_sealed": 10, "size_current": 11}} for i in range(n_diffs)]
    base = {"status": status, "model": "churn", "version": "3", "registry": "mlflow",
            "trigger": "model_version_alias.created", "summary": "1 difference from the seal",
            "seal_differences": diffs, "seal_digest": "ab" * 32, "duration_s": 1.234, "action": "check"}
    base.update(kw)
    return Verdict(**base)


def test_tags_carry_status_summary_seal_and_report():
    v = _verdict()
    tags = render_tags(v)
    assert tags[TAG_STATUS] == "FAILED"
    assert tags[TAG_SEAL] == "ab" * 32
    assert TAG_MANIFEST not in tags  # only written when this validation created the seal
    report = json.loads(tags[TAG_REPORT])
    assert report["seal_differences"][0]["path"] == "data/deep/file_000000.bin"
    assert not any(k.startswith("mlflow.") for k in tags)
    sealed = render_tags(_verdict(status="PASSED", n_diffs=0, new_seal_json='{"tree_digest":"x"}'))
    assert sealed[TAG_MANIFEST] == '{"tree_digest":"x"}'


def test_summary_is_one_line():
    v = _verdict(summary="line one\nline two\n\n  three")
    assert v.summary == "line one line two three"


def test_report_tag_truncates_difference_lists_and_says_so():
    v = _verdict(n_diffs=5000)
    text = render_report_json(v)
    assert len(text) < 100_000
    report = json.loads(text)
    assert report["truncated"] is True
    assert report["seal_differences_total"] == 5000
    assert 0 < len(report["seal_differences"]) < 5000
    assert "truncated" in report["note"]
    # Small reports are complete and carry no truncation marker.
    small = json.loads(render_report_json(_verdict(n_diffs=3)))
    assert "truncated" not in small and len(small["seal_differences"]) == 3


def test_report_tag_cuts_a_huge_error_message():
    v = Verdict.error_verdict(model="m", version="1", registry="mlflow", trigger="t", reason="x" * 300_000)
    text = render_report_json(v)
    assert len(text) < 100_000
    assert json.loads(text)["status"] == "ERROR"


def test_description_section_first_then_user_text_untouched():
    user = "My model.\n\nTrained on **2024** data.\n"
    new = update_description(user, _verdict())
    # The first visible characters are the verdict (the model page's versions list shows only those).
    assert new.startswith("FAILED \u00b7 validation ") and new.endswith("\n\n" + user)
    assert new.index("FAILED \u00b7 validation") < new.index(SECTION_START)
    assert new.count(SECTION_START) == 1 and new.count(SECTION_END) == 1
    assert "data/deep/file_000000.bin" in new
    # Everything after our section is the user's text, byte for byte.
    assert new[new.index(SECTION_END) + len(SECTION_END):] == "\n\n" + user


def test_description_section_replaced_not_duplicated_and_surroundings_kept():
    before = "Intro text\n\n"
    after = "\n\nFooter the user wrote later.\n"
    edited = before + render_description_section(_verdict()) + after
    second = update_description(edited, _verdict(status="PASSED", n_diffs=0, summary="all good"))
    assert second.count(SECTION_START) == 1 and second.count(" \u00b7 validation ") == 1
    assert "all good" in second and "data/deep/file_000000.bin" not in second
    # Moved to the top; the user's text around it is kept, in order.
    assert second.startswith("PASSED \u00b7 validation ") and second.endswith(before + after)
    third = update_description(second, _verdict(status="FAILED", summary="bad now", checked_at="x"))
    assert third.startswith("FAILED \u00b7 validation x\n" + SECTION_START) and third.endswith(before + after)
    assert third.count(SECTION_START) == 1 and "all good" not in third


def test_description_of_empty_description_is_just_the_section():
    new = update_description(None, _verdict(status="PASSED", n_diffs=0))
    assert new.startswith("PASSED \u00b7 validation ") and new.endswith(SECTION_END)
    assert new.splitlines()[1] == SECTION_START


def test_hostile_paths_cannot_break_out_of_the_section():
    evil = {"path": f"a/{SECTION_END}<script>`x`", "kind": "changed", "detail": {}}
    v = _verdict(seal_differences=[evil], summary=f"bad {SECTION_START}")
    section = render_description_section(v)
    assert section.count(SECTION_END) == 1 and section.count(SECTION_START) == 1
    assert "<script>" not in section
    # Replacing it again still finds exactly our section.
    again = update_description("user\n" + section, _verdict(status="PASSED", n_diffs=0))
    assert again.startswith("PASSED \u00b7 validation ") and again.endswith("user\n")
    assert again.count(SECTION_START) == 1


def test_description_section_lists_a_bounded_number_of_paths():
    section = render_description_section(_verdict(n_diffs=500))
    assert "and 480 more" in section
    assert len(section) < 5000


def test_comment_verdict_first_then_files_seal_duration():
    text = render_comment(_verdict(n_diffs=2))
    lines = text.splitlines()
    assert lines[0].startswith("Validation FAILED")
    assert any("data/deep/file_000001.bin" in line for line in lines)
    assert "Seal: " + "ab" * 32 in text
    assert "Took 1.23 s" in text


def test_comment_fits_databricks_limit():
    long_path = "d/" + "x" * 900
    diffs = [{"path": f"{long_path}{i}", "kind": "changed", "detail": {}} for i in range(150)]
    text = render_comment(_verdict(seal_differences=diffs))
    assert len(text) <= COMMENT_LIMIT
    assert text.startswith("Validation FAILED")
    assert "shortened" in text
    assert "Took" in text  # the tail survives the shortening


def test_verdict_round_trip_and_rejects_unknown_status():
    v = _verdict()
    assert Verdict.from_dict(json.loads(json.dumps(v.to_dict()))) == v
    with pytest.raises(ValueError):
        _verdict(status="MAYBE")
