"""A verdict as people read it: the marked section of an MLflow version description, a Databricks comment.

Pure: a :class:`~listener.verdict.Verdict` in, text out, within the registry's limits.
"""

from __future__ import annotations

import re

from core.status import ERROR, FAILED, PASSED
from listener.verdict import Verdict, one_line

SECTION_START = "<!-- validation:start -->"
SECTION_END = "<!-- validation:end -->"
# Our section: the verdict line that opens the description, then the marked details.
_SECTION_RE = re.compile(r"(?:(?:PASSED|FAILED|ERROR) \u00b7 validation [^\n]*\n)?" + re.escape(SECTION_START)
                         + r".*?" + re.escape(SECTION_END), re.DOTALL)

# Databricks comments: up to 65,535 characters.
COMMENT_LIMIT = 65_535
# The description section stays small: the full list lives in the results store (/api/validations).
DESCRIPTION_MAX_PATHS = 20
COMMENT_MAX_PATHS = 200

_BADGE = {PASSED: "\u2705 PASSED", FAILED: "\u274c FAILED", ERROR: "\u26a0\ufe0f ERROR"}
# A policy has a dozen checks at most; their reasons are cut to stay readable in a table.
POLICY_REASON_CHARS = 160


def _policy_rows(verdict: Verdict) -> list[dict]:
    return list((verdict.policy or {}).get("checks") or [])


def _cell(text: object) -> str:
    # A pipe would end the markdown table cell early.
    return _md_safe(one_line(str(text or ""), POLICY_REASON_CHARS)).replace("|", "\\|")


def policy_table_markdown(verdict: Verdict) -> list[str]:
    """The policy as one bullet, then a short markdown table of the checks that did not pass.

    Short on purpose: MLflow's version page shows the description above the tags table, so every line
    here pushes ``validation.status`` further down (the full list is in ``/api/validations``).
    """
    if verdict.policy is None:
        return []
    rows = _policy_rows(verdict)
    line = f"- Policy: **{_cell(verdict.policy.get('status'))}**"
    if not rows:
        return [line + ", no check applies to this version"]
    noted = [r for r in rows if r.get("status") != "PASS"]
    passed = [str(r.get("check")) for r in rows if r.get("status") == "PASS"]
    if passed:
        line += f" (passed: {_cell(', '.join(passed))})"
    if not noted:
        return [line]
    return [line, "", "| check | result | reason |", "| --- | --- | --- |",
            *(f"| {_cell(r.get('check'))} | {_cell(r.get('status'))} | {_cell(r.get('reason'))} |"
              for r in noted), ""]


def policy_table_text(verdict: Verdict) -> list[str]:
    """The policy's checks as aligned plain-text lines for a comment (no lines without a policy)."""
    if verdict.policy is None:
        return []
    rows = _policy_rows(verdict)
    width = max([len(str(r.get("check") or "")) for r in rows] + [5])
    lines = [f"Policy {verdict.policy.get('status')}:"]
    lines += [f"  {str(r.get('status') or ''):<4}  {str(r.get('check') or ''):<{width}}  "
              f"{one_line(str(r.get('reason') or ''), POLICY_REASON_CHARS)}" for r in rows]
    return lines


def _diff_line(d: dict) -> str:
    kind = d.get("kind", "changed")
    detail = d.get("detail") or {}
    sizes = ", ".join(f"{k}={v}" for k, v in detail.items() if str(k).startswith("size"))
    return f"{d.get('path', '?')} ({kind}{': ' + sizes if sizes else ''})"


def _sealed_now_note(verdict: Verdict) -> str:
    if verdict.seal_bundle is not None:
        return " (signed seal made by this validation)"
    return " (unsigned seal made by this validation)" if verdict.new_seal_json is not None else ""


def _md_safe(text: str) -> str:
    """Neutralise characters that could break out of the markdown section or fake our markers."""
    return one_line(text, 300).replace("<", "&lt;").replace(">", "&gt;").replace("`", "'")


def render_description_section(verdict: Verdict) -> str:
    """The markdown section describing ``verdict``: a verdict line, then the details between the markers.

    The verdict line comes before the start marker because the model page's list of versions shows
    only the first dozen characters of a description, raw: they must be the status itself
    (``PASSED · validation <time>``), not a marker. (In Markdown the marker is an HTML comment: the
    version page does not show it.)
    """
    when = verdict.checked_at
    if re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ", when):
        when = when[:10] + " " + when[11:16] + "Z"  # to the minute: the line stays short
    lines = [
        f"{verdict.status} \u00b7 validation {_md_safe(when)}",
        SECTION_START,
        f"**{_BADGE[verdict.status]}**: {_md_safe(verdict.summary)}",
        "",
        # One line for when and how long: the version page shows the tags table below this section.
        f"- Trigger: {_md_safe(verdict.trigger)} ({verdict.action.replace('_', ' ')}), "
        f"checked at {_md_safe(verdict.checked_at)}, took {verdict.duration_s:.2f} s",
    ]
    sealed = _sealed_now_note(verdict)
    if verdict.seal_digest and sealed:
        # Only a seal made now is news here; the digest in force is the validation.seal tag below.
        lines.append(f"- Seal: `{_md_safe(verdict.seal_digest)}`{sealed}")
    if verdict.error:
        lines.append(f"- Reason: {_md_safe(verdict.error)}")
    if verdict.alias_reverted:
        lines.append(f"- Protected alias: {_md_safe(verdict.alias_reverted)}")
    paths = verdict.differences + verdict.seal_differences
    if paths:
        lines.append(f"- Differing files ({len(paths)}):")
        for d in paths[:DESCRIPTION_MAX_PATHS]:
            lines.append(f"  - `{_md_safe(_diff_line(d))}`")
        if len(paths) > DESCRIPTION_MAX_PATHS:
            more = len(paths) - DESCRIPTION_MAX_PATHS
            lines.append(f"  - \u2026 and {more} more (the listener's /api/validations lists them all)")
    lines.extend(policy_table_markdown(verdict))
    lines.append(SECTION_END)
    return "\n".join(lines)


def update_description(old: str | None, verdict: Verdict) -> str:
    """Return ``old`` with the validation section at its start, replaced on every run; the user's own
    text follows it byte for byte intact.

    The section goes first, so that the first visible characters of the description are the verdict.
    Only the first complete ``start … end`` pair is ours; any later pairs are left alone so a user's
    pasted text is never deleted. A section found elsewhere (written below the user's text by an
    earlier version of this tool) is moved to the top, with the blank line it was appended after.
    """
    section = render_description_section(verdict)
    old = old or ""
    match = _SECTION_RE.search(old)
    if match and match.start() == 0:
        return section + old[match.end():]
    if match:
        before, after = old[: match.start()], old[match.end():]
        if not after.strip() and before.endswith("\n\n"):
            before, after = before[:-2], ""  # it was appended below the user's text with a blank line
        old = before + after
    if not old.strip():
        return section
    return section + "\n\n" + old


def render_comment(verdict: Verdict, limit: int = COMMENT_LIMIT) -> str:
    """Plain-text comment for Databricks: verdict first, then files, seal digest, duration (≤ ``limit``)."""
    head = [f"Validation {verdict.status}: {verdict.summary}"]
    tail = []
    if verdict.error:
        tail.append(f"Reason: {one_line(verdict.error, 2000)}")
    tail.append(f"Seal: {verdict.seal_digest or 'none'}"
                + (_sealed_now_note(verdict)))
    tail.append(f"Took {verdict.duration_s:.2f} s \u00b7 checked at {verdict.checked_at} "
                f"\u00b7 trigger {verdict.trigger}")
    diffs = verdict.differences + verdict.seal_differences
    body: list[str] = []
    if diffs:
        body.append(f"Differing files ({len(diffs)}):")
        body.extend(f"- {one_line(_diff_line(d), 1000)}" for d in diffs[:COMMENT_MAX_PATHS])
        if len(diffs) > COMMENT_MAX_PATHS:
            body.append(f"- \u2026 and {len(diffs) - COMMENT_MAX_PATHS} more")
    tail = policy_table_text(verdict) + tail
    text = "\n".join(head + body + tail)
    while len(text) > limit and len(body) > 1:
        # Drop listed files from the end until it fits; say how many were left out.
        body = body[:-2] + [f"- \u2026 (list shortened to fit the {limit}-character comment limit)"]
        text = "\n".join(head + body + tail)
    return text[:limit]
