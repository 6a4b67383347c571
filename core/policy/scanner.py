"""Pickle scanning through ``modelaudit-picklescan``: a static opcode walker, nothing is unpickled.

Why this library (see docs/policies.md): its engine is native code that walks pickle opcodes and
reconstructs ``STACK_GLOBAL`` targets without executing anything; it takes bytes (so the guard
feeds it what the comparison already reads, no file needed); it is bounded (opcode budget,
timeout, nested-payload limits) and fails closed: a truncated or malformed scan is "inconclusive",
never "clean". Its call-graph enrichment is switched off: it reads the source of modules a pickle
names, which a gate must not do for an attacker's choice of module.
"""

from __future__ import annotations

from dataclasses import dataclass

CLEAN, SUSPICIOUS, MALICIOUS, INCONCLUSIVE = "clean", "suspicious", "malicious", "inconclusive"
# Findings that name what loading would run. Others (non-allowlisted globals, structure that no
# known writer produces, which a cut-off prefix also shows) are for review: a WARN, not a FAIL.
_DANGEROUS_RULES = frozenset({"DANGEROUS_CALL", "DANGEROUS_GLOBAL", "MALFORMED_STACK_GLOBAL",
                              "EXTENSION_REF", "POST_BUDGET_GLOBAL"})


@dataclass(frozen=True)
class ScanFinding:
    """A pickle's scan: ``verdict`` (clean, suspicious, malicious, inconclusive) and what it named."""

    verdict: str
    dangerous: tuple[str, ...] = ()
    suspicious: tuple[str, ...] = ()
    note: str = ""


def _name(finding) -> str:
    details = finding.details or {}
    ref = details.get("import_reference")
    if not ref and details.get("module") and details.get("name"):
        ref = f"{details['module']}.{details['name']}"
    return str(ref or finding.message)


def scan_pickle(data: bytes | memoryview, source: str, complete: bool = True) -> ScanFinding:
    """Scan pickle bytes; ``complete`` False means ``data`` is only the file's first part."""
    from modelaudit_picklescan import PickleScanner, ScanOptions

    try:
        report = PickleScanner(options=ScanOptions(timeout_s=120.0)).scan_bytes(
            data, source=source, enrich_call_graph=False)
    except Exception as exc:  # the scanner's own failure: no evidence either way, never "clean"
        return ScanFinding(INCONCLUSIVE, note=f"the scanner failed: {str(exc)[:200]}")
    dangerous = tuple(dict.fromkeys(_name(f) for f in report.findings
                                    if f.rule_code in _DANGEROUS_RULES or f.severity.value == "critical"))
    suspicious = tuple(dict.fromkeys(_name(f) for f in report.findings if _name(f) not in dangerous))
    if dangerous or (complete and report.verdict.value == MALICIOUS):
        return ScanFinding(MALICIOUS, dangerous or (report.verdict.value,), suspicious)
    if not complete:
        return ScanFinding(INCONCLUSIVE, (), suspicious, "only the first part was scanned (memory bound)")
    if report.status.value != "complete" or report.verdict.value == "unknown":
        why = "; ".join(n.message for n in report.notices)[:200] if report.notices else report.status.value
        return ScanFinding(INCONCLUSIVE, (), suspicious, why)
    if report.verdict.value == SUSPICIOUS:
        return ScanFinding(SUSPICIOUS, (), suspicious)
    return ScanFinding(CLEAN)
