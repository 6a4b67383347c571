"""A verdict as text: the marked description section and the Databricks comment, within their limits."""

from __future__ import annotations

from listener.verdict_text import (
    COMMENT_LIMIT,
    SECTION_END,
    SECTION_START,
    render_comment,
    render_description_section,
    update_description,
)
from tests.listener.helpers import sample_verdict


def test_description_section_first_then_user_text_untouched():
    user = "My model.\n\nTrained on **2024** data.\n"
    new = update_description(user, sample_verdict())
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
    edited = before + render_description_section(sample_verdict()) + after
    second = update_description(edited, sample_verdict(status="PASSED", n_diffs=0, summary="all good"))
    assert second.count(SECTION_START) == 1 and second.count(" \u00b7 validation ") == 1
    assert "all good" in second and "data/deep/file_000000.bin" not in second
    # Moved to the top; the user's text around it is kept, in order.
    assert second.startswith("PASSED \u00b7 validation ") and second.endswith(before + after)
    third = update_description(second, sample_verdict(status="FAILED", summary="bad now", checked_at="x"))
    assert third.startswith("FAILED \u00b7 validation x\n" + SECTION_START) and third.endswith(before + after)
    assert third.count(SECTION_START) == 1 and "all good" not in third


def test_description_of_empty_description_is_just_the_section():
    new = update_description(None, sample_verdict(status="PASSED", n_diffs=0))
    assert new.startswith("PASSED \u00b7 validation ") and new.endswith(SECTION_END)
    assert new.splitlines()[1] == SECTION_START


def test_hostile_paths_cannot_break_out_of_the_section():
    evil = {"path": f"a/{SECTION_END}<script>`x`", "kind": "changed", "detail": {}}
    v = sample_verdict(seal_differences=[evil], summary=f"bad {SECTION_START}")
    section = render_description_section(v)
    assert section.count(SECTION_END) == 1 and section.count(SECTION_START) == 1
    assert "<script>" not in section
    # Replacing it again still finds exactly our section.
    again = update_description("user\n" + section, sample_verdict(status="PASSED", n_diffs=0))
    assert again.startswith("PASSED \u00b7 validation ") and again.endswith("user\n")
    assert again.count(SECTION_START) == 1


def test_description_section_lists_a_bounded_number_of_paths():
    section = render_description_section(sample_verdict(n_diffs=500))
    assert "and 480 more" in section
    assert len(section) < 5000


def test_comment_verdict_first_then_files_seal_duration():
    text = render_comment(sample_verdict(n_diffs=2))
    lines = text.splitlines()
    assert lines[0].startswith("Validation FAILED")
    assert any("data/deep/file_000001.bin" in line for line in lines)
    assert "Seal: " + "ab" * 32 in text
    assert "Took 1.23 s" in text


def test_comment_fits_databricks_limit():
    long_path = "d/" + "x" * 900
    diffs = [{"path": f"{long_path}{i}", "kind": "changed", "detail": {}} for i in range(150)]
    text = render_comment(sample_verdict(seal_differences=diffs))
    assert len(text) <= COMMENT_LIMIT
    assert text.startswith("Validation FAILED")
    assert "shortened" in text
    assert "Took" in text  # the tail survives the shortening


POLICY = {"status": "FAIL", "checks": [
    {"check": "load_predict", "status": "FAIL", "reason": "predict raised ValueError: a | b"},
    {"check": "signature", "status": "PASS", "reason": "inputs and outputs declared"}]}


def test_description_section_has_a_table_of_the_policy_checks():
    section = render_description_section(sample_verdict(policy=POLICY))
    assert "- Policy: **FAIL** (passed: signature)" in section
    assert "| load_predict | FAIL | predict raised ValueError: a \\| b |" in section
    assert "inputs and outputs declared" not in section  # a passing check is named, not explained
    assert section.index("| check | result | reason |") < section.index("<!-- validation:end -->")
    assert "Policy" not in render_description_section(sample_verdict())


def test_comment_lists_the_policy_checks_and_keeps_them_when_shortened():
    text = render_comment(sample_verdict(policy=POLICY))
    assert "Policy FAIL:" in text
    assert "  FAIL  load_predict  predict raised ValueError: a | b" in text
    assert "  PASS  signature     inputs and outputs declared" in text
    diffs = [{"path": "d/" + "x" * 900 + str(i), "kind": "changed", "detail": {}} for i in range(150)]
    shortened = render_comment(sample_verdict(seal_differences=diffs, policy=POLICY))
    assert len(shortened) <= COMMENT_LIMIT and "Policy FAIL:" in shortened
