"""A tiny HTTP receiver on a free loopback port that records every POST it gets (headers and raw body)."""

from __future__ import annotations

import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


class Receiver:
    """Records deliveries and answers each with ``status`` and a small JSON body."""

    def __init__(self, status: int = 200) -> None:
        self.status = status
        self.received: list[dict[str, Any]] = []
        self._lock = threading.Lock()
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 - stdlib handler name
                raw = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                with outer._lock:
                    outer.received.append({"path": self.path, "headers": dict(self.headers), "raw": raw})
                out = json.dumps({"status": "ignored", "reason": "receiver"}).encode()
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
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_port}"

    def wait(self, count: int = 1, timeout: float = 20.0) -> list[dict[str, Any]]:
        """Wait until at least ``count`` deliveries arrived; return them."""
        deadline = time.monotonic() + timeout
        while True:
            with self._lock:
                got = list(self.received)
            if len(got) >= count:
                return got
            if time.monotonic() > deadline:
                raise TimeoutError(f"expected {count} deliveries, got {len(got)}")
            time.sleep(0.05)

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()
