"""``make demo``'s last act: the alerts the guard sent for the demo's FAILED verdicts, read from the receiver.

``make run`` starts a local alert receiver (``deploy/alert_receiver.py``) and points ``GUARD_NOTIFY``
at it; the receiver keeps the last alerts on ``GET /alerts``. Alerts are sent after each verdict is
stored and published, so this act waits until every FAILED verdict of the demo has its alert.
"""

from __future__ import annotations

import time
import urllib.error
from collections import Counter
from typing import TYPE_CHECKING, Any

from deploy.demo_report import say
from deploy.stack_alerts import alert_line, read_alerts

if TYPE_CHECKING:
    from deploy.demo import Demo

ALERT_TIMEOUT_S = 90.0


def demo_alerts(demo: Demo) -> list[dict[str, Any]]:
    """The receiver's alerts about the versions this demo made, oldest first."""
    mine = set(demo.versions.values())
    return [a for a in read_alerts(str(demo.alerts)) if (a.get("fields") or {}).get("Model") == demo.name
            and (a.get("fields") or {}).get("Version") in mine]


def verdict_of(alert: dict[str, Any]) -> str:
    """``FAILED``, ``ERROR`` or ``PASSED``: the first word of the alert's ``Verdict`` field."""
    return str((alert.get("fields") or {}).get("Verdict") or "").split(":", 1)[0]


def alerts_for_failed(demo: Demo) -> bool:
    """Act 5: one alert per FAILED verdict of the demo, none for a PASSED one, as the receiver got them."""
    if not demo.alerts:
        say("this stack sends its alerts to the GUARD_NOTIFY you set, not to a local receiver: look there")
        return True
    expected = Counter(r["version"] for r in demo.verdicts if r["status"] == "FAILED")
    say(f"waiting for {sum(expected.values())} alert(s) at {demo.alerts}/alerts ...")
    deadline = time.monotonic() + ALERT_TIMEOUT_S
    alerts: list[dict[str, Any]] = []
    while True:
        try:
            alerts = demo_alerts(demo)
        except (urllib.error.URLError, OSError, ValueError, KeyError) as exc:
            say(f"the alert receiver at {demo.alerts} does not answer ({exc}); is `make run` up?")
            return False
        got = Counter(a["fields"]["Version"] for a in alerts if verdict_of(a) == "FAILED")
        if not expected - got or time.monotonic() > deadline:
            break
        time.sleep(0.5)
    for alert in alerts:
        say(f"  {alert_line(alert)}")
    passed = [a for a in alerts if verdict_of(a) == "PASSED"]
    missing = expected - got
    say(f"  {sum(got.values())} alert(s) for {sum(expected.values())} FAILED verdict(s); "
        f"{len(passed) or 'none'} for PASSED ones (GUARD_NOTIFY_ON: failed,error by default)")
    if missing:
        say(f"unexpected: no alert yet for FAILED verdict(s) of version(s) {', '.join(sorted(missing))}")
    return not missing and not passed
