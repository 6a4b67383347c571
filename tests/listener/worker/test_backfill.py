"""``guard-sweep --backfill`` on a registry that held 40 versions before the guard first started.

Real ``mlflow server``; the guard runs as its console script with a data folder, store, seal store and
signing key of its own (a new deployment). Each backfilled version is sealed on first sight, and says so.
"""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Iterator
from datetime import datetime, timezone
from pathlib import Path

import pytest
from mlflow import MlflowClient

from core.seal.attestation import SealIdentity, registry_identity, verify_attestation
from core.seal.keys import generate_key_pair, load_trusted_keys
from listener.config import Settings
from listener.store import get_store
from listener.worker.sealing import BACKFILL_TRIGGER, FIRST_SIGHT_NOTE
from listener.worker.sweep import sweep_key
from tests.listener.helpers import queued_messages
from tests.listener.worker.helpers import wait_for
from tests.support.populated_registry import Populated, guard_env, guard_tags, populate
from tests.support.procs import MlflowServer

BIN = Path(sys.executable).parent


@pytest.fixture(scope="module")
def registry(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[MlflowServer, Populated]]:
    server = MlflowServer(tmp_path_factory.mktemp("backfill")).start()
    try:
        yield server, populate(MlflowClient(server.url), tmp_path_factory.mktemp("models"))
    finally:
        server.stop()


@pytest.fixture
def deployment(registry, tmp_path: Path) -> tuple[dict[str, str], Settings]:
    server, _ = registry
    generate_key_pair(tmp_path / "seal-key.pem", tmp_path / "seal-key.pub.pem")
    env = guard_env(server.url, tmp_path / "guard", GUARD_SIGNING_KEY=str(tmp_path / "seal-key.pem"))
    return env, Settings.from_env(env)


def _backfill(env: dict[str, str], *args: str) -> dict:
    done = subprocess.run([str(BIN / "guard-sweep"), "--backfill", *args], env=env, capture_output=True,
                          text=True, timeout=600)
    assert done.returncode == 0, done.stdout + done.stderr
    return json.loads(done.stdout.strip().splitlines()[-1])


def _verdicts(settings: Settings) -> list[dict]:
    return [r for r in get_store(settings.store_url).recent(limit=200) if r["status"] in ("PASSED", "FAILED")]


def test_backfill_since_a_date_of_chosen_models_checks_exactly_them_sealed_on_first_sight(registry,
                                                                                          deployment):
    server, populated = registry
    env, settings = deployment
    client = MlflowClient(server.url)
    since = datetime.fromtimestamp(populated.midpoint, timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
    chosen = {(m, v) for m, v in populated.versions if m in ("fc-alpha", "fc-beta") and int(v) > 4}

    report = _backfill(env, "--since", since, "--model", "fc-al*", "--model", "fc-beta", "--run",
                       "--rate", "6000/min")

    assert {(v["model"], v["version"]) for v in report["versions"]} == chosen
    assert set(report["handed_out"]) == {sweep_key("mlflow", m, v, BACKFILL_TRIGGER) for m, v in chosen}
    assert set(guard_tags(client, populated.versions)) == chosen  # nothing else was written onto
    trusted = load_trusted_keys([env["GUARD_SIGNING_KEY"].replace(".pem", ".pub.pem")])
    seals = settings.open_seal_store()
    for name, version in chosen:
        tags = client.get_model_version(name, version).tags
        assert tags["validation.status"] == "PASSED" and tags["validation.seal_note"] == FIRST_SIGHT_NOTE
        assert FIRST_SIGHT_NOTE in tags["validation.summary"]
        stored = seals.read(SealIdentity(registry_identity(server.url), name, version))
        assert verify_attestation(stored.attestation, trusted).attestation.note == FIRST_SIGHT_NOTE
    rows = _verdicts(settings)
    assert sorted((r["model"], r["version"]) for r in rows) == sorted(chosen)
    assert {r["trigger"] for r in rows} == {BACKFILL_TRIGGER}
    # The report (kept in the store: open-source MLflow versions carry no report tag) says it too.
    assert {r["report"]["seal_detail"]["note"] for r in rows} == {FIRST_SIGHT_NOTE}

    # Run again: nothing left to do, nothing checked twice.
    again = _backfill(env, "--since", since, "--model", "fc-al*", "--model", "fc-beta", "--run")
    assert again["versions"] == [] and again["already_checked"] == len(chosen)
    assert len(_verdicts(settings)) == len(chosen)


def test_backfill_to_the_queue_is_resumable_and_limited(registry, deployment):
    _, populated = registry
    env, settings = deployment
    first = _backfill(env, "--model", "fc-epsilon", "--limit", "3", "--rate", "6000/min")
    second = _backfill(env, "--model", "fc-epsilon", "--rate", "6000/min")
    queued = [m.args[0] for m in queued_messages(settings)]
    assert len(first["handed_out"]) == 3 and len(second["handed_out"]) == 5
    assert not set(first["handed_out"]) & set(second["handed_out"])
    expected = sorted(v for m, v in populated.versions if m == "fc-epsilon")
    assert sorted(q["version"] for q in queued) == expected
    assert {q["trigger"] for q in queued} == {BACKFILL_TRIGGER}
    assert _backfill(env, "--model", "fc-epsilon")["versions"] == []


def test_backfill_interrupted_by_sigterm_and_run_again_checks_each_version_once(registry, deployment):
    server, populated = registry
    env, settings = deployment
    chosen = {(m, v) for m, v in populated.versions if m in ("fc-gamma", "fc-delta")}
    argv = [str(BIN / "guard-sweep"), "--backfill", "--model", "fc-gamma", "--model", "fc-delta", "--run",
            "--rate", "6000/min"]
    proc = subprocess.Popen(argv, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        wait_for(lambda: len(_verdicts(settings)) >= 3, timeout=300, what="three versions checked")
        proc.send_signal(signal.SIGTERM)
        out, err = proc.communicate(timeout=300)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 0, out + err
    stopped = json.loads(out.strip().splitlines()[-1])
    assert stopped["interrupted"] is True
    done_first = len(_verdicts(settings))
    assert 3 <= done_first < len(chosen)
    time.sleep(0.5)

    rest = _backfill(env, "--model", "fc-gamma", "--model", "fc-delta", "--run", "--rate", "6000/min")

    assert rest["already_checked"] == done_first and rest["interrupted"] is False
    rows = _verdicts(settings)
    per_version = Counter((r["model"], r["version"]) for r in rows)
    assert set(per_version) == chosen and set(per_version.values()) == {1}
