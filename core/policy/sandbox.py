"""The separate process load-and-predict runs in: an environment without secrets, a scratch working
folder, a read-only copy of the model, and a wall-clock timeout (the child sets its own resource limits,
see :mod:`core.policy.sandbox_child`).

What this isolates and what it does not is written down in ``docs/policies-load-predict.md``.
"""

from __future__ import annotations

import os
import shutil
import signal
import stat
import subprocess
import sys
import tempfile
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from pathlib import Path

CHILD_SCRIPT = Path(__file__).with_name("sandbox_child.py")

# Only these variables reach the child: what a Python process needs to start, find its tools, read
# certificates and print text. Everything else (webhook secrets, the signing key, registry and cloud
# tokens, the store's URL with its password) stays in the guard.
ALLOWED_VARIABLES = ("PATH", "LANG", "LANGUAGE", "LC_ALL", "LC_CTYPE", "TZ",
                     "SSL_CERT_FILE", "SSL_CERT_DIR", "REQUESTS_CA_BUNDLE")
# Restoring a model's environment also needs the package index settings (PyPI mirrors) and the
# interpreter installers' folders.
BUILD_VARIABLES = ("HTTP_PROXY", "HTTPS_PROXY", "NO_PROXY", "http_proxy", "https_proxy", "no_proxy",
                   "PIP_INDEX_URL", "PIP_EXTRA_INDEX_URL", "PIP_TRUSTED_HOST", "PIP_CERT",
                   "UV_INDEX_URL", "UV_EXTRA_INDEX_URL", "UV_DEFAULT_INDEX", "UV_INDEX",
                   "UV_PYTHON_INSTALL_DIR", "PYENV_ROOT")
# Never passed on, whatever the lists above grow into: the guard's own settings and credentials.
SECRET_PREFIXES = ("GUARD_", "DATABRICKS_", "MLFLOW_TRACKING_", "AWS_", "AZURE_", "GOOGLE_", "GCS_")

_FILE_MODE = stat.S_IRUSR | stat.S_IRGRP | stat.S_IROTH
_DIR_MODE = _FILE_MODE | stat.S_IXUSR | stat.S_IXGRP | stat.S_IXOTH


def child_environment(parent: Mapping[str, str], home: Path, *, building: bool = False) -> dict[str, str]:
    """The environment of a sandboxed child, built from an allowlist of ``parent``'s variables.

    ``home`` becomes HOME and TMPDIR, so nothing in the user's home (cloud and Databricks config
    files, netrc) is picked up by default. Numeric libraries are held to one thread each: their
    per-thread buffers would otherwise count against the address-space limit.
    """
    names = ALLOWED_VARIABLES + (BUILD_VARIABLES if building else ())
    env = {name: parent[name] for name in names
           if name in parent and not name.startswith(SECRET_PREFIXES)}
    env.setdefault("PATH", os.defpath)
    env.update({"HOME": str(home), "TMPDIR": str(home), "PYTHONNOUSERSITE": "1",
                "OMP_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1", "MKL_NUM_THREADS": "1",
                "MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR": "false"})
    return env


def read_only_copy(source: Path, destination: Path) -> Path:
    """Copy the model into ``destination`` and make every file and folder of the copy read-only.

    Symbolic links are copied as links, never followed, so a link cannot pull other files into the
    copy. Permissions do not bind a process running as root: run the worker as an unprivileged user.
    """
    shutil.copytree(source, destination, symlinks=True)
    for folder, dirs, files in os.walk(destination, topdown=False):
        for name in files:
            path = os.path.join(folder, name)
            if not os.path.islink(path):
                os.chmod(path, _FILE_MODE)
        for name in dirs:
            path = os.path.join(folder, name)
            if not os.path.islink(path):
                os.chmod(path, _DIR_MODE)
    os.chmod(destination, _DIR_MODE)
    return destination


def _remove(folder: Path) -> None:
    """Delete a run folder, read-only parts included."""
    for current, dirs, _files in os.walk(folder):
        for name in dirs:
            path = os.path.join(current, name)
            if not os.path.islink(path):
                os.chmod(path, stat.S_IRWXU)
    if folder.exists():
        os.chmod(folder, stat.S_IRWXU)
        shutil.rmtree(folder, ignore_errors=True)


@dataclass
class RunFolder:
    """One sandboxed run's folders: ``model`` (read-only copy), ``work`` (cwd, HOME), ``result`` file."""

    root: Path

    @property
    def model(self) -> Path:
        return self.root / "model"

    @property
    def work(self) -> Path:
        return self.root / "work"

    @property
    def result(self) -> Path:
        return self.root / "result.json"

    @property
    def log(self) -> Path:
        return self.root / "output.log"


@contextmanager
def run_folder(scratch_root: Path) -> Iterator[RunFolder]:
    """A fresh folder under ``scratch_root/load-predict`` for one run, removed afterwards."""
    parent = Path(scratch_root) / "load-predict"
    parent.mkdir(parents=True, exist_ok=True)
    folder = RunFolder(Path(tempfile.mkdtemp(prefix="run-", dir=parent)))
    folder.work.mkdir()
    try:
        yield folder
    finally:
        _remove(folder.root)


@dataclass
class ChildExit:
    """How a child ended: its return code (negative: killed by that signal) or ``timed_out``."""

    returncode: int | None
    timed_out: bool
    output_tail: str

    @property
    def signal_name(self) -> str | None:
        """The name of the signal that killed the child, if one did."""
        if self.returncode is None or self.returncode >= 0:
            return None
        try:
            return signal.Signals(-self.returncode).name
        except ValueError:
            return f"signal {-self.returncode}"


def child_command(python: str, *args: str) -> list[str]:
    """The command running :mod:`core.policy.sandbox_child` as an isolated script under ``python``."""
    # -I: no PYTHON* variables, no user site, no script folder on sys.path; -B: no .pyc files written.
    return [python, "-I", "-B", str(CHILD_SCRIPT), *args]


def run_child(command: Sequence[str], *, env: Mapping[str, str], cwd: Path, log: Path,
              timeout_s: float) -> ChildExit:
    """Run ``command`` in its own session; kill the whole session when ``timeout_s`` passes."""
    with open(log, "wb") as output:
        process = subprocess.Popen(list(command), env=dict(env), cwd=cwd, stdin=subprocess.DEVNULL,
                                   stdout=output, stderr=subprocess.STDOUT, start_new_session=True,
                                   close_fds=True)
        timed_out = False
        try:
            process.wait(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            timed_out = True
        # Whatever the model started in the background goes with it.
        with suppress(ProcessLookupError, PermissionError):
            os.killpg(process.pid, signal.SIGKILL)
        process.wait()
    return ChildExit(None if timed_out else process.returncode, timed_out, _tail(log))


def _tail(log: Path, limit: int = 4000) -> str:
    with open(log, "rb") as handle:
        handle.seek(0, os.SEEK_END)
        size = handle.tell()
        handle.seek(max(0, size - limit))
        return handle.read().decode("utf-8", "replace")


def guard_python() -> str:
    """The interpreter the guard runs under (``env_manager: local``)."""
    return sys.executable
