"""A forward HTTP proxy, run as its own process, that records every request it forwards.

A client told to use it (``HTTP_PROXY``) sends absolute-URI requests (``GET http://host:port/path``):
they are forwarded over one upstream connection per client connection, and both connections are
kept alive across requests. A client reaching an ``https`` server through it (``HTTPS_PROXY``) opens
a ``CONNECT host:port`` tunnel and speaks TLS with the server through it. It speaks SOCKS5 on the
same port (``ALL_PROXY=socks5h://…``): a ``CONNECT`` there is a tunnel too. Each forwarded request is
appended to the record file as ``<client port> <method> <target>`` before it is forwarded (the
client's port tells its connections apart; a SOCKS5 tunnel is ``SOCKS5 host:port``). With ``--auth
user:password`` a request without those proxy credentials is answered 407 (refused, in SOCKS5) and
not forwarded.

``python -m tests.support.forward_proxy --port N --record FILE``; :class:`ForwardProxy` starts it
and stops it by its pid.
"""

from __future__ import annotations

import argparse
import base64
import contextlib
import http.client
import socket
import socketserver
import sys
import threading
from collections.abc import Callable
from pathlib import Path
from urllib.parse import urlsplit

from tests.support.procs import ManagedProcess, free_port, wait_tcp

# Hop-by-hop headers (RFC 9110 §7.6.1): about one connection, never forwarded.
_HOP = {"connection", "keep-alive", "proxy-connection", "proxy-authorization", "proxy-authenticate", "te",
        "trailer", "transfer-encoding", "upgrade"}
_CHUNK = 1 << 16


class _Handler(socketserver.StreamRequestHandler):
    """One client connection: requests forwarded one after another, or one CONNECT tunnel."""

    server: _ProxyServer

    def handle(self) -> None:
        if self.rfile.peek(1)[:1] == b"\x05":  # a SOCKS5 client (ALL_PROXY=socks5h://…)
            with contextlib.suppress(OSError, ValueError):
                self._socks5()
            return
        upstreams: dict[tuple[str, int], http.client.HTTPConnection] = {}
        try:
            while self._one_request(upstreams):
                pass
        except (OSError, http.client.HTTPException):
            pass  # a client or server that went away: drop the connection, as a proxy does
        finally:
            for conn in upstreams.values():
                conn.close()

    def _one_request(self, upstreams: dict[tuple[str, int], http.client.HTTPConnection]) -> bool:
        """Forward one request and its response; False when the client connection is done."""
        line = self.rfile.readline(65537).decode("latin-1").strip()
        if not line:
            return False
        words = line.split(" ")
        if len(words) != 3 or not words[0].isalpha():
            self._answer(400, "Bad Request", {}, b"not an HTTP request line")
            return False
        method, target, _version = words
        headers = http.client.parse_headers(self.rfile)
        body = _request_body(self.rfile, headers)
        if self.server.auth and headers.get("Proxy-Authorization") != self.server.auth:
            self._answer(407, "Proxy Authentication Required", {"Proxy-Authenticate": 'Basic realm="proxy"'})
            return True
        self.server.record(f"{self.client_address[1]} {method} {target}")
        if method == "CONNECT":
            self._tunnel(target)
            return False
        parts = urlsplit(target)
        if parts.scheme != "http" or not parts.hostname:
            self._answer(400, "Bad Request", {})
            return False
        key = (parts.hostname, parts.port or 80)
        path = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
        conn = upstreams.setdefault(key, http.client.HTTPConnection(*key, timeout=60))
        for fresh in (conn.sock is None, True):
            try:
                resp = _send(conn, method, path, headers, body)
                break
            except OSError as exc:
                conn.close()  # the server may have closed it while idle: once more on a new one
                if fresh:
                    self._answer(502, "Bad Gateway", {}, f"upstream {key[0]}:{key[1]}: {exc}".encode())
                    return True
        return self._relay(resp) and "close" not in headers.get("Connection", "").lower()

    def _relay(self, resp: http.client.HTTPResponse) -> bool:
        """Send the upstream response on, its body re-framed; False when the client must be closed."""
        out = [f"HTTP/1.1 {resp.status} {resp.reason}\r\n".encode("latin-1")]
        out += [f"{k}: {v}\r\n".encode("latin-1") for k, v in resp.getheaders() if k.lower() not in _HOP]
        if resp.chunked:
            out.append(b"Transfer-Encoding: chunked\r\n")
        elif resp.length is None:
            out.append(b"Connection: close\r\n")  # the body ends when the server closes: so does ours
        self.wfile.write(b"".join(out) + b"\r\n")
        while data := resp.read(_CHUNK):
            self.wfile.write(b"%x\r\n%s\r\n" % (len(data), data) if resp.chunked else data)
        if resp.chunked:
            self.wfile.write(b"0\r\n\r\n")
        self.wfile.flush()
        return resp.chunked or resp.length is not None

    def _tunnel(self, target: str) -> None:
        host, _, port = target.rpartition(":")
        try:
            upstream = socket.create_connection((host.strip("[]"), int(port)), timeout=30)
        except (OSError, ValueError) as exc:
            self._answer(502, "Bad Gateway", {}, f"CONNECT {target}: {exc}".encode())
            return
        self.wfile.write(b"HTTP/1.1 200 Connection established\r\n\r\n")
        self.wfile.flush()
        self._splice(upstream)

    def _socks5(self) -> None:
        """A SOCKS5 CONNECT (RFC 1928; username and password, RFC 1929, with ``--auth``), then a tunnel."""
        read = self.rfile.read
        methods = read(read(2)[1])
        method = 2 if self.server.credentials else 0
        self._send(bytes([5, method if method in methods else 0xFF]))
        if method not in methods:
            return
        if method == 2:
            user = read(read(2)[1])
            password = read(read(1)[0])
            accepted = b"%s:%s" % (user, password) == self.server.credentials.encode()
            self._send(b"\x01\x00" if accepted else b"\x01\x01")
            if not accepted:
                return
        _version, command, _reserved, kind = read(4)
        if kind == 1:
            host = socket.inet_ntoa(read(4))
        elif kind == 4:
            host = socket.inet_ntop(socket.AF_INET6, read(16))
        else:
            host = read(read(1)[0]).decode("idna")
        port = int.from_bytes(read(2), "big")
        if command != 1:  # only CONNECT
            self._send(b"\x05\x07\x00\x01\x00\x00\x00\x00\x00\x00")
            return
        self.server.record(f"{self.client_address[1]} SOCKS5 {host}:{port}")
        try:
            upstream = socket.create_connection((host, port), timeout=30)
        except OSError:
            self._send(b"\x05\x05\x00\x01\x00\x00\x00\x00\x00\x00")  # connection refused
            return
        self._send(b"\x05\x00\x00\x01\x00\x00\x00\x00\x00\x00")
        self._splice(upstream)

    def _send(self, data: bytes) -> None:
        self.wfile.write(data)
        self.wfile.flush()

    def _splice(self, upstream: socket.socket) -> None:
        """Copy bytes both ways between the client and ``upstream`` until both sides are done."""
        upstream.settimeout(None)
        back = threading.Thread(target=_pump, args=(upstream.recv, self.connection), daemon=True)
        back.start()
        _pump(self.rfile.read1, upstream)  # read1: bytes the client sent early are already buffered
        back.join()
        upstream.close()

    def _answer(self, status: int, reason: str, headers: dict[str, str], body: bytes = b"") -> None:
        head = "".join(f"{k}: {v}\r\n" for k, v in {**headers, "Content-Length": str(len(body))}.items())
        self.wfile.write(f"HTTP/1.1 {status} {reason}\r\n{head}\r\n".encode("latin-1") + body)
        self.wfile.flush()


def _send(conn: http.client.HTTPConnection, method: str, path: str, headers: http.client.HTTPMessage,
          body: bytes) -> http.client.HTTPResponse:
    """Send one request upstream with the client's end-to-end headers (its Host and Accept-Encoding too)."""
    conn.putrequest(method, path, skip_host=True, skip_accept_encoding=True)
    for name, value in headers.items():
        if name.lower() not in _HOP | {"content-length"}:
            conn.putheader(name, value)
    if body or method in ("POST", "PUT", "PATCH"):
        conn.putheader("Content-Length", str(len(body)))
    conn.endheaders(body or None)
    return conn.getresponse()


def _request_body(rfile, headers: http.client.HTTPMessage) -> bytes:
    """The request's body, read whole (a chunked one de-chunked)."""
    if "chunked" not in headers.get("Transfer-Encoding", "").lower():
        return rfile.read(int(headers.get("Content-Length") or 0))
    parts = []
    while size := int(rfile.readline().split(b";")[0].strip() or b"0", 16):
        parts.append(rfile.read(size))
        rfile.readline()
    while rfile.readline().strip():  # trailers, up to the blank line
        pass
    return b"".join(parts)


def _pump(read: Callable[[int], bytes], dst: socket.socket) -> None:
    """Copy until ``read`` ends, then end ``dst``'s sending side so the far end sees it."""
    try:
        while data := read(_CHUNK):
            dst.sendall(data)
    except OSError:
        pass
    finally:
        with contextlib.suppress(OSError):
            dst.shutdown(socket.SHUT_WR)


class _ProxyServer(socketserver.ThreadingTCPServer):
    daemon_threads = True
    allow_reuse_address = True
    request_queue_size = 128

    def __init__(self, port: int, record_path: Path, auth: str | None) -> None:
        super().__init__(("127.0.0.1", port), _Handler)
        self.credentials = auth
        self.auth = "Basic " + base64.b64encode(auth.encode()).decode() if auth else None
        self._record = record_path.open("a", encoding="utf-8")
        self._lock = threading.Lock()

    def record(self, line: str) -> None:
        with self._lock:
            self._record.write(line + "\n")
            self._record.flush()


class ForwardProxy(ManagedProcess):
    """This proxy as a process on a free loopback port; :meth:`requests` reads what it forwarded."""

    def __init__(self, root: Path, *, auth: tuple[str, str] | None = None) -> None:
        root.mkdir(parents=True, exist_ok=True)
        self.port = free_port()
        self.record_path = root / "forwarded.txt"
        self.record_path.write_text("")
        argv = [sys.executable, "-m", "tests.support.forward_proxy", "--port", str(self.port),
                "--record", str(self.record_path)]
        if auth:
            argv += ["--auth", ":".join(auth)]
        super().__init__(argv, cwd=Path(__file__).resolve().parents[2], log_path=root / "forward_proxy.log")

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self, timeout: float = 30.0) -> ForwardProxy:
        super().start()
        try:
            wait_tcp(self.port, timeout, self.proc)
        except Exception as exc:
            self.stop()
            raise RuntimeError(f"forward proxy did not start: {exc}\n{self.log_tail()}") from exc
        return self

    def requests(self) -> list[tuple[int, str, str]]:
        """``(client port, method, target)`` of every request forwarded so far, in order."""
        rows = [line.split(" ", 2) for line in self.record_path.read_text().split("\n") if line]
        return [(int(port), method, target) for port, method, target in rows]


def main(argv: list[str] | None = None) -> None:
    """Serve until stopped."""
    args = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    args.add_argument("--port", type=int, required=True)
    args.add_argument("--record", type=Path, required=True)
    args.add_argument("--auth", help="user:password the clients must send as proxy credentials")
    opts = args.parse_args(argv)
    with _ProxyServer(opts.port, opts.record, opts.auth) as server:
        server.serve_forever()


if __name__ == "__main__":
    main()
