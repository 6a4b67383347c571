"""Reports of checks and comparisons: the ``System`` section, human-readable sizes, writing files.

The report layout keeps the top-level keys of the tool this project grew from (``System``,
``Options``/``Config``, ``Version``/``Model_Version_Summary``, ``Comparison``/
``Run_Model_Comparison``, ``Reg_Model_Comparison``, ``Comparison_Summary``; each comparison with
``equals`` and per side ``path`` and ``hash``), and adds what it lacked: the differences, file
counts, bytes compared and elapsed seconds, and a ``Result`` section with the exit status.
"""

from __future__ import annotations

import contextlib
import json
import os
import platform
import sys
import tempfile
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import yaml

from core.status import ERROR, EXIT_CODES, PASSED


def system_info(script: str) -> dict[str, Any]:
    """The report's ``System`` section."""
    try:
        from importlib.metadata import version

        tool_version = version("mlflow-version-guard")
    except Exception:
        tool_version = None
    try:
        from importlib.metadata import version as _v

        mlflow_version = _v("mlflow")
    except Exception:
        mlflow_version = None
    return {
        "script": script,
        "utc_time": datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M:%S"),
        "tool_version": tool_version,
        "mlflow_version": mlflow_version,
        "python_version": platform.python_version(),
        "platform": sys.platform,
    }


def human_bytes(n: int | float) -> str:
    """``1536`` -> ``"1.5 KiB"``."""
    value = float(n)
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if abs(value) < 1024 or unit == "TiB":
            return f"{int(value)} B" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    return f"{value:.1f} TiB"  # pragma: no cover


def to_text(report: dict[str, Any], fmt: str = "json") -> str:
    """The report as JSON (indented) or YAML text."""
    if fmt == "yaml":
        return yaml.safe_dump(report, sort_keys=False, allow_unicode=True, default_flow_style=False)
    return json.dumps(report, indent=2, default=str) + "\n"


def write_report(report: dict[str, Any], path: Path | str) -> None:
    """Write ``report`` to ``path``: YAML for ``.yaml``/``.yml``, JSON otherwise.

    The file is replaced atomically, so a reader never sees half a report.
    """
    path = Path(path)
    fmt = "yaml" if path.suffix.lower() in (".yaml", ".yml") else "json"
    # Round-trip through JSON first so YAML gets plain types only (no Python object tags).
    plain = json.loads(json.dumps(report, default=str))
    text = to_text(plain, fmt)
    if path.parent and not path.parent.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=str(path.parent))
    try:
        os.fchmod(fd, 0o644)  # mkstemp makes it private; a report is meant to be read
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(text)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


def close_report(report: dict[str, Any], status: str, summary: str, elapsed_s: float, *,
                 error: str | None = None, transient: bool = False) -> None:
    """Add the verdict to ``report``: its ``Result`` section and the top-level ``equals``.

    ``equals`` (and ``Comparison.equals``, when there is one) is what users of the original tool read as
    the verdict: true only for PASSED, false for FAILED, null when the check could not be made (ERROR).
    """
    report["Result"] = {"status": status, "exit_code": EXIT_CODES[status], "summary": summary,
                        "error": error, "transient": transient, "elapsed_s": round(elapsed_s, 4)}
    report["equals"] = status == PASSED if status != ERROR else None
    if isinstance(report.get("Comparison"), dict):
        report["Comparison"]["equals"] = status == PASSED
