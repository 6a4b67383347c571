"""The local stack's console: the launcher's own lines and one line per verdict; all else goes to files.

A verdict line (``PASSED guard-demo v1 @champion 0.03 s``, coloured on a terminal unless ``NO_COLOR``
is set) is read from the results store the worker writes. The processes' own logs are in
``GUARD_DATA_DIR/logs/``; the launcher's lines are also kept there (``stack.log``), so they outlive a
closed terminal.

A console that goes away (terminal closed, ``| head -1`` done, ``| tee`` interrupted) is noticed by
:meth:`Console.gone`, and a write that fails on it is not an error: the launcher then stops the stack
and keeps writing to its log file only.
"""

from __future__ import annotations

import contextlib
import logging
import os
import select
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from listener.store import get_store
from listener.web.status import duration

FINAL = ("PASSED", "FAILED", "ERROR")
COLOURS = {"PASSED": "\033[32m", "FAILED": "\033[31m", "ERROR": "\033[33m"}
RESET = "\033[0m"
RECENT_ROWS = 50

log = logging.getLogger(__name__)


class Console:
    """Lines for the person who ran ``make run``: on stdout while it is there, and in a log file."""

    def __init__(self, log_path: Path | None = None) -> None:
        self.log_path = log_path
        self.broken = False
        self.on_gone: Callable[[], None] | None = None  # called once, when the console goes away
        self.colour = sys.stdout.isatty() and not os.environ.get("NO_COLOR")

    def say(self, line: str = "") -> None:
        """Write one line; a console that is gone is left alone from then on."""
        if self.log_path is not None:
            with contextlib.suppress(OSError), open(self.log_path, "a", encoding="utf-8") as fh:
                fh.write(f"{time.strftime('%Y-%m-%d %H:%M:%S')} {line}\n")
        if self.broken:
            return
        try:
            print(line, flush=True)
        except OSError:  # EPIPE from a reader that exited, EIO from a terminal that hung up
            self._detach()

    def gone(self) -> bool:
        """True once stdout's reader has gone (a pipe's reader exited, the terminal hung up)."""
        if not self.broken:
            with contextlib.suppress(OSError, ValueError):
                poller = select.poll()
                poller.register(sys.stdout.fileno(), select.POLLOUT)
                if any(ev & (select.POLLERR | select.POLLHUP) for _, ev in poller.poll(0)):
                    self._detach()
        return self.broken

    def _detach(self) -> None:
        # Point stdout at /dev/null: Python's own flush at exit must not fail on the dead pipe either.
        self.broken = True
        with contextlib.suppress(OSError, ValueError):
            devnull = os.open(os.devnull, os.O_WRONLY)
            os.dup2(devnull, sys.stdout.fileno())
            os.close(devnull)
        if self.on_gone is not None:
            self.on_gone()


def verdict_line(row: dict[str, Any], colour: bool = False) -> str:
    """One finished validation as a console line; FAILED and ERROR say why."""
    status = str(row.get("status"))
    shown = f"{COLOURS[status]}{status}{RESET}" if colour and status in COLOURS else status
    parts = [shown, str(row.get("model")), f"v{row.get('version')}"]
    if row.get("alias"):
        parts.append(f"@{row['alias']}")
    took = duration(row.get("duration_s"))
    if took:
        parts.append(took)
    line = " ".join(parts)
    why = row.get("summary") or row.get("error")
    if status != "PASSED" and why:
        line += f"  {str(why).splitlines()[0][:200]}"
    return line


class VerdictFollower:
    """Prints each verdict stored after it started, once."""

    def __init__(self, store_url: str, emit: Callable[[str], None], colour: bool) -> None:
        self.store_url = store_url
        self.emit = emit
        self.colour = colour
        self.printed: set[int] = set()
        self.started = False

    def _recent(self) -> list[dict[str, Any]] | None:
        try:
            return get_store(self.store_url).recent(limit=RECENT_ROWS)
        except Exception:  # noqa: BLE001 - the worker's own log has the store's trouble; try again later
            log.debug("results store not readable", exc_info=True)
            return None

    def poll(self) -> None:
        """Print the verdicts reached since the last poll (the first poll marks earlier ones as shown)."""
        recent = self._recent()
        if recent is None:
            return
        rows = [r for r in recent if r.get("status") in FINAL and int(r["id"]) not in self.printed]
        for row in sorted(rows, key=lambda r: int(r["id"])):
            self.printed.add(int(row["id"]))
            if self.started:
                self.emit(verdict_line(row, self.colour))
        self.started = True
