"""Who holds a job: owner tokens and whether their worker still lives.

An owner is ``host:pid:nonce``. Liveness is the heartbeat everywhere; on the owner's own host the process
must also exist, so a worker killed there is recognised at once. A pid is never checked for another host:
that host's job is recovered once its heartbeat is older than ``stale_after``.
"""

from __future__ import annotations

import os
import socket
import uuid
from pathlib import Path

# A running job's owner refreshes its heartbeat every few seconds; older than this = owner is gone.
STALE_AFTER_S = 30.0


def owner_id() -> str:
    """A fresh owner token ``host:pid:nonce`` for one execution of one job."""
    return f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:12]}"


def pid_alive(pid: int) -> bool:
    """True while process ``pid`` of this host exists and is not a zombie (exited, not yet reaped)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except (OSError, IndexError):
        return True  # no /proc (or the process just went): os.kill said it exists


def owner_alive(owner: str | None, heartbeat: float | None, now: float,
                stale_after: float = STALE_AFTER_S) -> bool:
    """True when the worker that holds a job is still working on it (fresh heartbeat; same host: pid)."""
    if not owner or heartbeat is None or now - heartbeat > stale_after:
        return False
    host, _, rest = owner.partition(":")
    pid = rest.partition(":")[0]
    if host == socket.gethostname() and pid.isdigit():
        return pid_alive(int(pid))
    return True
