"""Progress of a check's transfers: a hook the CLIs, the worker and tests can listen to.

The core calls the hook from its transfer threads; implementations must be thread-safe and
cheap (it is called once per chunk of about 1 MiB). :class:`ProgressCounter` keeps running
totals under a lock and is what both the terminal display (:mod:`core.remote.terminal`) and a
metrics exporter subclass.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Any, Protocol


class TransferProgress(Protocol):
    """What the core reports while it reads model trees."""

    def planned(self, files: int, nbytes: int) -> None:
        """A tree was listed: ``files`` more files, ``nbytes`` more bytes to read (called per tree)."""

    def transferred(self, nbytes: int) -> None:
        """``nbytes`` more bytes arrived (and were hashed)."""

    def restarted(self, nbytes: int) -> None:
        """A broken transfer was discarded: its ``nbytes`` will be read again from the start."""

    def verified(self, nbytes: int) -> None:
        """One file was read completely and hashed: ``nbytes`` is its size (a monotone counter)."""


class ProgressCounter:
    """Thread-safe running totals of a :class:`TransferProgress`; subclass to act on them."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.started = time.monotonic()
        self.files_total = 0
        self.bytes_total = 0
        self.files_done = 0
        self.bytes_done = 0  # bytes of the current attempts, rewound when one restarts
        self.bytes_verified = 0  # bytes of files completely hashed; never goes down
        self.restarts = 0

    def planned(self, files: int, nbytes: int) -> None:
        with self._lock:
            self.files_total += files
            self.bytes_total += nbytes

    def transferred(self, nbytes: int) -> None:
        with self._lock:
            self.bytes_done += nbytes

    def restarted(self, nbytes: int) -> None:
        with self._lock:
            self.bytes_done -= nbytes
            self.restarts += 1

    def verified(self, nbytes: int) -> None:
        with self._lock:
            self.files_done += 1
            self.bytes_verified += nbytes

    def snapshot(self) -> dict[str, float]:
        """Totals so far, with elapsed seconds and the mean throughput in bytes per second."""
        with self._lock:
            elapsed = time.monotonic() - self.started
            return {"files_total": self.files_total, "files_done": self.files_done,
                    "bytes_total": self.bytes_total, "bytes_done": self.bytes_done,
                    "bytes_verified": self.bytes_verified, "restarts": self.restarts,
                    "elapsed_s": elapsed, "bytes_per_s": self.bytes_done / elapsed if elapsed > 0 else 0.0}


class NoProgress:
    """The hook used when nobody listens."""

    def planned(self, files: int, nbytes: int) -> None:
        pass

    def transferred(self, nbytes: int) -> None:
        pass

    def restarted(self, nbytes: int) -> None:
        pass

    def verified(self, nbytes: int) -> None:
        pass


class LoggingProgress(ProgressCounter):
    """Progress for unattended checks (the worker): a log line at most every ``every_s`` seconds.

    ``on_verified`` (for example a Prometheus counter's ``inc``) receives the size of each file as
    soon as it is completely read and hashed; ``what`` names the check in the log lines.
    """

    def __init__(self, what: str, *, every_s: float = 30.0, logger: Any = None,
                 on_verified: Callable[[int], None] | None = None) -> None:
        super().__init__()
        import logging

        self._what = what
        self._every = every_s
        self._next = time.monotonic() + every_s
        self._log = logger or logging.getLogger("core.remote")
        self._on_verified = on_verified

    def verified(self, nbytes: int) -> None:
        super().verified(nbytes)
        if self._on_verified is not None:
            self._on_verified(nbytes)
        now = time.monotonic()
        if now < self._next:
            return
        self._next = now + self._every
        s = self.snapshot()
        mib = 2**20
        self._log.info("%s: %d/%d files, %.0f/%.0f MiB read, %.1f MiB/s", self._what,
                       s["files_done"], s["files_total"], s["bytes_done"] / mib, s["bytes_total"] / mib,
                       s["bytes_per_s"] / mib)
