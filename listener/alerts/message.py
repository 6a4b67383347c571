"""One alert message per verdict: what happened to which version, and where to look. Pure.

The message names the model, the version, what triggered the check (an event, the sweep, a
re-verification, a backfill), the verdict, the first differing file or failed policy check, what the
guard did to a protected alias, and a link to the version page. Secrets never reach it: every configured
secret is replaced, and URLs lose their credentials and query strings (:func:`core.errors.redact`).
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from core.errors import redact
from core.status import ERROR, FAILED, PASSED
from listener.protocol.request import origin_of
from listener.verdict import one_line
from listener.worker.alias_gate import REVERIFY_TRIGGER
from listener.worker.sealing import BACKFILL_TRIGGER

_URL = re.compile(r"[A-Za-z][A-Za-z0-9+.-]*://[^\s'\"<>]+")
# apprise's message types, by verdict.
NOTIFY_TYPES = {PASSED: "success", FAILED: "failure", ERROR: "warning"}
MESSAGE_LIMIT = 1500


@dataclass(frozen=True)
class AlertMessage:
    """An alert: ``title``, ``body`` (plain text, one field a line), apprise's ``notify_type``."""

    title: str
    body: str
    notify_type: str


def trigger_kind(verdict: dict[str, Any]) -> str:
    """``event (<name>)``, ``sweep``, ``re-verification`` or ``backfill``."""
    trigger = str(verdict.get("trigger") or "")
    if trigger == REVERIFY_TRIGGER:
        return "re-verification"
    if trigger == BACKFILL_TRIGGER:
        return "backfill"
    if origin_of(str(verdict.get("delivery_key") or "")) == "sweep":
        return f"sweep (missed {trigger})" if trigger else "sweep"
    return f"event ({trigger})" if trigger else "event"


def first_finding(verdict: dict[str, Any]) -> str | None:
    """The first differing file, else the first failed policy check, else the error; None for a pass."""
    for name, label in (("differences", "run vs registry"), ("seal_differences", "vs the seal")):
        diffs = verdict.get(name) or []
        if diffs and isinstance(diffs[0], dict):
            return f"{diffs[0].get('kind', 'differs')} {diffs[0].get('path', '?')} ({label})"
    policy = verdict.get("policy")
    checks = policy.get("checks") if isinstance(policy, dict) else None
    for check in checks if isinstance(checks, list) else []:
        if isinstance(check, dict) and str(check.get("status", "")).upper() == "FAIL":
            return f"policy check {check.get('check', '?')} failed: {check.get('reason', '')}".strip()
    if verdict.get("status") != PASSED and verdict.get("error"):
        return f"error: {verdict['error']}"
    return None


def scrub(text: str, secrets: Iterable[str]) -> str:
    """``text`` with every secret replaced and every URL redacted (no credentials, no query string)."""
    for secret in sorted({s for s in secrets if s and len(s) >= 3}, key=len, reverse=True):
        text = text.replace(secret, "***")
    return _URL.sub(lambda m: _redact_url(m.group(0)), text)


def _redact_url(url: str) -> str:
    # The registry UIs route in the fragment (#/models/...): it stays, credentials and query strings go.
    base, _, fragment = url.partition("#")
    fragment = fragment.split("?", 1)[0]
    return (redact(base) or "") + (f"#{fragment}" if fragment else "")


def compose(verdict: dict[str, Any], link: str | None, secrets: Iterable[str] = ()) -> AlertMessage:
    """The alert for ``verdict`` (a ``Verdict.to_dict()``, read defensively) with ``link`` to its version."""
    status = str(verdict.get("status") or ERROR)
    model, version = verdict.get("model", "?"), verdict.get("version", "?")
    lines = [
        f"Model: {model}",
        f"Version: {version}",
        f"Trigger: {trigger_kind(verdict)}",
        f"Verdict: {status}: {one_line(verdict.get('summary'), 400)}",
    ]
    finding = first_finding(verdict)
    if finding:
        lines.append(f"First finding: {one_line(finding, 400)}")
    lines.append(f"Alias action: {verdict.get('alias_reverted') or 'none'}")
    lines.append(f"Link: {link or 'no registry UI configured (GUARD_UI_URL)'}")
    secrets = list(secrets)
    body = scrub("\n".join(lines), secrets)[:MESSAGE_LIMIT]
    title = scrub(f"Model version guard: {status} {model} version {version}", secrets)
    return AlertMessage(title, body, NOTIFY_TYPES.get(status, "info"))
