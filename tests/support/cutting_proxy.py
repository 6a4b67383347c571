"""A loopback TCP proxy that cuts a connection in the middle of a response body, on purpose.

It forwards bytes both ways between its clients and one upstream server. The first ``cuts``
connections whose responses pass ``cut_after`` bytes are closed abruptly right there (a reset
in the middle of a file), which is what a flaky network or a restarted server does to a
transfer. Runs in threads of the test process; :meth:`stop` closes everything it opened.

With ``tls`` (a server-side :class:`ssl.SSLContext`) it terminates TLS for its clients and forwards
plain HTTP: a tracking server behind HTTPS, as a deployment with a TLS front end has it.
"""

from __future__ import annotations

import contextlib
import socket
import ssl
import struct
import threading


class CuttingProxy:
    """``127.0.0.1:<port>`` → ``upstream``; counts connections and the cuts it made."""

    def __init__(self, upstream_port: int, *, cut_after: int, cuts: int = 1,
                 upstream_host: str = "127.0.0.1", tls: ssl.SSLContext | None = None) -> None:
        self.tls = tls
        self.upstream = (upstream_host, upstream_port)
        self.cut_after = cut_after
        self.cuts_left = cuts
        self.cuts_made = 0
        self.connections = 0
        self._lock = threading.Lock()
        self._sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self._sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self._sock.bind(("127.0.0.1", 0))
        self._sock.listen(64)
        self.port = self._sock.getsockname()[1]
        self._open: set[socket.socket] = set()
        self._stopped = threading.Event()
        self._thread = threading.Thread(target=self._accept, name="cutting-proxy", daemon=True)

    @property
    def url(self) -> str:
        return f"{'https' if self.tls else 'http'}://127.0.0.1:{self.port}"

    def start(self) -> CuttingProxy:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stopped.set()
        self._sock.close()
        with self._lock:
            for s in list(self._open):
                _close(s)
            self._open.clear()
        self._thread.join(timeout=5)

    def _accept(self) -> None:
        while not self._stopped.is_set():
            try:
                client, _ = self._sock.accept()
            except OSError:
                return
            if self.tls is not None:
                try:
                    client.settimeout(10)
                    client = self.tls.wrap_socket(client, server_side=True)
                    client.settimeout(None)
                except OSError:  # the client refused our certificate: what the tests look for
                    _close(client)
                    continue
            try:
                upstream = socket.create_connection(self.upstream, timeout=10)
            except OSError:
                _close(client)
                continue
            with self._lock:
                self.connections += 1
                self._open.update((client, upstream))
            state = {"sent": 0, "cut": False}
            pair = {"pipes": 2}
            threading.Thread(target=self._pipe, args=(client, upstream, None, pair), daemon=True).start()
            threading.Thread(target=self._pipe, args=(upstream, client, state, pair), daemon=True).start()

    def _pipe(self, src: socket.socket, dst: socket.socket, state: dict | None, pair: dict) -> None:
        """Copy ``src`` to ``dst``; for a response direction (``state`` given), maybe cut it."""
        try:
            while True:
                data = src.recv(65536)
                if not data:
                    break
                if state is not None:
                    if self._should_cut(state, len(data)):
                        keep = max(0, self.cut_after - state["sent"])
                        dst.sendall(data[:keep])
                        _reset(dst)
                        _reset(src)
                        return
                    state["sent"] += len(data)
                dst.sendall(data)
        except OSError:
            pass
        finally:
            # A TLS socket closed while the other pipe thread still writes to it would have OpenSSL
            # write into whatever reuses its descriptor (another connection of this process): shut
            # both down to end the other thread, and the last of the two closes them.
            for s in (src, dst):
                with contextlib.suppress(OSError):
                    s.shutdown(socket.SHUT_RDWR)
            with self._lock:
                pair["pipes"] -= 1
                last = pair["pipes"] == 0
                if last:
                    self._open.difference_update((src, dst))
            if last:
                _close(src)
                _close(dst)

    def _should_cut(self, state: dict, incoming: int) -> bool:
        if state["sent"] + incoming <= self.cut_after:
            return False
        with self._lock:
            if self.cuts_left <= 0:
                return False
            self.cuts_left -= 1
            self.cuts_made += 1
        return True


def _reset(s: socket.socket) -> None:
    # SO_LINGER with a zero timeout: close sends a RST, as a dropped connection does. The other pipe
    # thread may be blocked in recv() on this socket, and the kernel releases (and resets) it only once
    # that call returns: shutting the read side wakes it without sending anything to the peer.
    with contextlib.suppress(OSError):
        s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    with contextlib.suppress(OSError):
        s.shutdown(socket.SHUT_RD)
    _close(s)


def _close(s: socket.socket) -> None:
    with contextlib.suppress(OSError):
        s.close()
