"""Intake: the durable job queue (huey) and exactly-once enqueueing of deliveries.

``submit`` records a delivery's key and stores its job in ONE atomic step: a single SQLite transaction
(the delivery table lives in the queue database) or a single Redis Lua script. So a delivery is either
taken (key recorded and job stored, both durable before the 202 goes out) or not taken at all; a crash or
failure in between can never leave a key marked without its job, which would make the registry's retry
look like a duplicate and lose the event.

The worker runs ``huey_consumer listener.worker.tasks.huey``, the queue of :func:`get_huey` with the
tasks registered on it.
"""

from __future__ import annotations

import fcntl
import os
import sqlite3
import threading
import time
import uuid
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlparse

from huey import RedisHuey, SqliteHuey
from huey.api import Huey
from huey.registry import Message
from huey.storage import RedisStorage, SqliteStorage

from listener.config import Settings
from listener.protocol.request import ValidationRequest

HUEY_NAME = "guard"
TASK_NAME = "listener.worker.tasks.validate_version"
# Registries retry within seconds; a week of memory also covers a listener that was down for days.
DELIVERY_RETENTION_S = 7 * 24 * 3600
# Pruning expired keys is housekeeping, not part of taking a delivery: once a minute per process is plenty.
PRUNE_INTERVAL_S = 60.0


class GuardSqliteStorage(SqliteStorage):
    """huey's SQLite storage plus a table of delivery keys, written in the same transaction as the job."""

    table_delivery = ("create table if not exists guard_delivery ("
                      "key text not null primary key, task_id text not null, created_at real not null)")
    index_delivery = "create index if not exists guard_delivery_created on guard_delivery (created_at)"
    ddl = [*SqliteStorage.ddl, table_delivery, index_delivery]

    def __init__(self, *args: Any, synchronous: str = "normal", **kwargs: Any) -> None:
        # WAL + synchronous=NORMAL: a commit survives any crash of our processes (it is in the WAL file
        # before the 202 goes out); only an OS crash or power cut may lose the last commits. FULL also
        # fsyncs every commit (about 5 ms each here, which caps the intake rate) for that case.
        if synchronous not in ("normal", "full"):
            raise ValueError("synchronous must be 'normal' or 'full'")
        self._synchronous = synchronous
        self._pruned_at = float("-inf")  # the first intake of each process prunes
        self._lock_fd = -1
        self._lock_pid: int | None = None
        super().__init__(*args, **kwargs)

    def _create_connection(self) -> Any:
        conn = super()._create_connection()
        conn.execute(f"pragma synchronous={self._synchronous}")
        return conn

    def enqueue_once(self, key: str, task_id: str, data: bytes, priority: float | None = None,
                     now: float | None = None) -> tuple[str, bool]:
        """Store ``data`` as a job unless ``key`` was seen; returns (task id, duplicate?).

        One "begin exclusive" transaction on the process's connection: claiming the key and storing the
        job commit together or not at all. The claim is an insert that does nothing when the key exists,
        so a new delivery (the usual case) costs two inserts and no lookup; only a duplicate reads the
        task id it was first taken with. Rows older than the retention are pruned at most once per
        ``PRUNE_INTERVAL_S`` per process, not on every delivery.
        """
        now = time.time() if now is None else now
        with self.lock:  # huey's lock over the shared connection (as in ``self.db``), without its wrapper
            conn = self.conn
            lock_fd = self._intake_lock_fd()
            fcntl.flock(lock_fd, fcntl.LOCK_EX)
            try:
                conn.execute("begin exclusive")
                try:
                    found = self._claim(conn, key, task_id, data, priority, now)
                except BaseException:
                    conn.rollback()
                    raise
                conn.commit()
            finally:
                fcntl.flock(lock_fd, fcntl.LOCK_UN)
        return (task_id, False) if found is None else (found, True)

    def _intake_lock_fd(self) -> int:
        """This process's descriptor of the intake lock file, next to the database.

        Intakes of the listener's worker processes queue up on this lock before SQLite's write lock. A
        process that finds SQLite's lock taken sleeps in SQLite's busy handler (1 ms, then 2, 5, ...)
        however soon the lock is free again; one blocked on ``flock`` is woken as soon as it is released,
        and a transaction holds it for a fraction of a millisecond. SQLite's own locking still guards
        the data (the consumer does not take this lock). Opened once per process, after any fork:
        ``flock`` only excludes separately opened descriptors.
        """
        pid = os.getpid()
        if self._lock_pid != pid:
            flags = os.O_RDWR | os.O_CREAT | os.O_CLOEXEC
            self._lock_fd = os.open(f"{self.filename}.intake-lock", flags, 0o644)
            self._lock_pid = pid
        return self._lock_fd

    def close(self) -> bool:
        """Close the connection and this process's intake lock descriptor."""
        closed = super().close()
        with self.lock:
            if self._lock_pid == os.getpid():
                os.close(self._lock_fd)
            self._lock_pid = None
        return closed

    def _claim(self, conn: sqlite3.Connection, key: str, task_id: str, data: bytes, priority: float | None,
               now: float) -> str | None:
        """Inside the transaction: None when the job was stored, else the task id ``key`` already has."""
        if now - self._pruned_at >= PRUNE_INTERVAL_S:
            conn.execute("delete from guard_delivery where created_at < ?", (now - DELIVERY_RETENTION_S,))
            self._pruned_at = now
        claimed = conn.execute("insert into guard_delivery (key, task_id, created_at) values (?, ?, ?) "
                               "on conflict (key) do nothing", (key, task_id, now)).rowcount
        if claimed != 1:
            return conn.execute("select task_id from guard_delivery where key = ?", (key,)).fetchone()[0]
        conn.execute("insert into task (queue, data, priority) values (?, ?, ?)",
                     (self.name, data, priority or 0))
        return None

    def check_writable(self) -> None:
        """Raise if the queue database cannot take a write right now (takes and releases the write lock)."""
        with self.db() as curs:
            curs.execute("begin immediate")
            curs.execute("rollback")


_ENQUEUE_ONCE_LUA = """
local existing = redis.call('GET', KEYS[1])
if existing then
  return {existing, 1}
end
redis.call('SET', KEYS[1], ARGV[1], 'EX', ARGV[3])
redis.call('LPUSH', KEYS[2], ARGV[2])
return {ARGV[1], 0}
"""


class GuardRedisStorage(RedisStorage):
    """huey's Redis storage plus delivery keys, set together with the job push by one Lua script."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._enqueue_once = self.conn.register_script(_ENQUEUE_ONCE_LUA)
        self.delivery_prefix = f"guard.delivery.{self.name}."

    def enqueue_once(self, key: str, task_id: str, data: bytes, priority: float | None = None,
                     now: float | None = None) -> tuple[str, bool]:
        """Store ``data`` as a job unless ``key`` was seen; returns (task id, duplicate?)."""
        found, duplicate = self._enqueue_once(keys=[self.delivery_prefix + key, self.queue_key],
                                              args=[task_id, data, DELIVERY_RETENTION_S])
        if isinstance(found, bytes):
            found = found.decode()
        return str(found), bool(duplicate)

    def check_writable(self) -> None:
        """Raise if Redis does not accept a write right now."""
        self.conn.set(f"guard.ready.{self.name}", str(time.time()), ex=60)


class GuardSqliteHuey(SqliteHuey):
    """SqliteHuey whose storage also records delivery keys."""

    storage_class = GuardSqliteStorage


class GuardRedisHuey(RedisHuey):
    """RedisHuey whose storage also records delivery keys."""

    storage_class = GuardRedisStorage


_instances: dict[str, Huey] = {}
_instances_lock = threading.Lock()


def sqlite_path(queue_url: str) -> Path:
    """The database file of a ``sqlite:///PATH[?fsync=full]`` queue URL (relative paths: to the cwd)."""
    return Path(queue_url[len("sqlite:///"):].split("?", 1)[0])


def _sqlite_synchronous(queue_url: str) -> str:
    query = parse_qs(queue_url.partition("?")[2])
    fsync = (query.get("fsync") or ["normal"])[-1].lower()
    if fsync in ("full", "1", "true", "yes", "on"):
        return "full"
    if fsync in ("normal", "0", "false", "no", "off"):
        return "normal"
    raise ValueError("GUARD_QUEUE option fsync must be full or normal")


def get_huey(settings: Settings) -> Huey:
    """The huey instance for ``settings.queue_url`` (one per URL and process)."""
    url = settings.queue_url
    with _instances_lock:
        instance = _instances.get(url)
        if instance is None:
            instance = _build_huey(url)
            _instances[url] = instance
        return instance


def close_all() -> None:
    """Close and forget every huey instance of this process (a restart, as far as the queue goes)."""
    with _instances_lock:
        for instance in _instances.values():
            instance.storage.close()
        _instances.clear()


def _build_huey(url: str) -> Huey:
    if url.startswith("sqlite:///"):
        path = sqlite_path(url)
        path.parent.mkdir(parents=True, exist_ok=True)
        # results=False: verdicts go to the results store, huey's own result rows would only pile up.
        return GuardSqliteHuey(HUEY_NAME, filename=str(path), results=False,
                               synchronous=_sqlite_synchronous(url))
    parsed = urlparse(url)
    if parsed.scheme in ("redis", "rediss"):
        return GuardRedisHuey(HUEY_NAME, url=url, results=False)
    raise ValueError("GUARD_QUEUE must be sqlite:///PATH or redis://HOST:PORT/DB")


def submit(settings: Settings, request: ValidationRequest) -> tuple[str, bool]:
    """Store a validation job durably unless its delivery was already taken.

    Returns ``(task_id, duplicate)``. For a duplicate, ``task_id`` is the id the delivery was first
    taken with and nothing is stored. Raises if the queue cannot be written; then nothing was recorded.

    The job is the huey message of ``listener.worker.tasks.validate_version(request_dict)``, built by name:
    the listener never imports the worker's modules (and MLflow with them). Retries, delays and timeouts
    left unset here are filled in by the consumer from the task's own decorator.
    """
    instance = get_huey(settings)
    task_id = str(uuid.uuid4())
    message = Message(id=task_id, name=TASK_NAME, args=(request.to_dict(),), kwargs={})
    data = instance.serializer.serialize(message)
    return instance.storage.enqueue_once(request.delivery_key, task_id, data)


def requeue(settings: Settings, request_dict: dict[str, Any]) -> str:
    """Store a job for a request whose delivery was already taken (a journaled job run again).

    No delivery key is recorded: the job's own journal row keeps it from running twice. Returns the task id.
    """
    instance = get_huey(settings)
    task_id = str(uuid.uuid4())
    message = Message(id=task_id, name=TASK_NAME, args=(dict(request_dict),), kwargs={})
    instance.storage.enqueue(instance.serializer.serialize(message), 0)
    return task_id


def queue_depth(settings: Settings) -> int:
    """Jobs waiting in the queue (scheduled retries included)."""
    instance = get_huey(settings)
    return int(instance.storage.queue_size()) + int(instance.storage.schedule_size())


def check_writable(settings: Settings) -> None:
    """Raise when the queue cannot take a write (used by /readyz)."""
    get_huey(settings).storage.check_writable()
