"""A tiny HTTP receiver on a free loopback port that records what the stand-in delivers to it."""

from __future__ import annotations

import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


class Receiver:
    """Records every POST (headers, raw body) and answers a fixed status."""

    def __init__(self, status: int = 200) -> None:
        self.status = status
        self.received: list[dict[str, Any]] = []
        self._lock = threading.Lock()
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 (stdlib name)
                raw = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                with outer._lock:
                    outer.received.append({"path": self.path, "headers": dict(self.headers), "raw": raw})
                out = json.dumps({"ok": True}).encode()
                self.send_response(outer.status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(out)))
                self.end_headers()
                self.wfile.write(out)

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_port}/hook"

    def events(self) -> list[dict[str, Any]]:
        with self._lock:
            return [json.loads(r["raw"]) for r in self.received]

    def wait(self, predicate, timeout: float = 20.0) -> list[dict[str, Any]]:
        """Wait until ``predicate(events)`` holds; return the events."""
        deadline = time.monotonic() + timeout
        while not predicate(self.events()):
            if time.monotonic() > deadline:
                raise TimeoutError(f"deliveries not as expected: {self.events()}")
            time.sleep(0.1)
        return self.events()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()
