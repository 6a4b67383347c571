"""The local stack's alerts: its own receiver (``deploy/alert_receiver.py``) and one console line per alert.

Unless ``GUARD_NOTIFY`` is set, ``make run`` starts the receiver on a free loopback port as one of its
processes and points ``GUARD_NOTIFY`` at it (apprise's ``json://`` scheme), so the default
``GUARD_NOTIFY_ON`` (``failed,error``) verdicts show up as alerts on the stack's console and in
``make demo``. A ``GUARD_NOTIFY`` the user set is used as it is (its URLs are never printed: they may
hold tokens).
"""

from __future__ import annotations

import json
import logging
import socket
import sys
import urllib.error
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Any

from deploy.stack_processes import Child

RECEIVER = Path(__file__).resolve().parent / "alert_receiver.py"
log = logging.getLogger(__name__)


def free_loopback_port() -> int:
    """A port nothing listens on at 127.0.0.1 now (the OS picks it)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def start_receiver(env: dict[str, str], cwd: Path, logs: Path) -> tuple[Child, str]:
    """Start the alert receiver (its prints go to ``logs/alerts.log``); returns it and its base URL."""
    port = free_loopback_port()
    argv = [sys.executable, str(RECEIVER), "--host", "127.0.0.1", "--port", str(port)]
    child = Child("alert receiver", argv, {**env, "PYTHONUNBUFFERED": "1"}, cwd, logs / "alerts.log")
    return child, f"http://127.0.0.1:{port}"


def notify_url(receiver_url: str) -> str:
    """The apprise URL that sends the guard's alerts to the receiver at ``receiver_url``."""
    return "json://" + receiver_url.split("://", 1)[1] + "/alerts"


def read_alerts(receiver_url: str, after: int = 0, timeout: float = 5.0) -> list[dict[str, Any]]:
    """The alerts the receiver kept, numbered above ``after``, oldest first."""
    with urllib.request.urlopen(f"{receiver_url}/alerts?after={after}", timeout=timeout) as resp:
        return list(json.loads(resp.read())["alerts"])


def alert_line(alert: dict[str, Any]) -> str:
    """One received alert as a console line: the verdict, the version, the first finding."""
    fields = alert.get("fields") or {}
    verdict = str(fields.get("Verdict") or "").split(":", 1)[0] or alert.get("type") or "?"
    what = f"{fields.get('Model', '?')} v{fields.get('Version', '?')}" if fields.get("Model") \
        else str(alert.get("title") or "(no title)")
    line = f"ALERT {verdict} {what}"
    if fields.get("Trigger"):
        line += f", {fields['Trigger']}"
    if fields.get("First finding"):
        line += f": {fields['First finding'][:200]}"
    if fields.get("Alias action") not in (None, "", "none"):
        line += f" · {fields['Alias action'][:120]}"
    return line


class AlertFollower:
    """Prints each alert the receiver gets, once."""

    def __init__(self, receiver_url: str, emit: Callable[[str], None]) -> None:
        self.receiver_url = receiver_url
        self.emit = emit
        self.last_id = 0

    def poll(self) -> None:
        """Print the alerts received since the last poll; a receiver that does not answer is tried later."""
        try:
            alerts = read_alerts(self.receiver_url, self.last_id, timeout=2)
        except (urllib.error.URLError, OSError, ValueError, KeyError):
            log.debug("alert receiver not readable", exc_info=True)
            return
        for alert in alerts:
            self.last_id = max(self.last_id, int(alert["id"]))
            self.emit(alert_line(alert))
