"""Reading a verdict as ``make demo`` shows it: the files it names, the seal, the policy's table."""

from __future__ import annotations

from typing import Any


def say(message: str = "") -> None:
    """Print one line at once (the demo is watched live)."""
    print(message, flush=True)


def paths_in_report(report: Any) -> list[str]:
    """Every ``path`` a stored report names among its differences (both comparisons)."""
    found: dict[str, None] = {}

    def walk(node: Any) -> None:
        if isinstance(node, dict):
            if isinstance(node.get("path"), str) and node.get("kind"):
                found.setdefault(node["path"], None)
            for value in node.values():
                walk(value)
        elif isinstance(node, list):
            for value in node:
                walk(value)

    walk(report)
    return list(found)


def report_of(row: dict[str, Any]) -> dict[str, Any]:
    """The stored report of a verdict row from ``/api/validations`` ({} when there is none)."""
    report = row.get("report")
    return report if isinstance(report, dict) else {}


def seal_of(row: dict[str, Any]) -> dict[str, Any]:
    """How the seal check went (``kind``: ``verified``, ``mismatch``, ...; ``reason``), {} without one."""
    seal = report_of(row).get("seal_detail")
    return seal if isinstance(seal, dict) else {}


def policy_of(row: dict[str, Any]) -> dict[str, Any]:
    """The verdict's policy result ``{"status", "checks": [...]}``, {} when no policy applied."""
    policy = row.get("policy") or report_of(row).get("policy")
    return policy if isinstance(policy, dict) else {}


def policy_table(policy: dict[str, Any]) -> list[str]:
    """The policy's checks as aligned lines: status, check, reason."""
    checks = [c for c in policy.get("checks") or [] if isinstance(c, dict)]
    width = max((len(str(c.get("check", ""))) for c in checks), default=0)
    return [f"{str(c.get('status', '?')):<5} {str(c.get('check', '?')):<{width}}  {c.get('reason', '')}"
            for c in checks]


def failed_checks(policy: dict[str, Any]) -> list[dict[str, Any]]:
    """The policy's checks that FAILED."""
    return [c for c in policy.get("checks") or [] if isinstance(c, dict) and c.get("status") == "FAIL"]
