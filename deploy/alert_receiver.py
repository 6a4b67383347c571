"""A tiny local HTTP receiver that prints every alert it gets (for ``make demo``).

Point the guard at it with apprise's generic JSON scheme::

    python deploy/alert_receiver.py --port 8099 &
    GUARD_NOTIFY=json://127.0.0.1:8099/alerts guard-webhooks notify-test

Each POST (apprise's ``json://`` body ``{"title", "message", "type"}``, or a ``form://`` body) is
printed to the terminal as one framed block and answered 200. Nothing is stored.
"""

from __future__ import annotations

import argparse
import json
import sys
import urllib.parse
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


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


def render(alert: dict[str, Any]) -> str:
    """The alert as a framed block of text."""
    title = str(alert.get("title") or "(no title)")
    kind = str(alert.get("type") or "")
    lines = [f"== ALERT [{kind}] {title}" if kind else f"== ALERT {title}"]
    lines += [f"   {line}" for line in str(alert.get("message") or "").splitlines()]
    return "\n".join(lines) + "\n"


class _Handler(BaseHTTPRequestHandler):
    def do_POST(self) -> None:  # noqa: N802 - the standard library's handler name
        raw = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        sys.stdout.write(render(parse_alert(raw, self.headers.get("Content-Type") or "")))
        sys.stdout.flush()
        self.send_response(200)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, *args: Any) -> None:
        pass  # the alert itself is the output


def main(argv: list[str] | None = None) -> int:
    """Serve until interrupted."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8099)
    args = parser.parse_args(argv)
    server = ThreadingHTTPServer((args.host, args.port), _Handler)
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
