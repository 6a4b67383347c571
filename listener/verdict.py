"""The outcome of one validation: :class:`Verdict` (statuses: :mod:`core.status`).

How a verdict is written where people look is elsewhere, and pure too: :mod:`listener.verdict_tags`
(the ``validation.*`` tags and the compact report) and :mod:`listener.verdict_text` (the description
section, the Databricks comment). The registry adapters decide where the strings go.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from typing import Any

from core.status import ERROR, STATUSES

# Summaries are one line (the summary tag, the status page, the first line of a comment).
SUMMARY_LIMIT = 500


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
    registry model now) are lists of ``core.compare.tree.Difference.to_dict()`` dicts, so a verdict survives a
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
    # The seal's outcome (core.seal.signed.SealVerification.to_dict()), None without signed seals.
    seal: dict | None = None
    alias: str | None = None
    to_stage: str | None = None
    gate: bool = False
    delivery_key: str | None = None
    # What the guard did to protected aliases because of this verdict ("@champion moved back to version 2").
    alias_reverted: str | None = None
    # The policy's result (core.policy.model.PolicyResult.to_dict(): {"status", "checks": [{"check",
    # "status", "reason"}]}), None when no policy applies.
    policy: dict | None = None

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
