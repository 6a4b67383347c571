"""Intake: exactly-once enqueueing on the real SQLite queue (threads, processes, key retention)."""

from __future__ import annotations

import sqlite3
import threading
import time
import uuid

from listener import intake
from listener.config import Settings
from listener.protocol import ValidationRequest


def test_concurrent_copies_of_one_delivery_store_one_job(settings):
    intake.get_huey(settings)
    request = ValidationRequest("mlflow", "m", "1", "model_version.created", "seal_and_check", None, None,
                                False, "same-delivery", time.time())
    results: list[tuple[str, bool]] = []
    lock = threading.Lock()

    def go():
        outcome = intake.submit(settings, request)
        with lock:
            results.append(outcome)

    threads = [threading.Thread(target=go) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(dup for _, dup in results) == [False] + [True] * 7
    assert len({task_id for task_id, _ in results}) == 1
    assert intake.queue_depth(settings) == 1



def test_expired_delivery_keys_are_pruned_and_fresh_ones_kept(settings):
    """Keys older than the retention are dropped by a later intake; younger ones still mark duplicates."""
    storage = intake.get_huey(settings).storage
    t0 = 1_000_000.0
    assert storage.enqueue_once("old", "task-old", b"job", now=t0) == ("task-old", False)
    assert storage.enqueue_once("young", "task-young", b"job", now=t0 + 600) == ("task-young", False)
    later = t0 + intake.DELIVERY_RETENTION_S + intake.PRUNE_INTERVAL_S
    assert storage.enqueue_once("new", "task-new", b"job", now=later) == ("task-new", False)
    with sqlite3.connect(intake.sqlite_path(settings.queue_url)) as conn:
        kept = conn.execute("select key from guard_delivery order by key").fetchall()
    assert kept == [("new",), ("young",)]
    assert storage.enqueue_once("young", "other", b"job", now=later) == ("task-young", True)
    assert intake.queue_depth(settings) == 3



def _intake_process(settings: Settings, keys: list[str], out) -> None:
    storage = intake.get_huey(settings).storage  # this process's own connection and intake lock
    out.put([(key, *storage.enqueue_once(key, str(uuid.uuid4()), b"job")) for key in keys])


def test_intake_processes_share_the_queue_and_take_each_key_once(settings):
    """Two processes (like gunicorn workers) taking the same and different keys at once."""
    import multiprocessing

    intake.get_huey(settings)
    intake.close_all()  # nothing open is inherited by the children
    shared = [f"shared-{i}" for i in range(30)]
    own = [[f"own-{p}-{i}" for i in range(30)] for p in range(2)]
    ctx = multiprocessing.get_context("fork")
    out = ctx.Queue()
    procs = [ctx.Process(target=_intake_process, args=(settings, shared + keys, out)) for keys in own]
    for proc in procs:
        proc.start()
    results = [out.get(timeout=60) for _ in procs]
    for proc in procs:
        proc.join(timeout=60)
        assert proc.exitcode == 0
    taken = [(key, task_id) for rows in results for key, task_id, duplicate in rows if not duplicate]
    assert sorted(key for key, _ in taken) == sorted(shared + own[0] + own[1])
    first = dict(taken)
    for rows in results:
        for key, task_id, _ in rows:
            assert task_id == first[key]  # a duplicate reports the id the key was first taken with
    assert intake.queue_depth(settings) == 90
