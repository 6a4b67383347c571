"""Queue task plumbing: lost jobs are found in the journal and re-enqueued exactly once."""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from listener.config import Settings
from listener.intake import get_huey
from listener.store import get_store, owner_id
from listener.verdict import Verdict


def _req(key: str, version: str) -> dict:
    return {"registry": "mlflow", "model": "churn", "version": version, "trigger": "model_version.created",
            "action": "seal_and_check", "to_stage": None, "alias": None, "gate": False, "delivery_key": key,
            "received_at": time.time()}


def _dead_owner() -> str:
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return f"{socket.gethostname()}:{proc.pid}:cafe"


def test_recover_requeues_only_jobs_of_dead_workers_once(tmp_path: Path, monkeypatch):
    monkeypatch.setenv("GUARD_DATA_DIR", str(tmp_path / "env-guard"))
    from listener.worker import tasks

    settings = Settings(data_dir=tmp_path / "guard")
    instance = get_huey(settings)
    store = get_store(settings.store_url)

    store.claim(_req("killed", "1"), _dead_owner())          # worker SIGKILLed mid-check
    live = owner_id()
    store.claim(_req("running", "2"), live)                   # a live worker is on it
    waiting_owner = owner_id()
    store.claim(_req("waiting", "3"), waiting_owner)          # waits for its retry in huey's schedule
    store.release("waiting", waiting_owner, retrying=True)
    tasks._ensure_registered(instance)
    instance.add_schedule(tasks.validate_version.s(_req("waiting", "3")))
    done_owner = owner_id()
    store.claim(_req("done", "4"), done_owner)                # finished and published
    store.record_verdict("done", Verdict(status="PASSED", model="churn", version="4", registry="mlflow",
                                         trigger="t", summary="ok"))
    store.record_publish("done", ok=True)
    store.release("done", done_owner)

    assert tasks.recover_unfinished(settings, instance) == ["killed"]
    pending = [t.args[0]["delivery_key"] for t in instance.pending()]
    assert pending == ["killed"]
    # Called again (another worker starting, the periodic sweep): the job is already queued.
    assert tasks.recover_unfinished(settings, instance) == []
    assert len(instance.pending()) == 1


def test_retry_delay_is_exponential_and_capped():
    settings = Settings()
    delays = [settings.retry_delay(n) for n in range(1, 10)]
    assert delays[:4] == [2.0, 4.0, 8.0, 16.0]
    assert max(delays) == settings.retry_max_s
    assert delays == sorted(delays)


def test_second_job_of_a_version_waits_without_using_a_retry(tmp_path: Path):
    from listener.worker.admission import LOCK_WAIT_S, RetryLater
    from listener.worker.job import process_job
    from tests.support.procs import free_port

    settings = Settings(tracking_uri=f"http://127.0.0.1:{free_port()}", data_dir=tmp_path / "guard")
    store = get_store(settings.store_url)
    holder = owner_id()
    assert store.claim(_req("first", "7"), holder).state == "run"  # a live worker checks version 7
    with pytest.raises(RetryLater) as info:
        process_job(_req("second", "7"), settings)
    assert info.value.delay == LOCK_WAIT_S
    assert store.get("second") is None  # not started, no attempt counted
    store.release("first", holder)


def test_start_up_recovery_runs_once_per_process_however_many_threads(tmp_path: Path):
    """huey runs its start-up hooks in every worker thread; the journal is recovered by the first only."""
    code = """
import json, sys, threading
from listener.worker import tasks
from listener.store import get_store
store = get_store(tasks.get_settings().store_url)
store.claim(json.loads(sys.argv[2]), sys.argv[1])  # a job whose worker was SIGKILLed mid-check
taken = 0
for _ in range(3):  # three consumer threads start, each taking whatever is queued before the next
    thread = threading.Thread(target=tasks._start_process)
    thread.start()
    thread.join()
    taken += len(tasks.huey.pending())
    tasks.huey.flush()
print(taken)
"""
    env = {**__import__("os").environ, "GUARD_DATA_DIR": str(tmp_path / "guard")}
    argv = [sys.executable, "-c", code, _dead_owner(), json.dumps(_req("killed", "1"))]
    out = subprocess.run(argv, env=env, capture_output=True, text=True, timeout=120,
                         cwd=Path(__file__).resolve().parents[3])
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.strip() == "1"
