"""Results store and job journal: claims, per-version lock, recovery candidates, listing."""

from __future__ import annotations

import socket
import subprocess
import sys
import time
from pathlib import Path

from listener.results import ResultsStore, owner_alive, owner_id
from listener.verdict import Verdict


def _req(key: str, model: str = "churn", version: str = "1") -> dict:
    return {"registry": "mlflow", "model": model, "version": version, "trigger": "model_version.created",
            "action": "seal_and_check", "to_stage": None, "alias": None, "gate": False, "delivery_key": key,
            "received_at": time.time()}


def _dead_owner() -> str:
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return f"{socket.gethostname()}:{proc.pid}:deadbeef"


def _verdict(status: str, model: str = "churn", version: str = "1", **kw) -> Verdict:
    if status == "ERROR":
        return Verdict.error_verdict(model=model, version=version, registry="mlflow", trigger="t", **kw)
    return Verdict(status=status, model=model, version=version, registry="mlflow", trigger="t",
                   summary=f"{status.lower()} summary", **kw)


def test_claim_record_publish_and_list(tmp_path: Path):
    store = ResultsStore(tmp_path / "results.db")
    me = owner_id()
    claim = store.claim(_req("k1"), me, ui_url="http://ui/#/models/churn/versions/1")
    assert claim.state == "run" and claim.verdict is None
    store.record_verdict("k1", _verdict("PASSED", duration_s=0.5))
    assert store.record_publish("k1", ok=True) == 1
    store.release("k1", me)
    row = store.recent()[0]
    assert row["status"] == "PASSED" and row["publish_status"] == "PUBLISHED"
    assert row["ui_url"] == "http://ui/#/models/churn/versions/1"
    assert set(row) >= {"id", "registry", "model", "version", "trigger", "status", "summary", "started_at",
                        "finished_at", "duration_s", "report", "ui_url"}
    assert row["started_at"].endswith("Z") and row["finished_at"].endswith("Z")
    assert row["report"]["status"] == "PASSED"
    # Done is done: a duplicate of the job does not run again.
    assert store.claim(_req("k1"), owner_id()).state == "done"


def test_error_verdicts_are_kept_with_reason_and_counted(tmp_path: Path):
    store = ResultsStore(tmp_path / "r.db")
    for i, status in enumerate(["PASSED", "FAILED", "ERROR", "ERROR"]):
        key = f"k{i}"
        me = owner_id()
        store.claim(_req(key, version=str(i + 1)), me)
        kw = {"reason": "tracking server unreachable"} if status == "ERROR" else {}
        store.record_verdict(key, _verdict(status, version=str(i + 1), **kw))
        store.release(key, me)
    assert sorted(r["status"] for r in store.recent()) == ["ERROR", "ERROR", "FAILED", "PASSED"]
    errors = [r for r in store.recent() if r["status"] == "ERROR"]
    assert all("tracking server unreachable" in r["error"] for r in errors)
    assert [r["version"] for r in store.recent()] == ["4", "3", "2", "1"]  # newest first


def test_recent_filters_by_model_and_limits(tmp_path: Path):
    store = ResultsStore(tmp_path / "r.db")
    for i in range(5):
        store.claim(_req(f"a{i}", model="alpha", version=str(i + 1)), owner_id())
    store.claim(_req("b0", model="beta"), owner_id())
    assert {r["model"] for r in store.recent(model="alpha")} == {"alpha"}
    assert len(store.recent(model="alpha", limit=2)) == 2
    assert [r["model"] for r in store.recent(model="beta")] == ["beta"]
    assert store.recent(model="gamma") == []


def test_same_version_is_locked_while_a_live_worker_holds_it(tmp_path: Path):
    store = ResultsStore(tmp_path / "r.db")
    first = owner_id()
    assert store.claim(_req("k1"), first).state == "run"
    # Another job of the same version waits; another version does not.
    assert store.claim(_req("k2"), owner_id()).state == "locked"
    assert store.claim(_req("k3", version="2"), owner_id()).state == "run"
    # The same job claimed by a second worker while the first one lives: busy, not run twice.
    assert store.claim(_req("k1"), owner_id()).state == "busy"
    store.release("k1", first)
    assert store.claim(_req("k2"), owner_id()).state == "run"


def test_dead_worker_releases_lock_and_job_becomes_recoverable(tmp_path: Path):
    store = ResultsStore(tmp_path / "r.db")
    dead = _dead_owner()
    assert not owner_alive(dead, time.time(), time.time())
    assert store.claim(_req("k1"), dead).state == "run"
    # A worker killed with SIGKILL never released; its job is picked up again, and does not block others.
    assert [k for k, _ in store.unfinished()] == ["k1"]
    assert store.unfinished()[0][1]["model"] == "churn"
    me = owner_id()
    assert store.claim(_req("k1"), me).state == "run"
    assert store.unfinished() == []  # held by a live worker now


def test_verdict_stored_but_unpublished_resumes_with_the_verdict(tmp_path: Path):
    store = ResultsStore(tmp_path / "r.db")
    me = owner_id()
    store.claim(_req("k1"), me)
    store.record_verdict("k1", _verdict("FAILED"))
    store.record_publish("k1", ok=False, error="503 from registry")
    store.release("k1", me, retrying=True)
    assert [k for k, _ in store.unfinished()] == ["k1"]
    claim = store.claim(_req("k1"), owner_id())
    assert claim.state == "run" and claim.verdict is not None and claim.verdict.status == "FAILED"
    assert claim.publish_attempts == 1
    assert store.get("k1")["status"] == "FAILED"  # the verdict stays visible meanwhile


def test_final_publish_failure_is_kept_and_not_retried(tmp_path: Path):
    store = ResultsStore(tmp_path / "r.db")
    me = owner_id()
    store.claim(_req("k1"), me)
    store.record_verdict("k1", _verdict("PASSED"))
    store.record_publish("k1", ok=False, error="permission denied", final=True)
    store.release("k1", me)
    assert store.unfinished() == []
    assert store.get("k1")["publish_status"] == "FAILED"
    assert store.get("k1")["publish_error"] == "permission denied"


def test_store_is_shared_between_processes(tmp_path: Path):
    db = tmp_path / "r.db"
    ResultsStore(db)
    code = ("import sys; from listener.results import ResultsStore, owner_id; "
            "s = ResultsStore(sys.argv[1]); "
            "[s.claim({'registry':'mlflow','model':sys.argv[2],'version':str(i),'trigger':'t','action':'check',"
            "'delivery_key':sys.argv[2]+str(i)}, owner_id()) for i in range(20)]")
    procs = [subprocess.Popen([sys.executable, "-c", code, str(db), f"p{n}-"]) for n in range(3)]
    assert [p.wait(timeout=60) for p in procs] == [0, 0, 0]
    rows = ResultsStore(db).recent(limit=1000)
    assert len(rows) == 60
