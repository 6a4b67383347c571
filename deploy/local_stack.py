"""The whole validation loop on one machine: ``make run`` (or ``python deploy/local_stack.py``).

1. Keeps its state under ``GUARD_DATA_DIR`` (default ``./.guard``): the MLflow store and artifacts, the
   queue, the results, and two generated secrets (files with mode 0600, created once and reused):
   the webhook signing secret and the Fernet key MLflow encrypts stored webhook secrets with; and the
   seal signing key ``seal-key.pem`` (mode 0600, unless ``GUARD_SIGNING_KEY`` names one), passed to web
   and worker as ``GUARD_SIGNING_KEY``.
2. Unless ``MLFLOW_TRACKING_URI`` names an existing server, starts ``mlflow server`` on loopback
   (``MLFLOW_PORT``, default 5000) with a SQLite store and a local artifact root, so the listener reads
   model files in place, and with the variables MLflow needs to deliver webhooks to a loopback address.
3. Starts the Procfile's ``web`` (gunicorn, ``PORT``, default 8000) and ``worker`` (huey consumer) through
   honcho, with the listener's environment.
4. Registers the MLflow webhook (idempotent: a second start updates the same webhook).
5. Prints the MLflow UI, listener and status page URLs (and keeps them in ``stack.json`` under the data
   folder, for ``make demo``) and runs until Ctrl-C (SIGINT) or SIGTERM, then stops everything it
   started, children included, and removes ``stack.json``.

Environment: ``GUARD_DATA_DIR``, ``MLFLOW_TRACKING_URI``, ``MLFLOW_PORT``, ``PORT``, ``GUARD_MLFLOW_SECRET``
(use this secret instead of the generated one), ``GUARD_LISTENER_URL`` (the URL an existing MLflow server
can reach the listener at; default ``http://127.0.0.1:$PORT``), ``GUARD_WORKER_THREADS``.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from pathlib import Path

from listener.registries.webhook_registration import ensure_mlflow_webhook
from listener.store.owners import pid_alive

REPO_ROOT = Path(__file__).resolve().parents[1]
VENV_BIN = Path(sys.executable).parent
WEBHOOK_NAME = "mlflow-version-guard-local"
STOP_TIMEOUT_S = 15.0
STACK_FILE = "stack.json"  # the running stack's addresses, read by `make demo` (deploy/demo.py)


class StackError(RuntimeError):
    """The stack could not start; the message says why and what to do."""


def log(message: str) -> None:
    """A launcher line, marked so it stands out between the processes' own logs."""
    print(f"[local-stack] {message}", flush=True)


# ------------------------------------------------------------------------------------------ secret files


def read_or_create_secret(path: Path, make: Callable[[], str]) -> str:
    """The secret stored in ``path``, created once with ``make()`` and kept readable by the owner only."""
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        if path.stat().st_mode & 0o077:
            os.chmod(path, 0o600)
        value = path.read_text().strip()
        if not value:
            raise StackError(f"{path} is empty; delete it to generate a new secret") from None
        return value
    value = make()
    with os.fdopen(fd, "w") as fh:
        fh.write(value + "\n")
    return value


def _fernet_key() -> str:
    from cryptography.fernet import Fernet

    return Fernet.generate_key().decode()


def _webhook_secret() -> str:
    return secrets.token_urlsafe(32)


# ------------------------------------------------------------------------------------------------ process


def port_is_free(port: int, host: str = "127.0.0.1") -> bool:
    """True when nothing listens on ``host:port``."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind((host, port))
        except OSError:
            return False
    return True


def child_pids(pid: int) -> list[int]:
    """Every descendant of ``pid`` (children, grandchildren, ...), read from /proc or ``ps``."""
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
    else:
        out = subprocess.run(["ps", "-A", "-o", "pid=,ppid="], capture_output=True, text=True, check=False)
        for line in out.stdout.splitlines():
            fields = line.split()
            if len(fields) == 2:
                parents.setdefault(int(fields[1]), []).append(int(fields[0]))
    found: list[int] = []
    todo = [pid]
    while todo:
        for child in parents.get(todo.pop(), []):
            found.append(child)
            todo.append(child)
    return found


def _signal_quietly(pid: int, sig: int, group: bool = False) -> None:
    try:
        if group:
            os.killpg(pid, sig)
        else:
            os.kill(pid, sig)
    except (ProcessLookupError, PermissionError):
        pass


class Child:
    """A process the launcher started in its own session, stopped with every descendant it has."""

    def __init__(self, name: str, argv: list[str], env: dict[str, str], log_path: Path | None = None) -> None:
        self.name = name
        out = open(log_path, "ab") if log_path else None  # noqa: SIM115 - kept open for the child's life
        self.proc = subprocess.Popen(argv, env=env, cwd=REPO_ROOT, stdout=out, stderr=subprocess.STDOUT if out
                                     else None, stdin=subprocess.DEVNULL, start_new_session=True)
        self.log_path = log_path

    def running(self) -> bool:
        return self.proc.poll() is None

    def stop(self, timeout: float = STOP_TIMEOUT_S) -> None:
        """SIGTERM the process (it stops its own children), then SIGKILL whatever is left of the tree."""
        tree = child_pids(self.proc.pid)
        if self.running():
            _signal_quietly(self.proc.pid, signal.SIGTERM)
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.proc.wait(timeout=timeout)
        # Descendants that outlived their parent (other sessions, or a parent that ignored SIGTERM).
        leftovers = [pid for pid in [self.proc.pid, *tree] if pid_alive(pid)]
        for pid in leftovers:
            _signal_quietly(pid, signal.SIGTERM)
        deadline = time.monotonic() + 5
        while any(pid_alive(pid) for pid in leftovers) and time.monotonic() < deadline:
            time.sleep(0.1)
        for pid in leftovers:
            if pid_alive(pid):
                _signal_quietly(pid, signal.SIGKILL)
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.proc.wait(timeout=5)

    def log_tail(self, n: int = 3000) -> str:
        if self.log_path and self.log_path.exists():
            return self.log_path.read_text(errors="replace")[-n:]
        return ""


def wait_http(url: str, timeout: float, stop: threading.Event, child: Child | None = None) -> None:
    """Poll ``url`` until it answers 2xx; fail early if ``child`` exits or a stop was requested."""
    deadline = time.monotonic() + timeout
    last: Exception | None = None
    while time.monotonic() < deadline:
        if stop.is_set():
            raise KeyboardInterrupt
        if child is not None and not child.running():
            raise StackError(f"{child.name} exited with {child.proc.returncode} before {url} answered"
                             + (f"\n{child.log_tail()}" if child.log_path else ""))
        try:
            with urllib.request.urlopen(url, timeout=2) as resp:
                if 200 <= resp.status < 300:
                    return
        except (urllib.error.URLError, ConnectionError, OSError) as exc:
            last = exc
        stop.wait(0.25)
    raise StackError(f"{url} did not answer within {timeout:.0f}s ({last})")


# -------------------------------------------------------------------------------------------------- stack


class LocalStack:
    """Starts, registers, reports and stops the local processes."""

    def __init__(self, data_dir: Path, port: int, mlflow_port: int, tracking_uri: str | None,
                 listener_url: str | None) -> None:
        self.data_dir = data_dir
        self.port = port
        self.mlflow_port = mlflow_port
        self.external_tracking_uri = tracking_uri
        self.tracking_uri = tracking_uri or f"http://127.0.0.1:{mlflow_port}"
        self.listener_url = (listener_url or f"http://127.0.0.1:{port}").rstrip("/")
        self.children: list[Child] = []
        self.stop_requested = threading.Event()

    # The order matters: the tracking server first (the listener's readiness and the webhook need it),
    # then the processes of the Procfile, then the webhook (so no delivery finds the listener down).
    def start(self) -> None:
        """Bring the stack up; raises StackError (after stopping what was started) on failure."""
        self.data_dir.mkdir(parents=True, exist_ok=True)
        os.chmod(self.data_dir, 0o700)
        (self.data_dir / "logs").mkdir(exist_ok=True)
        env_secret = os.environ.get("GUARD_MLFLOW_SECRET", "").strip()
        self.secrets = env_secret or read_or_create_secret(self.data_dir / "webhook-secret", _webhook_secret)
        self.signing_key_path = os.environ.get("GUARD_SIGNING_KEY", "").strip() or self._ensure_signing_key()
        if self.external_tracking_uri is None:
            self._start_mlflow()
        else:
            log(f"using the MLflow server at {self.tracking_uri} (MLFLOW_TRACKING_URI); starting none")
        self._start_procfile()
        self._register_webhook()

    def _ensure_signing_key(self) -> str:
        from core.seal.keys import ensure_signing_key

        path = self.data_dir / "seal-key.pem"
        ensure_signing_key(path)  # created once, mode 0600; reused on every later start
        return str(path)

    def _start_mlflow(self) -> None:
        if not port_is_free(self.mlflow_port):
            raise StackError(f"port {self.mlflow_port} is taken: set MLFLOW_PORT to a free port, or "
                             f"MLFLOW_TRACKING_URI to use the MLflow server that is already running")
        fernet = read_or_create_secret(self.data_dir / "mlflow-webhook-fernet.key", _fernet_key)
        store = self.data_dir / "mlflow"
        artifacts = store / "artifacts"
        artifacts.mkdir(parents=True, exist_ok=True)
        env = {
            **os.environ,
            "PATH": f"{VENV_BIN}{os.pathsep}{os.environ.get('PATH', '')}",
            # MLflow refuses to deliver to loopback/private addresses unless told to.
            "MLFLOW_WEBHOOK_ALLOWED_SCHEMES": "http,https",
            "MLFLOW_WEBHOOK_ALLOW_PRIVATE_IPS": "true",
            # Fixed key: webhook secrets stay readable across server workers and restarts.
            "MLFLOW_WEBHOOK_SECRET_ENCRYPTION_KEY": fernet,
            # The server's own job runner (GenAI features) starts a handful of extra processes that the
            # registry does not need; a user who wants it sets the variable to true.
            "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": os.environ.get("MLFLOW_SERVER_ENABLE_JOB_EXECUTION",
                                                                 "false"),
        }
        argv = [str(VENV_BIN / "mlflow"), "server", "--host", "127.0.0.1", "--port", str(self.mlflow_port),
                "--backend-store-uri", f"sqlite:///{store / 'mlflow.db'}",
                # Clients write artifacts straight into this folder; the listener compares them in place.
                "--no-serve-artifacts", "--default-artifact-root", str(artifacts),
                "--workers", os.environ.get("MLFLOW_WORKERS", "1")]
        log(f"starting mlflow server on {self.tracking_uri} (log: {self.data_dir / 'logs' / 'mlflow.log'})")
        child = Child("mlflow server", argv, env, log_path=self.data_dir / "logs" / "mlflow.log")
        self.children.append(child)
        wait_http(self.tracking_uri + "/health", 180, self.stop_requested, child)

    def _start_procfile(self) -> None:
        if not port_is_free(self.port, "0.0.0.0" if self.external_tracking_uri else "127.0.0.1"):
            raise StackError(f"port {self.port} is taken: set PORT to a free port")
        metrics_dir = self.data_dir / "metrics"
        # Counter files of processes from an earlier run would be added to this run's counts.
        shutil.rmtree(metrics_dir, ignore_errors=True)
        metrics_dir.mkdir()
        env = {
            **os.environ,
            "PATH": f"{VENV_BIN}{os.pathsep}{os.environ.get('PATH', '')}",
            "PYTHONUNBUFFERED": "1",
            "PORT": str(self.port),
            "GUARD_DATA_DIR": str(self.data_dir),
            "GUARD_MLFLOW_SECRET": self.secrets,
            "GUARD_SIGNING_KEY": self.signing_key_path,
            "MLFLOW_TRACKING_URI": self.tracking_uri,
            "PROMETHEUS_MULTIPROC_DIR": str(metrics_dir),
        }
        if self.external_tracking_uri is None:
            # Only our own loopback MLflow server calls the listener: keep it off the network.
            env["GUNICORN_BIND"] = f"127.0.0.1:{self.port}"
        argv = [str(VENV_BIN / "honcho"), "start", "-f", str(REPO_ROOT / "Procfile"), "-d", str(REPO_ROOT),
                "-p", str(self.port)]
        log("starting the Procfile's web and worker processes (honcho)")
        # Inherits stdout: honcho prefixes every line with its process name.
        child = Child("honcho", argv, env)
        self.children.append(child)
        wait_http(self.listener_url + "/healthz", 120, self.stop_requested, child)

    def _register_webhook(self) -> None:
        from mlflow import MlflowClient

        url = self.listener_url + "/webhooks/mlflow"
        client = MlflowClient(tracking_uri=self.tracking_uri, registry_uri=self.tracking_uri)
        signing_secret = self.secrets.split(",")[0].strip()
        try:
            # Only the events that trigger a check (the default): every verdict writes several
            # validation.* tags, and subscribing to tag events would only add deliveries answered "ignored".
            hook, created = ensure_mlflow_webhook(client, url=url, secret=signing_secret, name=WEBHOOK_NAME)
        except Exception as exc:  # an existing server may not support webhooks: say so, keep running
            self.webhook_id = None
            log(f"WARNING: could not register the MLflow webhook at {self.tracking_uri}: "
                f"{type(exc).__name__}: {str(exc)[:300]}")
            log("  webhooks need MLflow >= 3.3 with a SQL backend store; the server must run with "
                "MLFLOW_WEBHOOK_ALLOWED_SCHEMES=http,https and MLFLOW_WEBHOOK_ALLOW_PRIVATE_IPS=true to call "
                "a private address, and a fixed MLFLOW_WEBHOOK_SECRET_ENCRYPTION_KEY")
            return
        self.webhook_id = hook.webhook_id
        log(f"{'registered' if created else 'reusing'} MLflow webhook {hook.webhook_id} -> {url}")

    def remember_addresses(self) -> None:
        """Write the addresses this stack runs at to ``stack.json`` under the data folder.

        ``make demo`` (deploy/demo.py) reads them, so a stack started with other ports
        (``MLFLOW_PORT=5001 PORT=8001 make run``) needs no variables repeated. Removed on stop.
        """
        stack = {"tracking_uri": self.tracking_uri, "listener_url": self.listener_url, "pid": os.getpid()}
        path = self.data_dir / STACK_FILE
        tmp = path.with_suffix(".tmp")
        tmp.write_text(json.dumps(stack, indent=2) + "\n", encoding="utf-8")
        os.replace(tmp, path)

    def forget_addresses(self) -> None:
        """Remove ``stack.json`` if it is this process's (a second launcher may have written its own)."""
        path = self.data_dir / STACK_FILE
        with contextlib.suppress(OSError, ValueError):
            if json.loads(path.read_text(encoding="utf-8")).get("pid") == os.getpid():
                path.unlink()

    def banner(self) -> str:
        """What a person needs to start using the stack."""
        lines = [
            "",
            "mlflow-version-guard is running:",
            f"  MLflow UI:    {self.tracking_uri}",
            f"  Listener:     {self.listener_url}   (MLflow webhook -> {self.listener_url}/webhooks/mlflow)",
            f"  Status page:  {self.listener_url}/",
            f"  Data folder:  {self.data_dir}",
            "Register a model (or run `make demo` in another terminal); Ctrl-C stops everything.",
            "",
        ]
        return "\n".join(lines)

    def watch(self) -> int:
        """Run until a stop is requested (0) or a process dies on its own (1)."""
        while not self.stop_requested.wait(0.5):
            for child in self.children:
                if not child.running():
                    log(f"{child.name} exited with {child.proc.returncode}; stopping the stack")
                    if child.log_path:
                        print(child.log_tail(), flush=True)
                    return 1
        return 0

    def stop(self) -> None:
        """Stop everything, newest first: the listener and worker before the server they talk to."""
        for child in reversed(self.children):
            if child.running() or child_pids(child.proc.pid):
                log(f"stopping {child.name} (pid {child.proc.pid})")
            child.stop()
        self.children.clear()
        self.forget_addresses()


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    """Command line; every option defaults to its environment variable."""
    ap = argparse.ArgumentParser(description="Run MLflow, the listener and the worker locally.")
    ap.add_argument("--data-dir", type=Path, default=Path(os.environ.get("GUARD_DATA_DIR") or ".guard"))
    ap.add_argument("--port", type=int, default=int(os.environ.get("PORT") or 8000),
                    help="listener port (PORT, default 8000)")
    ap.add_argument("--mlflow-port", type=int, default=int(os.environ.get("MLFLOW_PORT") or 5000),
                    help="port of the MLflow server started here (MLFLOW_PORT, default 5000)")
    return ap.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    """Entry point of ``make run``; returns the exit status."""
    args = parse_args(argv)
    stack = LocalStack(data_dir=args.data_dir.expanduser().resolve(), port=args.port,
                       mlflow_port=args.mlflow_port,
                       tracking_uri=os.environ.get("MLFLOW_TRACKING_URI") or None,
                       listener_url=os.environ.get("GUARD_LISTENER_URL") or None)

    def request_stop(signum: int, frame: object) -> None:
        stack.stop_requested.set()

    signal.signal(signal.SIGINT, request_stop)
    signal.signal(signal.SIGTERM, request_stop)
    status = 0
    try:
        stack.start()
        stack.remember_addresses()
        print(stack.banner(), flush=True)
        status = stack.watch()
    except KeyboardInterrupt:
        pass
    except StackError as exc:
        log(f"ERROR: {exc}")
        status = 2
    finally:
        stack.stop()
        log("stopped")
    return status


if __name__ == "__main__":
    sys.exit(main())
