"""Bringing the local stack up and down: secrets, ``mlflow server``, the Procfile's processes, the webhook.

Used by ``deploy/local_stack.py`` (``make run``); see that file for what the stack is.
"""

from __future__ import annotations

import os
import secrets
import shutil
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from deploy.stack_alerts import AlertFollower, notify_url, start_receiver
from deploy.stack_console import Console, VerdictFollower
from deploy.stack_file import banner, write_stack
from deploy.stack_processes import Child, StackError, child_pids, port_is_free, process_identity, wait_http

REPO_ROOT = Path(__file__).resolve().parents[1]
VENV_BIN = Path(sys.executable).parent
WEBHOOK_NAME = "mlflow-version-guard-local"
DEFAULT_PROTECTED_ALIASES = "champion"
DEFAULT_POLICY = REPO_ROOT / "deploy" / "policy.example.yaml"
WORKER_READY_LINE = "Huey consumer started"  # huey's own start-up line, in logs/worker.log
WORKER_READY_TIMEOUT_S = 60.0


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


def procfile_commands() -> dict[str, str]:
    """The process types of the repository's Procfile: name -> shell command."""
    entries = {}
    for line in (REPO_ROOT / "Procfile").read_text().splitlines():
        if line.strip() and not line.lstrip().startswith("#"):
            name, command = line.split(":", 1)
            entries[name.strip()] = command.strip()
    return entries


class LocalStack:
    """Starts, registers, reports and stops the local processes."""

    def __init__(self, data_dir: Path, port: int, mlflow_port: int, console: Console,
                 tracking_uri: str | None, listener_url: str | None) -> None:
        self.data_dir = data_dir
        self.logs = data_dir / "logs"
        self.port = port
        self.mlflow_port = mlflow_port
        self.console = console
        self.external_tracking_uri = tracking_uri
        self.tracking_uri = tracking_uri or f"http://127.0.0.1:{mlflow_port}"
        self.listener_url = (listener_url or f"http://127.0.0.1:{port}").rstrip("/")
        self.protected_aliases = os.environ.get("GUARD_PROTECTED_ALIASES", DEFAULT_PROTECTED_ALIASES)
        # The starter policy unless the user chose one; GUARD_POLICY= (empty) checks integrity only.
        self.policy = os.environ.get("GUARD_POLICY", str(DEFAULT_POLICY)).strip()
        # GUARD_NOTIFY as the user set it (never printed: it may hold tokens), else our own receiver's.
        self.user_notify = os.environ.get("GUARD_NOTIFY")
        self.notify = self.user_notify
        self.receiver_url: str | None = None
        self.children: list[Child] = []
        self.stop_requested = threading.Event()
        console.on_gone = self.stop_requested.set  # nobody is watching any more: stop
        self.follower: VerdictFollower | None = None
        self.alert_follower: AlertFollower | None = None

    def stopping(self) -> bool:
        """True once a stop was asked for (a signal, or the console went away)."""
        return self.stop_requested.is_set() or self.console.gone()

    def log(self, message: str) -> None:
        """A launcher line, marked so it stands out from the verdict lines."""
        self.console.say(f"[local-stack] {message}")

    # The order matters: the tracking server first (the listener's readiness and the webhook need it),
    # then the processes of the Procfile, then the webhook (so no delivery finds the listener down),
    # and the banner last, once the worker takes jobs.
    def start(self) -> None:
        """Bring the stack up and print the banner; raises StackError (or KeyboardInterrupt) on failure."""
        os.chmod(self.data_dir, 0o700)
        env_secret = os.environ.get("GUARD_MLFLOW_SECRET", "").strip()
        self.secrets = env_secret or read_or_create_secret(self.data_dir / "webhook-secret", _webhook_secret)
        self.signing_key_path = os.environ.get("GUARD_SIGNING_KEY", "").strip() or self._ensure_signing_key()
        if self.external_tracking_uri is None:
            self._start_mlflow()
        else:
            self.log(f"using the MLflow server at {self.tracking_uri} (MLFLOW_TRACKING_URI); starting none")
        if self.user_notify is None:
            self._start_alert_receiver()
        self._start_procfile()
        self._register_webhook()
        self._wait_for_worker()
        stack = self.describe()
        write_stack(self.data_dir, stack)
        self.console.say(banner(stack))

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
        self.log(f"starting mlflow server on {self.tracking_uri}")
        child = Child("mlflow server", argv, env, REPO_ROOT, self.logs / "mlflow.log")
        self.children.append(child)
        wait_http(self.tracking_uri + "/health", 180, self.stopping, child)

    def _start_alert_receiver(self) -> None:
        child, self.receiver_url = start_receiver(dict(os.environ), REPO_ROOT, self.logs)
        self.log(f"starting the alert receiver on {self.receiver_url}")
        self.children.append(child)
        wait_http(self.receiver_url + "/alerts", 30, self.stopping, child)
        self.notify = notify_url(self.receiver_url)
        self.alert_follower = AlertFollower(self.receiver_url, self.console.say)

    def listener_env(self) -> dict[str, str]:
        """The environment of the Procfile's processes."""
        metrics_dir = self.data_dir / "metrics"
        env = {
            **os.environ,
            "PATH": f"{VENV_BIN}{os.pathsep}{os.environ.get('PATH', '')}",
            "PYTHONUNBUFFERED": "1",
            "PORT": str(self.port),
            "GUARD_DATA_DIR": str(self.data_dir),
            "GUARD_MLFLOW_SECRET": self.secrets,
            "GUARD_SIGNING_KEY": self.signing_key_path,
            "GUARD_PROTECTED_ALIASES": self.protected_aliases,
            "MLFLOW_TRACKING_URI": self.tracking_uri,
            "PROMETHEUS_MULTIPROC_DIR": str(metrics_dir),
            "GUARD_POLICY": self.policy,
            "GUARD_NOTIFY": self.notify or "",
        }
        if self.external_tracking_uri is None:
            # Only our own loopback MLflow server calls the listener: keep it off the network.
            env["GUNICORN_BIND"] = f"127.0.0.1:{self.port}"
        return env

    def _start_procfile(self) -> None:
        if not port_is_free(self.port, "0.0.0.0" if self.external_tracking_uri else "127.0.0.1"):
            raise StackError(f"port {self.port} is taken: set PORT to a free port")
        metrics_dir = self.data_dir / "metrics"
        # Counter files of processes from an earlier run would be added to this run's counts.
        shutil.rmtree(metrics_dir, ignore_errors=True)
        metrics_dir.mkdir()
        env = self.listener_env()
        commands = procfile_commands()
        self.log("starting the Procfile's web and worker processes")
        # Each one as a Procfile runner would run it (the shell expands ${PORT} and the defaults),
        # with its own log file.
        web, worker = (Child(kind, ["/bin/sh", "-c", f"exec {commands[kind]}"], env, REPO_ROOT,
                             self.logs / f"{kind}.log") for kind in ("web", "worker"))
        self.children += [web, worker]
        wait_http(self.listener_url + "/healthz", 120, self.stopping, web)
        from listener.config import Settings

        try:
            store_url = Settings.from_env(env).store_url
        except Exception as exc:  # noqa: BLE001 - the worker reports a bad setting itself, and stops
            self.log(f"no verdict lines on this console: {exc}")
        else:
            self.follower = VerdictFollower(store_url, self.console.say, self.console.colour)

    def _wait_for_worker(self) -> None:
        worker = next(child for child in self.children if child.name == "worker")
        deadline = time.monotonic() + WORKER_READY_TIMEOUT_S
        while not worker.log_mentions(WORKER_READY_LINE) and time.monotonic() < deadline:
            if not worker.running():
                raise StackError(f"the worker exited with {worker.proc.returncode} (log: {worker.log_path})"
                                 f"\n{worker.log_tail()}")
            if self.stopping():
                raise KeyboardInterrupt
            time.sleep(0.25)

    def _register_webhook(self) -> None:
        from mlflow import MlflowClient

        from listener.registries.webhook_registration import ensure_mlflow_webhook

        url = self.listener_url + "/webhooks/mlflow"
        client = MlflowClient(tracking_uri=self.tracking_uri, registry_uri=self.tracking_uri)
        signing_secret = self.secrets.split(",")[0].strip()
        try:
            # Only the events that trigger a check (the default): every verdict writes several
            # validation.* tags, and subscribing to tag events would only add deliveries answered "ignored".
            hook, created = ensure_mlflow_webhook(client, url=url, secret=signing_secret, name=WEBHOOK_NAME)
        except Exception as exc:  # an existing server may not support webhooks: say so, keep running
            self.log(f"WARNING: could not register the MLflow webhook at {self.tracking_uri}: "
                     f"{type(exc).__name__}: {str(exc)[:300]}")
            self.log("  webhooks need MLflow >= 3.3 with a SQL backend store; the server must run with "
                     "MLFLOW_WEBHOOK_ALLOWED_SCHEMES=http,https and MLFLOW_WEBHOOK_ALLOW_PRIVATE_IPS=true to "
                     "call a private address, and a fixed MLFLOW_WEBHOOK_SECRET_ENCRYPTION_KEY")
            return
        self.log(f"{'registered' if created else 'reusing'} MLflow webhook {hook.webhook_id} -> {url}")

    def describe(self) -> dict[str, Any]:
        """The stack file's content: addresses (for ``make demo``/``make status``) and process identities.

        ``make demo`` reads the addresses, so a stack started with other ports
        (``MLFLOW_PORT=5001 PORT=8001 make run``) needs no variables repeated.
        """
        processes = {"launcher": process_identity(os.getpid()) or f"{os.getpid()}:"}
        processes.update({child.name: child.identity for child in self.children})
        return {"tracking_uri": self.tracking_uri, "listener_url": self.listener_url, "pid": os.getpid(),
                "data_dir": str(self.data_dir), "protected_aliases": self.protected_aliases,
                "policy": self.policy or None, "alert_receiver": self.receiver_url,
                "notify_configured": bool(self.notify),
                "processes": processes}

    def watch(self) -> int:
        """Print verdicts until a stop is requested or the console goes (0), or a process dies (1)."""
        while not self.stop_requested.wait(0.5):
            if self.console.gone():
                break
            for child in self.children:
                if not child.running():
                    self.log(f"{child.name} exited with {child.proc.returncode}; stopping the stack "
                             f"(log: {child.log_path})")
                    self.console.say(child.log_tail())
                    return 1
            if self.follower is not None:
                self.follower.poll()
            if self.alert_follower is not None:
                self.alert_follower.poll()
        if self.console.broken:
            self.log("the console went away (terminal closed or pipe reader exited); stopping the stack")
        return 0

    def stop(self) -> None:
        """Stop everything, newest first: the listener and worker before the server they talk to."""
        for child in reversed(self.children):
            if child.running() or child_pids(child.proc.pid):
                self.log(f"stopping {child.name} (pid {child.proc.pid})")
            child.stop()
        self.children.clear()
