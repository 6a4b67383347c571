"""``stack.json``: where a running local stack is and which processes are its own.

The launcher writes it under the data folder once everything is up and removes it when it stops.
``make demo`` reads the addresses, ``make status`` the banner, ``make stop`` the processes, and the next
``make run`` tells a stack that is still up (refuse, say how to stop it) from one that died without
cleaning up (forget it silently).
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import time
from pathlib import Path
from typing import Any

from deploy.stack_processes import child_pids, identity_alive, signal_quietly, stop_pids

STACK_FILE = "stack.json"


def stack_path(data_dir: Path) -> Path:
    """Where the stack file of ``data_dir`` lives."""
    return data_dir / STACK_FILE


def write_stack(data_dir: Path, stack: dict[str, Any]) -> None:
    """Write ``stack`` atomically (a reader never sees half a file)."""
    path = stack_path(data_dir)
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(stack, indent=2) + "\n", encoding="utf-8")
    os.replace(tmp, path)


def read_stack(data_dir: Path) -> dict[str, Any] | None:
    """The stack file's content, or None when there is none (or it is unreadable)."""
    try:
        stack = json.loads(stack_path(data_dir).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return stack if isinstance(stack, dict) else None


def remove_stack(data_dir: Path, launcher_pid: int | None = None) -> None:
    """Remove the stack file; with ``launcher_pid``, only if that launcher wrote it."""
    path = stack_path(data_dir)
    with contextlib.suppress(OSError, ValueError):
        if launcher_pid is None or json.loads(path.read_text(encoding="utf-8")).get("pid") == launcher_pid:
            path.unlink()


def live_pids(stack: dict[str, Any]) -> list[int]:
    """The pids of the stack's recorded processes (launcher first) that still run as themselves."""
    identities = (stack.get("processes") or {}).values()
    return [int(ident.split(":", 1)[0]) for ident in identities
            if isinstance(ident, str) and identity_alive(ident)]


def stale_or_running(data_dir: Path) -> list[int]:
    """Pids of an earlier stack that is still up; a stack file whose processes are gone is removed."""
    stack = read_stack(data_dir)
    if stack is None:
        remove_stack(data_dir)  # an unreadable file cannot describe a running stack
        return []
    alive = live_pids(stack)
    if not alive:
        remove_stack(data_dir)
    return alive


def stop_stack(data_dir: Path, timeout: float = 90.0) -> list[int]:
    """Stop the stack described by the stack file (``make stop``); returns the pids it stopped.

    The launcher is asked first (SIGTERM: it stops its processes in order and removes the file); what
    is left after ``timeout``, or when the launcher is gone, is stopped here with its descendants.
    """
    stack = read_stack(data_dir)
    if stack is None:
        return []
    processes = stack.get("processes") or {}
    alive = live_pids(stack)
    launcher = processes.get("launcher")
    if launcher and identity_alive(launcher):
        pid = int(launcher.split(":", 1)[0])
        signal_quietly(pid, signal.SIGTERM)
        deadline = time.monotonic() + timeout
        while identity_alive(launcher) and time.monotonic() < deadline:
            time.sleep(0.2)
    left = live_pids(stack)
    tree = [child for pid in left for child in child_pids(pid)]
    stop_pids(left + tree)
    remove_stack(data_dir)
    return alive


def alerts_shown(stack: dict[str, Any]) -> str:
    """Where the stack's alerts go, without the URLs a user configured (they may hold tokens)."""
    if stack.get("alert_receiver"):
        return f"{stack['alert_receiver']}/alerts (local receiver; one line per alert below)"
    return "GUARD_NOTIFY (the URLs you set)" if stack.get("notify_configured") else "(none)"


def banner(stack: dict[str, Any]) -> str:
    """What a person needs to start using the stack (from the stack file's content)."""
    listener = stack["listener_url"]
    return "\n".join([
        "",
        "mlflow-version-guard is running:",
        f"  MLflow UI:    {stack['tracking_uri']}",
        f"  Listener:     {listener}   (MLflow webhook -> {listener}/webhooks/mlflow)",
        f"  Status page:  {listener}/",
        f"  Protected:    {stack.get('protected_aliases') or '(no alias)'}",
        f"  Policy:       {stack.get('policy') or '(none: integrity only; GUARD_POLICY is empty)'}",
        f"  Alerts:       {alerts_shown(stack)}",
        f"  Logs:         {Path(stack['data_dir']) / 'logs'}",
        "Register a model (or run `make demo` in another terminal). One line per verdict and alert follows.",
        "Ctrl-C (or `make stop`) stops everything; `make status` shows this again.",
        "",
    ])
