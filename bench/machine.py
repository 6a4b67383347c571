"""The machine a benchmark ran on, recorded next to its numbers."""

from __future__ import annotations

import contextlib
import datetime as _dt
import os
import platform
import subprocess
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]


def machine_info(packages: tuple[str, ...]) -> dict[str, Any]:
    """CPU, cores, Python, OS, the versions of ``packages``, the commit, the time and the load average."""
    cpu, sha_ni = "unknown", None
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name") and cpu == "unknown":
                cpu = line.split(":", 1)[1].strip()
            if line.startswith("flags") and sha_ni is None:
                # SHA-NI (the x86 SHA extensions) makes SHA-256 several times faster: it sets the floors.
                sha_ni = "yes" if "sha_ni" in line.split(":", 1)[1].split() else "no"
    commit = subprocess.run(["git", "-C", str(REPO), "rev-parse", "--short", "HEAD"], capture_output=True,
                            text=True, check=False).stdout.strip() or None
    try:
        from importlib.metadata import version

        versions = {p: version(p) for p in packages}
    except Exception:  # noqa: BLE001 - only informative
        versions = {}
    return {"cpu": cpu, "sha_ni": sha_ni, "cores": os.cpu_count(), "python": platform.python_version(),
            "os": f"{platform.system()} {platform.release()}", "versions": versions, "commit": commit,
            "date_utc": _dt.datetime.now(_dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
            # Other work on the machine skews every number; recorded so a noisy run can be recognised.
            "loadavg_before": [round(x, 2) for x in os.getloadavg()]}
