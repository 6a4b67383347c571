"""A tiny HTTP receiver on a free loopback port that records every POST it gets (headers and raw body)."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable
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

    @property
    def url(self) -> str:
        return self.base_url + "/hook"

    def events(self) -> list[dict[str, Any]]:
        """The JSON bodies received so far."""
        with self._lock:
            return [json.loads(r["raw"]) for r in self.received]

    def wait_for(self, predicate: Callable[[list[dict[str, Any]]], bool],
                 timeout: float = 20.0) -> list[dict[str, Any]]:
        """Wait until ``predicate(events)`` holds; return the events."""
        deadline = time.monotonic() + timeout
        while not predicate(self.events()):
            if time.monotonic() > deadline:
                raise TimeoutError(f"deliveries not as expected: {self.events()}")
            time.sleep(0.05)
        return self.events()

    def wait(self, count: int = 1, timeout: float = 20.0) -> list[dict[str, Any]]:
        """Wait until at least ``count`` deliveries arrived; return them (headers and raw body)."""
        self.wait_for(lambda evs: len(evs) >= count, timeout)
        with self._lock:
            return list(self.received)

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()
