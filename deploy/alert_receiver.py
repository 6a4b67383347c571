"""A tiny local HTTP receiver that prints every alert it gets (``make run`` starts one; ``make demo``).

Point the guard at it with apprise's generic JSON scheme::

    python deploy/alert_receiver.py --port 8099 &
    GUARD_NOTIFY=json://127.0.0.1:8099/alerts guard-webhooks notify-test

Each POST (apprise's ``json://`` body ``{"title", "message", "type"}``, or a ``form://`` body) is
printed as one framed block and answered 200. The last alerts (:data:`KEPT`) are also kept in memory
and served on ``GET /alerts`` (``?after=ID``: only newer ones), newest last, each with its ``id``, the
time it arrived, its fields and its message's ``Key: value`` lines; ``make run`` prints one line per
alert from there, and ``make demo`` reads them. Nothing is written to disk.
"""

from __future__ import annotations

import argparse
import itertools
import json
import sys
import threading
import time
import urllib.parse
from collections import deque
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

KEPT = 200


def parse_alert(raw: bytes, content_type: str) -> dict[str, Any]:
    """The alert's fields from a JSON or form body (unparseable bodies are shown as text)."""
    text = raw.decode("utf-8", errors="replace")
    if "json" in content_type:
        try:
            data = json.loads(text)
            return data if isinstance(data, dict) else {"message": text}
        except ValueError:
            return {"message": text}
    if "form" in content_type:
        return {k: v[-1] for k, v in urllib.parse.parse_qs(text).items()}
    return {"message": text}


def message_fields(message: str) -> dict[str, str]:
    """The ``Key: value`` lines of an alert's message (the guard writes one field a line)."""
    fields = {}
    for line in message.splitlines():
        key, sep, value = line.partition(": ")
        if sep and key.strip() and key.strip() not in fields:
            fields[key.strip()] = value.strip()
    return fields


def render(alert: dict[str, Any]) -> str:
    """The alert as a framed block of text."""
    title = str(alert.get("title") or "(no title)")
    kind = str(alert.get("type") or "")
    lines = [f"== ALERT [{kind}] {title}" if kind else f"== ALERT {title}"]
    lines += [f"   {line}" for line in str(alert.get("message") or "").splitlines()]
    return "\n".join(lines) + "\n"


class AlertLog:
    """The last :data:`KEPT` alerts, numbered from 1 in the order they arrived."""

    def __init__(self, kept: int = KEPT) -> None:
        self._alerts: deque[dict[str, Any]] = deque(maxlen=kept)
        self._ids = itertools.count(1)
        self._lock = threading.Lock()

    def add(self, alert: dict[str, Any]) -> None:
        """Keep ``alert`` (its title, message, type and the message's fields)."""
        message = str(alert.get("message") or "")
        with self._lock:
            self._alerts.append({"id": next(self._ids), "received_at": time.strftime("%Y-%m-%dT%H:%M:%SZ",
                                                                                     time.gmtime()),
                                 "title": str(alert.get("title") or ""), "type": str(alert.get("type") or ""),
                                 "message": message, "fields": message_fields(message)})

    def after(self, last_id: int = 0) -> list[dict[str, Any]]:
        """The kept alerts numbered above ``last_id``, oldest first."""
        with self._lock:
            return [a for a in self._alerts if a["id"] > last_id]


class _Handler(BaseHTTPRequestHandler):
    alerts: AlertLog  # set on the class built by make_server

    def do_POST(self) -> None:  # noqa: N802 - the standard library's handler name
        raw = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        alert = parse_alert(raw, self.headers.get("Content-Type") or "")
        self.alerts.add(alert)
        sys.stdout.write(render(alert))
        sys.stdout.flush()
        self._answer(200, b"")

    def do_GET(self) -> None:  # noqa: N802 - the standard library's handler name
        url = urllib.parse.urlsplit(self.path)
        if url.path.rstrip("/") != "/alerts":
            self._answer(404, b'{"error": "GET /alerts"}')
            return
        after = urllib.parse.parse_qs(url.query).get("after", ["0"])[-1]
        last_id = int(after) if after.isdigit() else 0
        self._answer(200, json.dumps({"alerts": self.alerts.after(last_id)}).encode())

    def _answer(self, status: int, body: bytes) -> None:
        self.send_response(status)
        if body:
            self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: Any) -> None:
        pass  # the alert itself is the output


def make_server(host: str, port: int) -> ThreadingHTTPServer:
    """A receiver on ``host:port`` (0: any free port) with its own alert log."""
    handler = type("AlertHandler", (_Handler,), {"alerts": AlertLog()})
    return ThreadingHTTPServer((host, port), handler)


def main(argv: list[str] | None = None) -> int:
    """Serve until interrupted (Ctrl-C or SIGTERM)."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8099)
    args = parser.parse_args(argv)
    server = make_server(args.host, args.port)
    print(f"alert receiver on http://{args.host}:{server.server_port} "
          f"(GUARD_NOTIFY=json://{args.host}:{server.server_port}/alerts)", flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
