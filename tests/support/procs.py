"""Start and stop real server processes for tests, each owned by its process id."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

VENV_BIN = Path(sys.executable).parent


def free_port() -> int:
    """A TCP port on loopback that nothing listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_http(url: str, timeout: float = 60.0, proc: subprocess.Popen | None = None) -> None:
    """Poll ``url`` until it answers 2xx, or fail after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    last: Exception | None = None
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(f"process {proc.pid} exited with {proc.returncode} before {url} answered")
        try:
            with urllib.request.urlopen(url, timeout=2) as resp:
                if 200 <= resp.status < 300:
                    return
        except (urllib.error.URLError, ConnectionError, OSError) as exc:
            last = exc
        time.sleep(0.2)
    raise TimeoutError(f"{url} did not answer within {timeout}s: {last}")


def wait_tcp(port: int, timeout: float = 15.0, proc: subprocess.Popen | None = None) -> None:
    """Wait until something accepts connections on loopback ``port``, or fail after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(f"process {proc.pid} exited with {proc.returncode} before {port} listened")
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
            return
        except OSError:
            time.sleep(0.1)
    raise TimeoutError(f"nothing listened on port {port} within {timeout}s")


class ManagedProcess:
    """A subprocess in its own process group, stopped by its own pid (and its children)."""

    def __init__(self, argv: list[str], *, env: dict[str, str] | None = None, cwd: Path | None = None,
                 log_path: Path | None = None) -> None:
        self.argv = argv
        self.env = {**os.environ, **(env or {})}
        self.cwd = cwd
        self.log_path = log_path
        self.proc: subprocess.Popen | None = None

    def start(self) -> ManagedProcess:
        if self.log_path is None:
            self.proc = subprocess.Popen(self.argv, env=self.env, cwd=self.cwd, stdout=subprocess.DEVNULL,
                                         stderr=subprocess.STDOUT, start_new_session=True)
            return self
        # The child keeps its own copy of the descriptor; ours can close right away.
        with open(self.log_path, "ab") as out:
            self.proc = subprocess.Popen(self.argv, env=self.env, cwd=self.cwd, stdout=out,
                                         stderr=subprocess.STDOUT, start_new_session=True)
        return self

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def kill(self, sig: int = signal.SIGKILL) -> None:
        """Send ``sig`` to the whole process group (the server and its workers)."""
        if self.proc is None:
            return
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.proc.pid, sig)

    def stop(self, timeout: float = 15.0) -> None:
        """SIGTERM the group, then SIGKILL it if it has not gone within ``timeout``."""
        if self.proc is None:
            return
        if self.proc.poll() is None:
            self.kill(signal.SIGTERM)
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.proc.wait(timeout=timeout)
        self.kill(signal.SIGKILL)
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.proc.wait(timeout=5)

    def log_tail(self, n: int = 4000) -> str:
        if self.log_path and self.log_path.exists():
            return self.log_path.read_text(errors="replace")[-n:]
        return ""


WEBHOOK_SERVER_ENV = {
    # MLflow refuses loopback webhook targets unless told otherwise.
    "MLFLOW_WEBHOOK_ALLOWED_SCHEMES": "http,https",
    "MLFLOW_WEBHOOK_ALLOW_PRIVATE_IPS": "true",
    # A fixed key so the stored webhook secret stays readable across workers and restarts.
    "MLFLOW_WEBHOOK_SECRET_ENCRYPTION_KEY": "DQGHHANLVIv5fJszaoBHFX9QNl4neoH068AhV4YbciU=",
    # MLflow 3.17 otherwise starts a job runner and several extra processes per server.
    "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false",
}


class MlflowServer(ManagedProcess):
    """A real ``mlflow server`` on a SQLite store and a local artifact folder, on a free loopback port.

    ``artifact_root`` replaces the local folder with another store (``s3://bucket/path`` on a
    :class:`MotoS3Server`, whose ``client_env`` then goes into ``env``).
    """

    def __init__(self, root: Path, *, serve_artifacts: bool = False, port: int | None = None,
                 env: dict[str, str] | None = None, artifact_root: str | None = None,
                 workers: int = 1) -> None:
        root.mkdir(parents=True, exist_ok=True)
        self.root = root
        self.port = port or free_port()
        self.artifacts = root / "artifacts"
        argv = [str(VENV_BIN / "mlflow"), "server", "--host", "127.0.0.1", "--port", str(self.port),
                "--backend-store-uri", f"sqlite:///{root / 'mlflow.db'}", "--workers", str(workers)]
        if serve_artifacts:
            argv += ["--serve-artifacts", "--artifacts-destination", artifact_root or str(self.artifacts)]
        else:
            # ``artifact_root`` (e.g. s3://bucket/path) replaces the local folder; clients then write there.
            argv += ["--no-serve-artifacts", "--default-artifact-root", artifact_root or str(self.artifacts)]
        super().__init__(argv, env={**WEBHOOK_SERVER_ENV, **(env or {})}, log_path=root / "server.log")

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def stop(self, timeout: float = 3.0) -> None:
        """Stop the server; it holds no state that a SIGKILL after a short grace could lose (SQLite)."""
        super().stop(timeout=timeout)

    def start(self, timeout: float = 90.0) -> MlflowServer:
        super().start()
        try:
            wait_http(self.url + "/health", timeout=timeout, proc=self.proc)
        except Exception as exc:
            self.stop()
            raise RuntimeError(f"mlflow server did not start: {exc}\n{self.log_tail()}") from exc
        return self


class RedisServer(ManagedProcess):
    """A real ``redis-server`` on a free loopback port, without persistence."""

    def __init__(self, root: Path, executable: str = "redis-server") -> None:
        root.mkdir(parents=True, exist_ok=True)
        self.port = free_port()
        super().__init__([executable, "--port", str(self.port), "--bind", "127.0.0.1", "--save", "",
                          "--dir", str(root)], log_path=root / "redis.log")

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self, timeout: float = 15.0) -> RedisServer:
        super().start()
        try:
            wait_tcp(self.port, timeout)
        except TimeoutError as exc:
            self.stop()
            raise RuntimeError(f"redis-server did not listen on {self.port}\n{self.log_tail()}") from exc
        return self


class MotoS3Server(ManagedProcess):
    """A real S3 API (``moto_server`` from ``moto[server]``) on a free loopback port, state in memory.

    ``client_env`` is what a boto3 or MLflow client needs to reach it: the endpoint and dummy credentials.
    """

    def __init__(self, root: Path) -> None:
        root.mkdir(parents=True, exist_ok=True)
        self.port = free_port()
        super().__init__([str(VENV_BIN / "moto_server"), "-H", "127.0.0.1", "-p", str(self.port)],
                         log_path=root / "moto.log")

    @property
    def endpoint_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def client_env(self) -> dict[str, str]:
        return {"MLFLOW_S3_ENDPOINT_URL": self.endpoint_url, "AWS_ENDPOINT_URL_S3": self.endpoint_url,
                "AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing",
                "AWS_DEFAULT_REGION": "us-east-1"}

    def start(self, timeout: float = 30.0) -> MotoS3Server:
        super().start()
        try:
            wait_http(self.endpoint_url + "/moto-api/", timeout=timeout, proc=self.proc)
        except Exception as exc:
            self.stop()
            raise RuntimeError(f"moto_server did not start: {exc}\n{self.log_tail()}") from exc
        return self
