"""The whole validation loop on one machine: ``make run``, ``make status``, ``make stop``.

``python deploy/local_stack.py [run|status|stop]`` (``run`` by default):

1. Keeps its state under ``GUARD_DATA_DIR`` (default ``./.guard``): the MLflow store and artifacts, the
   queue, the results, the processes' logs (``logs/``), and generated secrets (mode 0600, created once
   and reused): the webhook signing secret, the Fernet key MLflow encrypts stored webhook secrets with,
   and the seal signing key ``seal-key.pem`` (unless ``GUARD_SIGNING_KEY`` names one).
2. Unless ``MLFLOW_TRACKING_URI`` names an existing server, starts ``mlflow server`` on loopback
   (``MLFLOW_PORT``, default 5000) with a SQLite store and a local artifact root, so the listener reads
   model files in place, and with the variables MLflow needs to deliver webhooks to a loopback address.
3. Starts the Procfile's ``web`` (gunicorn, ``PORT``, default 8000) and ``worker`` (huey consumer) with
   the listener's environment; ``champion`` is a protected alias unless ``GUARD_PROTECTED_ALIASES`` says
   otherwise, so a FAILED version does not keep it. Versions are checked with the starter policy
   ``deploy/policy.example.yaml`` unless ``GUARD_POLICY`` is set (empty: integrity only), and, unless
   ``GUARD_NOTIFY`` is set, alerts go to a local receiver (``deploy/alert_receiver.py``) that the stack
   starts first on a free loopback port and prints one line per alert from (``deploy/stack_alerts.py``).
4. Registers the MLflow webhook (idempotent: a second start updates the same webhook).
5. Prints the banner (MLflow UI, listener, status page, policy, alerts) once everything is up, and
   keeps it with the processes' identities in ``stack.json``; then prints one line per verdict (and
   per alert). Ctrl-C, SIGTERM, a hang-up (terminal closed) or a console that goes away (``| head``)
   stops everything it started, children included, and removes ``stack.json``.

A ``stack.json`` from an earlier run whose processes still run stops a second ``run`` (use ``stop``, or
the running stack); one whose processes are gone is forgotten silently.

Environment: ``GUARD_DATA_DIR``, ``MLFLOW_TRACKING_URI``, ``MLFLOW_PORT``, ``PORT``, ``GUARD_MLFLOW_SECRET``
(use this secret instead of the generated one), ``GUARD_LISTENER_URL`` (the URL an existing MLflow server
can reach the listener at; default ``http://127.0.0.1:$PORT``), ``GUARD_PROTECTED_ALIASES`` (default
``champion``), ``GUARD_POLICY``, ``GUARD_NOTIFY``, ``GUARD_WORKER_THREADS``, ``NO_COLOR``.
"""

from __future__ import annotations

import argparse
import os
import signal
import sys
from pathlib import Path

if __package__ in (None, ""):  # run as a script (make run): import the deploy package from the checkout
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from deploy.stack_console import Console
from deploy.stack_file import banner, read_stack, remove_stack, stale_or_running, stop_stack
from deploy.stack_launch import LocalStack, StackError
from deploy.stack_processes import child_pids

__all__ = ["LocalStack", "StackError", "child_pids", "main"]


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    """Command line; every option defaults to its environment variable."""
    ap = argparse.ArgumentParser(description="Run MLflow, the listener and the worker locally.")
    ap.add_argument("command", nargs="?", choices=("run", "status", "stop"), default="run",
                    help="run the stack (default), print the running stack's banner, or stop it")
    ap.add_argument("--data-dir", type=Path, default=Path(os.environ.get("GUARD_DATA_DIR") or ".guard"))
    ap.add_argument("--port", type=int, default=int(os.environ.get("PORT") or 8000),
                    help="listener port (PORT, default 8000)")
    ap.add_argument("--mlflow-port", type=int, default=int(os.environ.get("MLFLOW_PORT") or 5000),
                    help="port of the MLflow server started here (MLFLOW_PORT, default 5000)")
    return ap.parse_args(argv)


def status(data_dir: Path) -> int:
    """``make status``: the running stack's banner again (0), or say that none runs (1)."""
    stack = read_stack(data_dir)
    if stack is None or not stale_or_running(data_dir):
        Console().say(f"no local stack is running (no live {data_dir / 'stack.json'}); `make run` starts one")
        return 1
    Console().say(banner(stack))
    return 0


def stop(data_dir: Path) -> int:
    """``make stop``: stop the stack of ``data_dir``'s stack file; 0 also when none was running."""
    stopped = stop_stack(data_dir)
    Console().say(f"stopped the local stack (pids {', '.join(map(str, stopped))})" if stopped
                  else "no local stack was running")
    return 0


def run(data_dir: Path, port: int, mlflow_port: int) -> int:
    """``make run``: bring the stack up, follow it until asked to stop, stop it; returns the exit status."""
    data_dir.mkdir(parents=True, exist_ok=True)
    (data_dir / "logs").mkdir(exist_ok=True)
    console = Console(data_dir / "logs" / "stack.log")
    still_up = stale_or_running(data_dir)
    if still_up:
        console.say(f"[local-stack] a stack from an earlier run is still up (pids "
                    f"{', '.join(map(str, still_up))}): stop it with `make stop`, or reuse it")
        return 2
    stack = LocalStack(data_dir=data_dir, port=port, mlflow_port=mlflow_port, console=console,
                       tracking_uri=os.environ.get("MLFLOW_TRACKING_URI") or None,
                       listener_url=os.environ.get("GUARD_LISTENER_URL") or None)

    def request_stop(signum: int, frame: object) -> None:
        stack.stop_requested.set()

    # A hang-up (terminal closed, tmux session killed) stops the stack like Ctrl-C does.
    for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        signal.signal(sig, request_stop)
    code = 0
    try:
        stack.start()
        code = stack.watch()
    except KeyboardInterrupt:
        pass
    except StackError as exc:
        stack.log(f"ERROR: {exc}")
        code = 2
    finally:
        stack.stop()
        remove_stack(data_dir, os.getpid())
        stack.log("stopped")
    return code


def main(argv: list[str] | None = None) -> int:
    """Entry point of ``make run`` / ``make status`` / ``make stop``; returns the exit status."""
    args = parse_args(argv)
    data_dir = args.data_dir.expanduser().resolve()
    if args.command == "status":
        return status(data_dir)
    if args.command == "stop":
        return stop(data_dir)
    return run(data_dir, args.port, args.mlflow_port)


if __name__ == "__main__":
    sys.exit(main())
