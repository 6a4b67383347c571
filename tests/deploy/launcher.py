"""``python deploy/local_stack.py`` (what ``make run`` runs) as a real subprocess, for deploy and UI tests."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from deploy.stack_processes import child_pids
from listener.store.owners import pid_alive

REPO_ROOT = Path(__file__).resolve().parents[2]
LAUNCHER = ["deploy/local_stack.py"]
# Variables of the developer's shell that would point the stack elsewhere.
CLEARED_ENV = ("MLFLOW_TRACKING_URI", "MLFLOW_REGISTRY_URI", "GUARD_MLFLOW_SECRET", "GUARD_QUEUE",
               "PROMETHEUS_MULTIPROC_DIR", "GUARD_LISTENER_URL", "GUARD_PROTECTED_ALIASES", "GUARD_STORE",
               "GUARD_POLICY", "GUARD_NOTIFY", "GUARD_NOTIFY_ON")


def launcher_env(data_dir: Path, port: int, mlflow_port: int,
                 tracking_uri: str | None = None) -> dict[str, str]:
    """The environment ``make run`` would see, pointed at ``data_dir`` and the given ports."""
    env = {k: v for k, v in os.environ.items() if k not in CLEARED_ENV}
    env.update(GUARD_DATA_DIR=str(data_dir), PORT=str(port), MLFLOW_PORT=str(mlflow_port))
    if tracking_uri:
        env["MLFLOW_TRACKING_URI"] = tracking_uri
    return env


def run_command(env: dict[str, str], command: str, timeout: float = 120) -> subprocess.CompletedProcess:
    """``local_stack.py status`` or ``stop`` (``make status`` / ``make stop``), to completion."""
    return subprocess.run([sys.executable, *LAUNCHER, command], cwd=REPO_ROOT, env=env, capture_output=True,
                          text=True, timeout=timeout)


class TreeWatch:
    """Every process that was ever a descendant of ``pid``, sampled until stopped (children come and go)."""

    def __init__(self, pid: int) -> None:
        self.pid = pid
        self.seen: set[int] = set()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.is_set():
            self.seen.update(child_pids(self.pid))
            self._stop.wait(0.1)

    def stop(self) -> set[int]:
        self._stop.set()
        self._thread.join()
        return self.seen


def assert_all_gone(pids: set[int] | list[int], what: str, output: str = "") -> None:
    """Every pid has exited; strays are killed (a failed test leaves nothing running) and reported."""
    deadline = time.monotonic() + 10
    while any(pid_alive(pid) for pid in pids) and time.monotonic() < deadline:
        time.sleep(0.2)
    left = sorted(pid for pid in pids if pid_alive(pid))
    for pid in left:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
    assert not left, f"processes still alive after {what}: {left}\n{output[-3000:]}"


class Launcher:
    """``python deploy/local_stack.py`` as a subprocess whose output goes to a file."""

    def __init__(self, env: dict[str, str], log_path: Path) -> None:
        self.env = env
        self.log_path = log_path
        self.offset = log_path.stat().st_size if log_path.exists() else 0
        self.out = open(log_path, "ab")  # noqa: SIM115 - closed in stop()
        self.proc = subprocess.Popen([sys.executable, *LAUNCHER], cwd=REPO_ROOT, env=env, stdout=self.out,
                                     stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                     start_new_session=True)
        self.tree = TreeWatch(self.proc.pid)

    def output(self) -> str:
        return self.log_path.read_bytes()[self.offset:].decode(errors="replace")

    def wait_ready(self, timeout: float = 240.0) -> str:
        return wait_for_banner(self.output, self.proc, timeout)

    def interrupt_and_check_all_gone(self, expected_children: int = 4) -> None:
        tree = child_pids(self.proc.pid)
        # mlflow server (when started here) and its uvicorn, gunicorn master and workers, huey consumer, ...
        assert len(tree) >= expected_children, tree
        self.proc.send_signal(signal.SIGINT)
        try:
            code = self.proc.wait(timeout=90)
        finally:
            self.out.close()
        assert code == 0, self.output()[-3000:]
        assert_all_gone(self.tree.stop() | set(tree), "SIGINT", self.output())

    def kill(self) -> None:
        if self.proc.poll() is None:
            for pid in child_pids(self.proc.pid):
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
            self.proc.kill()
            self.proc.wait(timeout=10)
        self.tree.stop()
        if not self.out.closed:
            self.out.close()


def wait_for_banner(output, proc: subprocess.Popen, timeout: float = 240.0) -> str:
    """The launcher's output once its banner is printed; fails if it exits or takes too long."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        text = output()
        if "Status page:" in text:
            return text
        if proc.poll() is not None:
            pytest.fail(f"launcher exited with {proc.returncode}:\n{text[-4000:]}")
        time.sleep(0.3)
    proc.kill()
    pytest.fail(f"launcher printed no banner within {timeout}s:\n{output()[-4000:]}")


def url_from(text: str, label: str) -> str:
    """The URL after ``label`` in the banner."""
    line = next(line for line in text.splitlines() if line.strip().startswith(label))
    return line.split(label, 1)[1].split()[0]
