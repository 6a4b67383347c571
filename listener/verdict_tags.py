"""A verdict as the ``validation.*`` tags written onto a model version, and its compact JSON report.

Pure: a :class:`~listener.verdict.Verdict` in, strings and dicts out, every value under the registry's limit.
"""

from __future__ import annotations

import json
from typing import Any

from core.tags import (
    TAG_ALIAS_REVERTED,
    TAG_CHECKED_AT,
    TAG_MANIFEST,
    TAG_POLICY,
    TAG_REPORT,
    TAG_SEAL,
    TAG_SEAL_BUNDLE,
    TAG_SEAL_NOTE,
    TAG_STATUS,
    TAG_SUMMARY,
    TAG_VALUE_LIMIT,
)
from listener.protocol.events import BACKFILL_TRIGGER, FIRST_SIGHT_NOTE
from listener.verdict import Verdict

# The order tags are written in: an unsigned seal first (the tag is the seal: a version is sealed as
# early as possible), the status last (whoever sees a fresh status also sees the summary and seal that
# belong to it). MLflow's model page lists a version's tags in the order they were first written, so
# the short human ones go before the seal's digests.
TAG_ORDER = (TAG_MANIFEST, TAG_SUMMARY, TAG_CHECKED_AT, TAG_POLICY, TAG_ALIAS_REVERTED, TAG_SEAL,
             TAG_SEAL_NOTE, TAG_SEAL_BUNDLE, TAG_REPORT, TAG_STATUS)
# Tags that say something about one verdict only: a later verdict without them removes them.
PER_VERDICT_TAGS = (TAG_POLICY, TAG_ALIAS_REVERTED)


def seal_note(verdict: Verdict) -> str | None:
    """How the version's seal was made when not at registration: from its signed attestation, or, for an
    unsigned seal made by a backfill now, ``sealed on first sight (backfill)``."""
    note = (verdict.seal or {}).get("note")
    if note:
        return str(note)
    if verdict.trigger == BACKFILL_TRIGGER and verdict.new_seal_json is not None:
        return FIRST_SIGHT_NOTE
    return None


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
        "seal_note": seal_note(verdict),
        "error": verdict.error,
        "differences_total": len(verdict.differences),
        "seal_differences_total": len(verdict.seal_differences),
        "differences": diffs,
        "seal_differences": seal_diffs,
        "policy": verdict.policy,
    }
    if truncated:
        report["truncated"] = True
        report["note"] = (f"difference lists truncated to {max_items} entries each to fit the tag limit; "
                          "the full list is in the listener's results store")
    return report


def _seal_detail(seal: dict | None) -> dict | None:
    # The seal's outcome without its difference list (that is already in seal_differences), and
    # without the seal store's folder when it is one on the guard's own machine (no local paths leave it).
    if seal is None:
        return None
    return {k: v for k, v in seal.items()
            if k != "differences" and not (k == "location" and "://" not in str(v))}


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
        rep["policy"] = _policy_without_reasons(verdict.policy)
        rep["truncated"] = True
        text = _compact(rep)
    if len(text) >= limit:
        # The verdict alone; the summary tag and the store keep the rest.
        brief: dict[str, Any] = {"status": verdict.status, "seal": verdict.seal_digest, "truncated": True}
        if verdict.policy is not None:
            brief["policy"] = policy_line(verdict.policy, limit // 4)
        text = _compact(brief)
    if len(text) >= limit:
        text = _compact({"status": verdict.status, "truncated": True})
    return text


def _policy_without_reasons(policy: dict | None) -> dict | None:
    if policy is None:
        return None
    checks = policy.get("checks") or []
    return {"status": policy.get("status"),
            "checks": [{"check": c.get("check"), "status": c.get("status")} for c in checks]}


def policy_line(policy: dict, limit: int = TAG_VALUE_LIMIT) -> str:
    """The policy's result in one line shorter than ``limit``: its status, then the checks that did not pass.

    ``PASS (9 checks)``; ``FAIL: serialization, load_predict; WARN: signature``. The reasons are in the
    report tag, the description and the results store.
    """
    checks = policy.get("checks") or []
    named = {status: [str(c.get("check")) for c in checks if c.get("status") == status]
             for status in ("FAIL", "WARN")}
    parts = [f"{status}: {', '.join(names)}" for status, names in named.items() if names]
    line = "; ".join(parts) if parts else f"{policy.get('status', 'PASS')} ({len(checks)} checks)"
    return line if len(line) < limit else line[: max(0, limit - 2)] + "\u2026"


def render_tags(verdict: Verdict, limit: int = TAG_VALUE_LIMIT, with_report: bool = True) -> dict[str, str]:
    """The ``validation.*`` tags for a model version (every value shorter than ``limit``).

    ``with_report=False`` leaves the machine report out (it stays in the results store and
    ``/api/validations``): open-source MLflow's version page sorts tags by name, so a report tag sorts
    before ``validation.status`` and pushes it out of sight.
    """
    tags = {
        TAG_STATUS: verdict.status,
        TAG_SUMMARY: verdict.summary,
        TAG_CHECKED_AT: verdict.checked_at,
    }
    if with_report:
        tags[TAG_REPORT] = render_report_json(verdict, limit)
    if verdict.seal_digest:
        tags[TAG_SEAL] = verdict.seal_digest
    if verdict.alias_reverted:
        tags[TAG_ALIAS_REVERTED] = verdict.alias_reverted
    note = seal_note(verdict)
    if note:
        tags[TAG_SEAL_NOTE] = note[: limit - 1]
    if verdict.policy is not None and verdict.policy.get("status") != "PASS":
        # Only what failed or warned: MLflow's version page sorts tags by name and shows four rows, so a
        # passing policy's tag would push validation.status out of sight (its summary says "policy PASS").
        tags[TAG_POLICY] = policy_line(verdict.policy, limit)
    if verdict.new_seal_json is not None:
        if len(verdict.new_seal_json) >= limit:
            # core keeps manifests under the limit; this guards against a caller passing a raw one.
            raise ValueError("seal manifest JSON exceeds the tag value limit")
        tags[TAG_MANIFEST] = verdict.new_seal_json
    if verdict.seal_bundle:
        tags[TAG_SEAL_BUNDLE] = verdict.seal_bundle
    return tags


def ordered_tags(tags: dict[str, str], order: tuple[str, ...] = TAG_ORDER) -> list[str]:
    """The keys of ``tags`` in ``order`` (:data:`TAG_ORDER` by default; keys it does not name first)."""
    return sorted(tags, key=lambda k: order.index(k) if k in order else -1)
