"""The local stack's alert receiver, started as ``make run`` starts it, fed by apprise's ``json://``."""

from __future__ import annotations

import json
import urllib.request
from pathlib import Path

from deploy.stack_alerts import AlertFollower, alert_line, notify_url, read_alerts, start_receiver
from deploy.stack_processes import wait_http
from listener.alerts.message import compose
from listener.alerts.send import send
from listener.store.owners import pid_alive

REPO_ROOT = Path(__file__).resolve().parents[2]
REASON = "python_model.pkl: pickle (protocol 5) is denied"


def _verdict(status: str, version: str) -> dict:
    return {"status": status, "model": "guard-demo", "version": version, "trigger": "model_version.created",
            "summary": f"model 'guard-demo' version {version}: policy FAIL", "alias_reverted": None,
            "policy": {"status": "FAIL",
                       "checks": [{"check": "serialization", "status": "FAIL", "reason": REASON}]}}


def test_the_receiver_keeps_each_alert_and_the_console_prints_one_line_per_alert(tmp_path: Path) -> None:
    child, url = start_receiver({}, REPO_ROOT, tmp_path)
    try:
        wait_http(url + "/alerts", 30, lambda: False, child)
        lines: list[str] = []
        follower = AlertFollower(url, lines.append)
        follower.poll()
        assert lines == []

        message = compose(_verdict("FAILED", "3"), "http://127.0.0.1:5000/#/models/guard-demo/versions/3")
        assert [r.ok for r in send([notify_url(url)], message)] == [True]
        follower.poll()
        follower.poll()  # each alert once
        assert lines == ["ALERT FAILED guard-demo v3, event (model_version.created): "
                         f"policy check serialization failed: {REASON}"]

        [kept] = read_alerts(url)
        assert kept["fields"]["Model"] == "guard-demo" and kept["fields"]["Version"] == "3"
        assert kept["title"] == "Model version guard: FAILED guard-demo version 3"
        assert alert_line(kept) == lines[0]
        assert read_alerts(url, after=kept["id"]) == []
        assert "ALERT [failure] Model version guard: FAILED guard-demo version 3" in \
            (tmp_path / "alerts.log").read_text()
        with urllib.request.urlopen(url + "/alerts?after=junk", timeout=5) as resp:
            assert len(json.loads(resp.read())["alerts"]) == 1
    finally:
        child.stop()
    assert not pid_alive(child.proc.pid)
