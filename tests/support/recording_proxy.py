"""A forwarding HTTP proxy on a free loopback port that records every request it passes on.

Put between a client and a real server, it shows what the client really asks for (method and path),
without touching either side. With ``basic_auth`` it is also the gate a deployment puts in front of a
tracking server: a request without those credentials gets 401 and is not passed on.
"""

from __future__ import annotations

import base64
import http.client
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import urlsplit

_HOP = {"connection", "keep-alive", "transfer-encoding", "content-length", "host"}


class RecordingProxy:
    """Forwards to ``target`` (``http://host:port``) and keeps ``(method, path)`` of every request."""

    def __init__(self, target: str, *, basic_auth: tuple[str, str] | None = None) -> None:
        parts = urlsplit(target)
        self.requests: list[tuple[str, str]] = []
        self.refused: list[str] = []  # paths answered 401
        self.ranged: list[str] = []  # paths asked for with a Range header, one entry per request
        expected = "Basic " + base64.b64encode(":".join(basic_auth).encode()).decode() if basic_auth else None
        lock = threading.Lock()
        outer = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def _forward(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                if expected is not None and self.headers.get("Authorization") != expected:
                    with lock:
                        outer.refused.append(self.path.split("?", 1)[0])
                    self.send_response(401)
                    self.send_header("WWW-Authenticate", 'Basic realm="mlflow"')
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                    return
                with lock:
                    outer.requests.append((self.command, self.path.split("?", 1)[0]))
                    if self.headers.get("Range"):
                        outer.ranged.append(self.path.split("?", 1)[0])
                upstream = http.client.HTTPConnection(parts.hostname, parts.port, timeout=60)
                try:
                    headers = {k: v for k, v in self.headers.items() if k.lower() not in _HOP}
                    upstream.request(self.command, self.path, body=body or None, headers=headers)
                    resp = upstream.getresponse()
                    data = resp.read()
                finally:
                    upstream.close()
                self.send_response(resp.status)
                for key, value in resp.getheaders():
                    if key.lower() not in _HOP:
                        self.send_header(key, value)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            do_GET = do_POST = do_PATCH = do_PUT = do_DELETE = _forward  # noqa: N815 - stdlib names

            def log_message(self, *args: object) -> None:
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self._server.server_port}"

    def count(self, method: str, path: str) -> int:
        """How many ``method path`` requests went through."""
        return sum(1 for m, p in self.requests if (m, p) == (method, path))

    def start(self) -> RecordingProxy:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()
