"""The outcome of :func:`core.check.check_model_version`: :class:`CheckResult`."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from core.policy.model import PolicyResult
from core.seal.manifest import Difference, Manifest
from core.seal.signed import SealRecord, SealVerification
from core.status import PASSED


@dataclass
class CheckResult:
    """Outcome of :func:`check_model_version`.

    ``status`` is ``PASSED`` (exit 0: run model == registry model, and the seal matches if one was
    checked) or ``FAILED`` (exit 1: differences listed in ``differences`` / ``seal_differences``); a
    check that cannot be carried out raises instead. ``manifest`` is the registry model's manifest as
    read now.
    """

    status: str
    exit_code: int
    summary: str
    differences: list[Difference]
    seal_differences: list[Difference]
    manifest: Manifest
    report: dict[str, Any]
    model: str
    version: str
    elapsed_s: float
    seal_checked: bool = False
    # The seal the verdict stands on: the given seal's tree digest, else that of the manifest read now,
    # which is then the version's first seal (``new_seal``, for the caller to record).
    seal_digest: str | None = None
    new_seal: Manifest | None = None
    # With signed seals (``signed_seal`` given): the seal's outcome, and the seal made by this check.
    seal_outcome: SealVerification | None = None
    seal_record: SealRecord | None = None
    # The policy's verdict (None without a policy); a FAIL makes the status FAILED.
    policy: PolicyResult | None = None

    @property
    def passed(self) -> bool:
        """True for status PASSED."""
        return self.status == PASSED

    def to_dict(self) -> dict[str, Any]:
        """Plain-dict form (without the full report)."""
        return {"status": self.status, "exit_code": self.exit_code, "summary": self.summary,
                "model": self.model, "version": self.version, "elapsed_s": round(self.elapsed_s, 4),
                "seal_checked": self.seal_checked,
                "differences": [d.to_dict() for d in self.differences],
                "seal_differences": [d.to_dict() for d in self.seal_differences],
                "tree_digest": self.manifest.tree_digest if self.manifest else None,
                "policy": self.policy.to_dict() if self.policy is not None else None}
