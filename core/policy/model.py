"""What a policy check says: one :class:`CheckOutcome` per check, one :class:`PolicyResult` per version."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

PASS, WARN, FAIL = "PASS", "WARN", "FAIL"
_RANK = {PASS: 0, WARN: 1, FAIL: 2}


def worst(statuses: list[str]) -> str:
    """The most severe of ``statuses`` (FAIL > WARN > PASS); PASS when there are none."""
    return max(statuses, key=_RANK.__getitem__, default=PASS)


@dataclass(frozen=True)
class CheckOutcome:
    """One check's verdict: ``status`` is PASS, WARN or FAIL; ``reason`` one line naming what it found."""

    check: str
    status: str
    reason: str

    def __post_init__(self) -> None:
        if self.status not in _RANK:
            raise ValueError(f"check status must be PASS, WARN or FAIL, not {self.status!r}")

    def to_dict(self) -> dict[str, str]:
        """``{"check", "status", "reason"}``."""
        return {"check": self.check, "status": self.status, "reason": self.reason}


@dataclass
class PolicyResult:
    """The policy's verdict on one version: ``status`` is the worst of ``checks`` (PASS when none).

    Build it with :meth:`of`, which computes the status from the checks.
    """

    status: str
    checks: list[CheckOutcome] = field(default_factory=list)

    @classmethod
    def of(cls, checks: list[CheckOutcome]) -> PolicyResult:
        """The result of ``checks``, with their worst status."""
        return cls(worst([c.status for c in checks]), list(checks))

    @property
    def failed(self) -> list[CheckOutcome]:
        """The checks that failed."""
        return [c for c in self.checks if c.status == FAIL]

    def to_dict(self) -> dict[str, Any]:
        """``{"status": "PASS|WARN|FAIL", "checks": [{"check", "status", "reason"}, …]}``."""
        return {"status": self.status, "checks": [c.to_dict() for c in self.checks]}
