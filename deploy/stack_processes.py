"""The local stack's processes: started with their logs in files, found again by identity, stopped whole.

Each process the launcher starts gets its own session, so a terminal's signals (Ctrl-C, hang-up) reach
the launcher only, and the launcher stops the processes in order. On Linux each also asks the kernel
for SIGTERM when the launcher dies (``PR_SET_PDEATHSIG``), so even a launcher killed with SIGKILL
leaves nothing running.

A process is named by its pid and its start time (``/proc/PID/stat`` field 22), so a pid that the
system has since given to another program is never taken for one of ours.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from pathlib import Path

from listener.store.owners import pid_alive

STOP_TIMEOUT_S = 15.0
_PR_SET_PDEATHSIG = 1


class StackError(RuntimeError):
    """The stack could not start; the message says why and what to do."""


def port_is_free(port: int, host: str = "127.0.0.1") -> bool:
    """True when nothing listens on ``host:port``."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind((host, port))
        except OSError:
            return False
    return True


def _parents() -> dict[int, list[int]]:
    parents: dict[int, list[int]] = {}
    proc = Path("/proc")
    if proc.is_dir():
        for entry in proc.iterdir():
            if not entry.name.isdigit():
                continue
            try:
                stat = (entry / "stat").read_text()
            except OSError:
                continue
            # The command name may contain spaces and parentheses: fields start after the last ')'.
            ppid = int(stat.rsplit(")", 1)[1].split()[1])
            parents.setdefault(ppid, []).append(int(entry.name))
        return parents
    out = subprocess.run(["ps", "-A", "-o", "pid=,ppid="], capture_output=True, text=True, check=False)
    for line in out.stdout.splitlines():
        fields = line.split()
        if len(fields) == 2:
            parents.setdefault(int(fields[1]), []).append(int(fields[0]))
    return parents


def child_pids(pid: int) -> list[int]:
    """Every descendant of ``pid`` (children, grandchildren, ...), read from /proc or ``ps``."""
    parents = _parents()
    found: list[int] = []
    todo = [pid]
    while todo:
        for child in parents.get(todo.pop(), []):
            found.append(child)
            todo.append(child)
    return found


def process_identity(pid: int) -> str | None:
    """``"PID:START"`` for a live process (START: its start time in clock ticks since boot), else None.

    Without /proc the pid alone is all there is (``"PID:"``).
    """
    if not pid_alive(pid):
        return None
    try:
        start = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[19]
    except (OSError, IndexError):
        return f"{pid}:"
    return f"{pid}:{start}"


def identity_alive(identity: str) -> bool:
    """True while the process named by ``identity`` (from :func:`process_identity`) still runs."""
    pid_text, _, start = identity.partition(":")
    if not pid_text.isdigit():
        return False
    now = process_identity(int(pid_text))
    return now is not None and (not start or now == identity)


def signal_quietly(pid: int, sig: int) -> None:
    """Send ``sig`` to ``pid``; a process that is already gone (or not ours) is not an error."""
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.kill(pid, sig)


def stop_pids(pids: list[int], grace: float = 5.0) -> None:
    """SIGTERM every pid, wait up to ``grace`` seconds, then SIGKILL the ones still there."""
    for pid in pids:
        signal_quietly(pid, signal.SIGTERM)
    deadline = time.monotonic() + grace
    while any(pid_alive(pid) for pid in pids) and time.monotonic() < deadline:
        time.sleep(0.1)
    for pid in pids:
        if pid_alive(pid):
            signal_quietly(pid, signal.SIGKILL)


def _die_with_parent() -> None:
    # Runs in the child between fork and exec: SIGTERM from the kernel when the launcher goes, however
    # it goes (a SIGKILL included).
    if sys.platform.startswith("linux"):
        with contextlib.suppress(OSError, AttributeError):
            ctypes.CDLL(None, use_errno=True).prctl(_PR_SET_PDEATHSIG, int(signal.SIGTERM), 0, 0, 0)


class Child:
    """A process the launcher started, its output in ``log_path``, stopped with every descendant."""

    def __init__(self, name: str, argv: list[str], env: dict[str, str], cwd: Path, log_path: Path) -> None:
        self.name = name
        self.log_path = log_path
        with open(log_path, "ab") as out:  # the child keeps its own copy of the descriptor
            self.proc = subprocess.Popen(argv, env=env, cwd=cwd, stdout=out, stderr=subprocess.STDOUT,
                                         stdin=subprocess.DEVNULL, start_new_session=True,
                                         preexec_fn=_die_with_parent)
        self.identity = process_identity(self.proc.pid) or f"{self.proc.pid}:"

    def running(self) -> bool:
        """True while the process itself has not exited."""
        return self.proc.poll() is None

    def stop(self, timeout: float = STOP_TIMEOUT_S) -> None:
        """SIGTERM the process (it stops its own children), then stop whatever is left of its tree."""
        tree = child_pids(self.proc.pid)
        if self.running():
            signal_quietly(self.proc.pid, signal.SIGTERM)
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.proc.wait(timeout=timeout)
        # Descendants that outlived their parent (other sessions, or a parent that ignored SIGTERM).
        stop_pids([pid for pid in [self.proc.pid, *tree] if pid_alive(pid)])
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.proc.wait(timeout=5)

    def log_tail(self, n: int = 3000) -> str:
        """The end of the process's log file."""
        if self.log_path.exists():
            return self.log_path.read_text(errors="replace")[-n:]
        return ""

    def log_mentions(self, text: str) -> bool:
        """True once ``text`` appears in the process's log file."""
        with contextlib.suppress(OSError):
            return text in self.log_path.read_text(errors="replace")
        return False


def wait_http(url: str, timeout: float, stopping: Callable[[], bool], child: Child | None = None) -> None:
    """Poll ``url`` until it answers 2xx; fail early if ``child`` exits or ``stopping()`` says so."""
    deadline = time.monotonic() + timeout
    last: Exception | None = None
    while time.monotonic() < deadline:
        if stopping():
            raise KeyboardInterrupt
        if child is not None and not child.running():
            raise StackError(f"{child.name} exited with {child.proc.returncode} before {url} answered "
                             f"(log: {child.log_path})\n{child.log_tail()}")
        try:
            with urllib.request.urlopen(url, timeout=2) as resp:
                if 200 <= resp.status < 300:
                    return
        except (urllib.error.URLError, ConnectionError, OSError) as exc:
            last = exc
        time.sleep(0.25)
    raise StackError(f"{url} did not answer within {timeout:.0f}s ({last})")
