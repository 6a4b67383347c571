"""Keep-alive ``http.client`` connections to one server, reused across threads: the lean request path.

For thousands of small artifact files, urllib3's request path (target encoding, retry and timeout
objects, its response wrapper with its own buffers and header copy) cost about as much CPU as
``http.client`` itself (profiled). Direct connections to the artifact server go through this pool
instead: a GET is ``http.client``'s request and response, with the connection's TLS context built
once from MLflow's settings (:func:`core.remote.http_transport.ssl_context_for`). A connection the
server has closed while it sat idle is noticed before it is reused, as urllib3 does, so keep-alive
timeouts on the server are not transfer errors. Proxied servers keep urllib3's ``ProxyManager``.
"""

from __future__ import annotations

import http.client
import ssl
import threading
from collections.abc import Mapping
from typing import Any

from urllib3.util import wait_for_read


class PooledResponse:
    """An ``http.client`` response with what :mod:`core.remote.http_transport`'s callers use of urllib3's:
    ``status``, ``headers``, ``read``, ``close``, ``release_conn`` and ``_fp`` (read into directly)."""

    __slots__ = ("_fp", "_conn", "_pool", "status", "headers")

    def __init__(self, raw: http.client.HTTPResponse, conn: http.client.HTTPConnection,
                 pool: KeepAlivePool) -> None:
        self._fp, self._conn, self._pool = raw, conn, pool
        self.status = raw.status
        self.headers = raw.headers

    def read(self, amt: int | None = None) -> bytes:
        """Up to ``amt`` bytes of the body (all of it when None)."""
        return self._fp.read(amt)

    def close(self) -> None:
        """Drop the response and its connection (unread bytes would start the next answer)."""
        self._fp.close()
        if self._conn is not None:
            self._conn.close()
            self._conn = None

    def release_conn(self) -> None:
        """Give the connection back to the pool, unless it was closed."""
        if self._conn is not None:
            self._pool.put(self._conn)
            self._conn = None


class KeepAlivePool:
    """Idle keep-alive connections to ``host:port`` (TLS with ``context`` when given), at most ``maxsize``
    kept; a thread with none idle opens a new one."""

    def __init__(self, host: str, port: int | None, context: ssl.SSLContext | None, maxsize: int) -> None:
        self.host, self.port, self.context, self.maxsize = host, port, context, maxsize
        self._idle: list[http.client.HTTPConnection] = []
        self._lock = threading.Lock()

    def _take(self, connect_timeout: float, read_timeout: float) -> http.client.HTTPConnection:
        with self._lock:
            conn = self._idle.pop() if self._idle else None
        # Readable while idle means the server closed it (or sent junk): do not send on it.
        if conn is not None and (conn.sock is None or wait_for_read(conn.sock, timeout=0.0)):
            conn.close()
            conn = None
        if conn is None:
            if self.context is not None:
                conn = http.client.HTTPSConnection(self.host, self.port, timeout=connect_timeout,
                                                   context=self.context)
            else:
                conn = http.client.HTTPConnection(self.host, self.port, timeout=connect_timeout)
            try:
                conn.connect()
            except BaseException:
                conn.close()
                raise
            conn.sock.settimeout(read_timeout)
        return conn

    def put(self, conn: http.client.HTTPConnection) -> None:
        """A connection whose last response was read to its end, ready for the next request."""
        with self._lock:
            if len(self._idle) < self.maxsize:
                self._idle.append(conn)
                return
        conn.close()

    def get(self, target: str, headers: Mapping[str, str], connect_timeout: float,
            read_timeout: float) -> PooledResponse:
        """GET ``target``; the response with its headers read. Connection errors are raised as they come
        (``OSError``, ``ssl.SSLError``, ``http.client.HTTPException``), the connection closed."""
        conn = self._take(connect_timeout, read_timeout)
        try:
            # http.client adds Host and "Accept-Encoding: identity": bodies arrive as stored.
            conn.request("GET", target, headers=headers)
            raw: Any = conn.getresponse()
        except BaseException:
            conn.close()
            raise
        return PooledResponse(raw, conn, self)
