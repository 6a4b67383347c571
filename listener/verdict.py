"""The outcome of one validation, and how it is written where people look.

Everything here is pure: a :class:`Verdict` in, strings and dicts out. The registry adapters decide
where the strings go (tags, the version description, a Databricks comment).
"""

from __future__ import annotations

import json
import re
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from typing import Any

PASSED = "PASSED"
FAILED = "FAILED"
ERROR = "ERROR"
STATUSES = (PASSED, FAILED, ERROR)

SECTION_START = "<!-- validation:start -->"
SECTION_END = "<!-- validation:end -->"
# Our section: the verdict line that opens the description, then the marked details.
_SECTION_RE = re.compile(r"(?:(?:PASSED|FAILED|ERROR) \u00b7 validation [^\n]*\n)?" + re.escape(SECTION_START)
                         + r".*?" + re.escape(SECTION_END), re.DOTALL)

# Registry limits (MLflow model version tag values: 100,000 characters; Databricks comments: 65,535).
TAG_VALUE_LIMIT = 100_000
COMMENT_LIMIT = 65_535
SUMMARY_LIMIT = 500
# The description section stays small: the full list lives in the report tag and the results store.
DESCRIPTION_MAX_PATHS = 20
COMMENT_MAX_PATHS = 200

TAG_STATUS = "validation.status"
TAG_SUMMARY = "validation.summary"
TAG_CHECKED_AT = "validation.checked_at"
TAG_SEAL = "validation.seal"
TAG_REPORT = "validation.report"
TAG_SEAL_BUNDLE = "validation.seal_bundle"
# The unsigned seal: written only when no signing key is configured, read for versions sealed that way.
TAG_MANIFEST = "validation.manifest"
TAG_ALIAS_REVERTED = "validation.alias_reverted"
# The order tags are written in: the seal first (a version is sealed as early as possible), the status
# last (whoever sees a fresh status also sees the report and summary that belong to it).
TAG_ORDER = (TAG_MANIFEST, TAG_SEAL_BUNDLE, TAG_SEAL, TAG_REPORT, TAG_SUMMARY, TAG_CHECKED_AT, TAG_STATUS)

_BADGE = {PASSED: "\u2705 PASSED", FAILED: "\u274c FAILED", ERROR: "\u26a0\ufe0f ERROR"}


def utc_now_iso() -> str:
    """The current time as ISO-8601 UTC with a ``Z`` suffix, to the second."""
    return datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def one_line(text: str | None, limit: int = SUMMARY_LIMIT) -> str:
    """Collapse whitespace to a single line and cut it to ``limit`` characters."""
    line = " ".join(str(text or "").split())
    return line if len(line) <= limit else line[: limit - 1] + "\u2026"


@dataclass
class Verdict:
    """What one validation of one model version concluded.

    ``differences`` (run model vs registry model) and ``seal_differences`` (sealed manifest vs the
    registry model now) are lists of ``core.tree.Difference.to_dict()`` dicts, so a verdict survives a
    round trip through JSON (the results store, a retried publish).
    """

    status: str
    model: str
    version: str
    registry: str
    trigger: str
    summary: str
    differences: list[dict] = field(default_factory=list)
    seal_differences: list[dict] = field(default_factory=list)
    seal_digest: str | None = None
    checked_at: str = field(default_factory=utc_now_iso)
    duration_s: float = 0.0
    error: str | None = None
    action: str = "check"
    # Set only when this validation created the seal: compact manifest JSON for ``validation.manifest``.
    new_seal_json: str | None = None
    # Set only when this validation made the signed seal: where its model-signing bundle is.
    seal_bundle: str | None = None
    # The seal's outcome (core.signed_seal.SealVerification.to_dict()), None without signed seals.
    seal: dict | None = None
    alias: str | None = None
    to_stage: str | None = None
    gate: bool = False
    delivery_key: str | None = None
    # What the guard did to protected aliases because of this verdict ("@champion moved back to version 2").
    alias_reverted: str | None = None

    def __post_init__(self) -> None:
        if self.status not in STATUSES:
            raise ValueError(f"unknown verdict status {self.status!r}")
        self.summary = one_line(self.summary)

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-able dict (the inverse of :meth:`from_dict`)."""
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Verdict:
        """Rebuild a verdict from :meth:`to_dict` output; unknown keys are ignored."""
        known = {f for f in cls.__dataclass_fields__}
        return cls(**{k: v for k, v in data.items() if k in known})

    @classmethod
    def error_verdict(cls, *, model: str, version: str, registry: str, trigger: str, reason: str,
                      action: str = "check", duration_s: float = 0.0, **extra: Any) -> Verdict:
        """An ERROR verdict carrying ``reason`` (user-facing, no secrets)."""
        return cls(status=ERROR, model=model, version=version, registry=registry, trigger=trigger,
                   summary=f"could not check: {one_line(reason, 400)}", error=reason, action=action,
                   duration_s=duration_s, **extra)


# ---------------------------------------------------------------------------------------------- report

def _diff_line(d: dict) -> str:
    kind = d.get("kind", "changed")
    detail = d.get("detail") or {}
    sizes = ", ".join(f"{k}={v}" for k, v in detail.items() if str(k).startswith("size"))
    return f"{d.get('path', '?')} ({kind}{': ' + sizes if sizes else ''})"


def report_dict(verdict: Verdict, max_items: int | None = None) -> dict[str, Any]:
    """The verdict as a report dict; difference lists cut to ``max_items`` each (None = all)."""
    diffs = verdict.differences if max_items is None else verdict.differences[:max_items]
    seal_diffs = verdict.seal_differences if max_items is None else verdict.seal_differences[:max_items]
    truncated = len(diffs) < len(verdict.differences) or len(seal_diffs) < len(verdict.seal_differences)
    report: dict[str, Any] = {
        "status": verdict.status,
        "summary": verdict.summary,
        "registry": verdict.registry,
        "model": verdict.model,
        "version": verdict.version,
        "trigger": verdict.trigger,
        "action": verdict.action,
        "checked_at": verdict.checked_at,
        "duration_s": round(verdict.duration_s, 3),
        "seal": verdict.seal_digest,
        "sealed_now": verdict.new_seal_json is not None or verdict.seal_bundle is not None,
        "seal_detail": _seal_detail(verdict.seal),
        "error": verdict.error,
        "differences_total": len(verdict.differences),
        "seal_differences_total": len(verdict.seal_differences),
        "differences": diffs,
        "seal_differences": seal_diffs,
    }
    if truncated:
        report["truncated"] = True
        report["note"] = (f"difference lists truncated to {max_items} entries each to fit the tag limit; "
                          "the full list is in the listener's results store")
    return report


def _sealed_now_note(verdict: Verdict) -> str:
    if verdict.seal_bundle is not None:
        return " (signed seal made by this validation)"
    return " (unsigned seal made by this validation)" if verdict.new_seal_json is not None else ""


def _seal_detail(seal: dict | None) -> dict | None:
    # The seal's outcome without its difference list (that is already in seal_differences).
    return None if seal is None else {k: v for k, v in seal.items() if k != "differences"}


def _compact(obj: Any) -> str:
    return json.dumps(obj, separators=(",", ":"), ensure_ascii=False, sort_keys=False)


def render_report_json(verdict: Verdict, limit: int = TAG_VALUE_LIMIT) -> str:
    """Compact JSON report strictly shorter than ``limit`` characters.

    Halves the difference lists until it fits, and says so in the report (``truncated``/``note``).
    """
    text = _compact(report_dict(verdict))
    n = max(len(verdict.differences), len(verdict.seal_differences))
    while len(text) >= limit and n > 0:
        n //= 2
        text = _compact(report_dict(verdict, max_items=n))
    if len(text) >= limit:
        # Free text and the seal's detail can still be too long (Unity Catalog allows 1,000 characters).
        rep = report_dict(verdict, max_items=0)
        rep.pop("seal_detail", None)
        rep["error"] = (verdict.error or "")[: max(0, limit // 4)]
        rep["truncated"] = True
        text = _compact(rep)
    if len(text) >= limit:
        # The verdict alone; the summary tag and the store keep the rest.
        text = _compact({"status": verdict.status, "seal": verdict.seal_digest, "truncated": True})
    return text


def render_tags(verdict: Verdict, limit: int = TAG_VALUE_LIMIT) -> dict[str, str]:
    """The ``validation.*`` tags for a model version (every value shorter than ``limit``)."""
    tags = {
        TAG_STATUS: verdict.status,
        TAG_SUMMARY: verdict.summary,
        TAG_CHECKED_AT: verdict.checked_at,
        TAG_REPORT: render_report_json(verdict, limit),
    }
    if verdict.seal_digest:
        tags[TAG_SEAL] = verdict.seal_digest
    if verdict.alias_reverted:
        tags[TAG_ALIAS_REVERTED] = verdict.alias_reverted
    if verdict.new_seal_json is not None:
        if len(verdict.new_seal_json) >= limit:
            # core keeps manifests under the limit; this guards against a caller passing a raw one.
            raise ValueError("seal manifest JSON exceeds the tag value limit")
        tags[TAG_MANIFEST] = verdict.new_seal_json
    if verdict.seal_bundle:
        tags[TAG_SEAL_BUNDLE] = verdict.seal_bundle
    return tags


def ordered_tags(tags: dict[str, str]) -> list[str]:
    """The keys of ``tags`` in :data:`TAG_ORDER` (keys it does not name first)."""
    return sorted(tags, key=lambda k: TAG_ORDER.index(k) if k in TAG_ORDER else -1)


# ----------------------------------------------------------------------------------------- description

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
        f"- Trigger: {_md_safe(verdict.trigger)} ({verdict.action.replace('_', ' ')}), "
        f"checked at {_md_safe(verdict.checked_at)}",
    ]
    if verdict.seal_digest:
        sealed = _sealed_now_note(verdict)
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
            lines.append(f"  - \u2026 and {len(paths) - DESCRIPTION_MAX_PATHS} more (see tag `{TAG_REPORT}`)")
    lines.append(f"- Took {verdict.duration_s:.2f} s")
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


# -------------------------------------------------------------------------------------------- comment

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
    text = "\n".join(head + body + tail)
    while len(text) > limit and len(body) > 1:
        # Drop listed files from the end until it fits; say how many were left out.
        body = body[:-2] + [f"- \u2026 (list shortened to fit the {limit}-character comment limit)"]
        text = "\n".join(head + body + tail)
    return text[:limit]
