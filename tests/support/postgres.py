"""A real PostgreSQL server for tests: Debian's binaries, a temporary folder, a free loopback port.

``initdb`` refuses to run as root, and CI runs as root: the server then runs as the ``postgres`` system
user that Debian's package creates (``nobody`` when there is none), in a folder created with that owner.
Debian keeps the binaries in ``/usr/lib/postgresql/<version>/bin``, off ``PATH``; they are found there.
The postmaster is started directly (not through ``pg_ctl``), so the test owns its process id and stops it
by that pid. :meth:`PostgresServer.restart` stops and starts it on the same port and data (outage tests).
"""

from __future__ import annotations

import contextlib
import glob
import os
import pwd
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from pathlib import Path

from tests.support.procs import ManagedProcess, free_port

DATABASE = "guard"
SUPERUSER = "guard"


def find_postgres_bin() -> Path | None:
    """The folder holding ``initdb`` and ``postgres`` (PATH first, then Debian's newest version)."""
    on_path = shutil.which("initdb")
    if on_path and Path(on_path).with_name("postgres").exists():
        return Path(os.path.realpath(on_path)).parent
    candidates = glob.glob("/usr/lib/postgresql/*/bin/initdb")

    def major(path: str) -> int:
        part = Path(path).parent.parent.name
        return int(part) if part.isdigit() else 0

    for initdb in sorted(candidates, key=major, reverse=True):
        if Path(initdb).with_name("postgres").exists():
            return Path(initdb).parent
    return None


def _run_as() -> pwd.struct_passwd | None:
    """The unprivileged account to run the server as when we are root (None: run as ourselves)."""
    if os.geteuid() != 0:
        return None
    for name in ("postgres", "nobody"):
        with contextlib.suppress(KeyError):
            return pwd.getpwnam(name)
    raise RuntimeError("running as root and neither a 'postgres' nor a 'nobody' account exists")


class PostgresServer(ManagedProcess):
    """A throw-away PostgreSQL cluster; ``url`` is a SQLAlchemy/psycopg URL of its ``guard`` database."""

    def __init__(self, bin_dir: Path | None = None, port: int | None = None) -> None:
        found = bin_dir or find_postgres_bin()
        if found is None:
            raise RuntimeError("PostgreSQL server binaries not found (apt-get install postgresql)")
        self.bin_dir = found
        self.port = port or free_port()
        self.account = _run_as()
        # Not under pytest's tmp_path: that folder is private to root, and the server runs as another user.
        self.root = Path(tempfile.mkdtemp(prefix="guard-pg-"))
        self.data = self.root / "data"
        if self.account is not None:
            os.chown(self.root, self.account.pw_uid, self.account.pw_gid)
        argv = [str(self.bin_dir / "postgres"), "-D", str(self.data), "-p", str(self.port),
                "-h", "127.0.0.1", "-k", str(self.root),
                # A test cluster: durability against an OS crash is not under test; restarts are.
                "-c", "fsync=off", "-c", "full_page_writes=off", "-c", "max_connections=100"]
        super().__init__(argv, env={"LC_ALL": "C", "LANG": "C"}, log_path=None)
        self.log_file = self.root / "server.log"
        self._initdb()

    @property
    def url(self) -> str:
        return f"postgresql://{SUPERUSER}@127.0.0.1:{self.port}/{DATABASE}"

    def _as_account(self) -> dict[str, object]:
        if self.account is None:
            return {}
        return {"user": self.account.pw_uid, "group": self.account.pw_gid, "extra_groups": []}

    def _initdb(self) -> None:
        result = subprocess.run(
            [str(self.bin_dir / "initdb"), "-D", str(self.data), "-U", SUPERUSER, "--auth=trust",
             "-E", "UTF8", "--locale=C", "--no-sync"],
            env=self.env, cwd=self.root, capture_output=True, text=True, check=False, **self._as_account())
        if result.returncode != 0:
            raise RuntimeError(f"initdb failed ({result.returncode}): {result.stderr[-2000:]}")

    def start(self, timeout: float = 60.0) -> PostgresServer:
        """Start the postmaster, wait until it accepts connections, create the database once."""
        with open(self.log_file, "ab") as out:
            self.proc = subprocess.Popen(self.argv, env=self.env, cwd=self.root, stdout=out,
                                         stderr=subprocess.STDOUT, start_new_session=True,
                                         **self._as_account())
        try:
            self._wait_accepting(timeout)
            self._create_database()
        except Exception:
            self.stop()
            raise
        return self

    def _wait_accepting(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc is not None and self.proc.poll() is not None:
                raise RuntimeError(f"postgres exited with {self.proc.returncode}\n{self.log_tail()}")
            if self._psql("SELECT 1", database="postgres").returncode == 0:
                return
            time.sleep(0.2)
        raise RuntimeError(f"postgres did not accept connections on {self.port}\n{self.log_tail()}")

    def _psql(self, sql: str, database: str = DATABASE) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [str(self.bin_dir / "psql"), "-h", "127.0.0.1", "-p", str(self.port), "-U", SUPERUSER,
             "-d", database, "-tAc", sql], env=self.env, capture_output=True, text=True, check=False)

    def _create_database(self) -> None:
        exists = self._psql(f"SELECT 1 FROM pg_database WHERE datname = '{DATABASE}'", database="postgres")
        if exists.stdout.strip() == "1":
            return
        made = self._psql(f"CREATE DATABASE {DATABASE}", database="postgres")
        if made.returncode != 0:
            raise RuntimeError(f"CREATE DATABASE failed: {made.stderr}")

    def new_database(self, name: str) -> str:
        """Create an empty database ``name`` on this server; returns its URL."""
        made = self._psql(f"CREATE DATABASE {name}", database="postgres")
        if made.returncode != 0:
            raise RuntimeError(f"CREATE DATABASE {name} failed: {made.stderr}")
        return f"postgresql://{SUPERUSER}@127.0.0.1:{self.port}/{name}"

    def accepting(self) -> bool:
        """True when something listens on the server's port."""
        try:
            socket.create_connection(("127.0.0.1", self.port), timeout=0.5).close()
            return True
        except OSError:
            return False

    def stop(self, timeout: float = 30.0) -> None:
        """Fast shutdown (SIGINT to the postmaster: sessions end, data is checkpointed), then SIGKILL."""
        if self.proc is None:
            return
        if self.proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(self.proc.pid, signal.SIGINT)
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.proc.wait(timeout=timeout)
        # Backends of a postmaster killed mid-way share its process group.
        self.kill(signal.SIGKILL)
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.proc.wait(timeout=5)

    def restart(self, down_s: float = 0.0) -> None:
        """Stop the server, stay down ``down_s`` seconds, start it again on the same port and data."""
        self.stop()
        if down_s:
            time.sleep(down_s)
        self.start()

    def remove(self) -> None:
        """Stop the server and delete its folder."""
        self.stop()
        shutil.rmtree(self.root, ignore_errors=True)

    def log_tail(self, n: int = 4000) -> str:
        if self.log_file.exists():
            return self.log_file.read_text(errors="replace")[-n:]
        return ""
