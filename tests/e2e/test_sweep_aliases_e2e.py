"""Protected aliases, catch-up, re-publish and re-verification on open-source MLflow, end to end.

Real parts only: ``mlflow server`` with a webhook to the listener (gunicorn), a huey consumer, and the
``guard-sweep`` / ``guard-job`` console scripts run as processes with the stack's environment. The stack
protects ``@champion`` (``GUARD_PROTECTED_ALIASES=champion``); ``@candidate`` is not protected.
"""

from __future__ import annotations

import json
import re
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests

from listener.store import get_store
from tests.e2e.test_mlflow_e2e import VENV_BIN, Stack
from tests.listener.worker.helpers import local_model_path, register_model, wait_for
from tests.support.procs import MlflowServer

pytestmark = pytest.mark.e2e
EXTRA_ENV = {"GUARD_PROTECTED_ALIASES": "champion", "GUARD_SWEEP_INTERVAL": "86400"}
# Longer than MLflow's own delivery retries (about 7 s): a delivery to a stopped listener is lost.
DELIVERY_GIVE_UP_S = 15


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    # The worker's periodic sweep is not due for a day: each test runs guard-sweep when it means to.
    with Stack(tmp_path_factory.mktemp("e2e-sweep"), EXTRA_ENV).running(hold_periodic_sweep=True) as st:
        yield st


def _run(stack: Stack, command: str, *args: str, **env: str) -> subprocess.CompletedProcess:
    return subprocess.run([str(VENV_BIN / command), *args], env={**stack.env, **env}, capture_output=True,
                          text=True, timeout=300, cwd=stack.root)


def _sweep(stack: Stack, **env: str) -> dict:
    done = _run(stack, "guard-sweep", **env)
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout.strip().splitlines()[-1])


def _tags(stack: Stack, name: str, version: str) -> dict:
    return stack.client.get_model_version(name, version).tags


def _status(stack: Stack, name: str, version: str, status: str, timeout: float = 90) -> dict:
    try:
        return wait_for(lambda: (t := _tags(stack, name, version)).get("validation.status") == status and t,
                        timeout=timeout, what=f"{name} v{version} {status}")
    except AssertionError as exc:
        raise AssertionError(f"{exc}\n{stack.logs()}") from exc


def _holder(stack: Stack, name: str, alias: str) -> str | None:
    return stack.client.get_registered_model(name).aliases.get(alias)


def _alias_rows(stack: Stack, name: str) -> list[dict]:
    return [r for r in stack.rows(name) if r["trigger"] == "model_version_alias.created"]


def _tamper(stack: Stack, name: str, version: str) -> None:
    target = local_model_path(stack.client, name, version) / "data" / "deep" / "nested" / "layer.bin"
    target.write_bytes(b"changed after registration")


def _champion_on_passed(stack: Stack, tmp_path: Path, name: str) -> str:
    version = register_model(stack.client, tmp_path, name=name)[1]
    _status(stack, name, version, "PASSED")
    stack.client.set_registered_model_alias(name, "champion", version)
    wait_for(lambda: any(r["version"] == version and r["status"] == "PASSED"
                         and r["publish_status"] == "PUBLISHED" for r in _alias_rows(stack, name)),
             timeout=60, what="alias check PASSED")
    return version


def test_protected_alias_moves_back_off_a_tampered_version_without_a_loop(stack: Stack, tmp_path: Path):
    name = "e2e-protect"
    good = _champion_on_passed(stack, tmp_path, name)
    bad = register_model(stack.client, tmp_path, name=name)[1]
    _status(stack, name, bad, "PASSED")
    _tamper(stack, name, bad)
    stack.client.set_registered_model_alias(name, "champion", bad)

    tags = _status(stack, name, bad, "FAILED")
    wait_for(lambda: _holder(stack, name, "champion") == good, timeout=30, what="champion moved back")
    note = f"@champion moved back from version {bad} to version {good}"
    assert tags["validation.alias_reverted"] == note
    assert note in tags["validation.summary"] and "data/deep/nested/layer.bin" in tags["validation.summary"]
    assert note in stack.client.get_model_version(name, bad).description
    page = requests.get(stack.url + "/", timeout=10).text
    assert "moved back from version" in page

    # The guard's own alias change fired model_version_alias.created for the good version: recognised,
    # neither validated nor acted upon. Only the two alias events a person caused have rows.
    store = get_store(stack.settings.store_url)

    def history() -> list[tuple[str | None, str]]:
        return [(e.version, e.source) for e in store.alias_history("mlflow", name, "champion")]

    wait_for(lambda: len(history()) == 4, timeout=30, what="the echo of the guard's alias change observed")
    assert history() == [(good, "webhook"), (good, "guard"), (bad, "webhook"), (good, "webhook")]
    time.sleep(1.0)  # a job caused by the echo, if there were one, would show up here
    rows = _alias_rows(stack, name)
    assert sorted(r["version"] for r in rows) == sorted([good, bad]), rows
    assert _holder(stack, name, "champion") == good

    # An alias that is not protected stays where it was set, FAILED or not.
    stack.client.set_registered_model_alias(name, "candidate", bad)
    wait_for(lambda: len(_alias_rows(stack, name)) == 3 and all(r["publish_status"] == "PUBLISHED"
                                                                for r in _alias_rows(stack, name)),
             timeout=60, what="candidate alias checked")
    assert [r["status"] for r in _alias_rows(stack, name) if r["version"] == bad] == ["FAILED", "FAILED"]
    assert _holder(stack, name, "candidate") == bad and _holder(stack, name, "champion") == good
    metrics = requests.get(stack.url + "/metrics", timeout=10).text
    assert re.search(r'guard_alias_reverted_total\{registry="mlflow"\} [1-9]', metrics)


def test_protected_alias_with_no_earlier_holder_is_removed(stack: Stack, tmp_path: Path):
    name, version = register_model(stack.client, tmp_path, name="e2e-protect-only")
    _status(stack, name, version, "PASSED")
    _tamper(stack, name, version)
    stack.client.set_registered_model_alias(name, "champion", version)
    tags = _status(stack, name, version, "FAILED")
    wait_for(lambda: _holder(stack, name, "champion") is None, timeout=30, what="champion removed")
    assert tags["validation.alias_reverted"] == (f"@champion removed from version {version} "
                                                 "(no earlier acceptable holder)")


def test_catch_up_validates_what_was_registered_while_the_listener_was_down(stack: Stack, tmp_path: Path):
    stack.web.stop()
    versions = [register_model(stack.client, tmp_path, name=f"e2e-missed-{i % 2}") for i in range(10)]
    stack.client.set_registered_model_alias("e2e-missed-0", "candidate", versions[0][1])
    stack.client.set_registered_model_alias("e2e-missed-1", "champion", versions[1][1])
    time.sleep(DELIVERY_GIVE_UP_S)
    stack.start_web()
    assert not stack.rows("e2e-missed-0") and not stack.rows("e2e-missed-1")

    report = _sweep(stack)
    for name, version in versions:
        tags = _status(stack, name, version, "PASSED")
        # Sealed as if its webhook had arrived: a signed seal (the stack has a signing key), no unsigned tag.
        assert tags.get("validation.seal") and tags.get("validation.seal_bundle")
        assert "validation.manifest" not in tags
    # Ten created jobs and the two alias jobs, all finished and published.
    rows = wait_for(lambda: (r := stack.rows("e2e-missed-0") + stack.rows("e2e-missed-1")) and len(r) == 12
                    and all(x["publish_status"] == "PUBLISHED" for x in r) and r,
                    timeout=90, what="every caught-up job published")
    created = [(r["model"], r["version"]) for r in rows if r["trigger"] == "model_version.created"]
    # Each version validated once: by the sweep, or by a delivery MLflow still managed to retry.
    assert sorted(created) == sorted(versions)
    by_sweep = {k for k in report["caught_up"]}
    assert by_sweep == {r["job_key"] for r in rows if r["job_key"].endswith(":model_version.created")}
    assert len(by_sweep) >= len(versions) - 1, rows
    assert set(report["aliases_changed"]) == {
        f"sweep:mlflow:e2e-missed-0:{versions[0][1]}:model_version_alias.created:candidate",
        f"sweep:mlflow:e2e-missed-1:{versions[1][1]}:model_version_alias.created:champion"}

    # A second sweep finds nothing left to do.
    again = _sweep(stack)
    assert again["caught_up"] == [] and again["aliases_changed"] == []
    assert len(stack.rows("e2e-missed-0") + stack.rows("e2e-missed-1")) == len(rows)


def test_verdict_stored_while_the_server_was_down_is_published_by_the_sweep(stack: Stack, tmp_path: Path):
    stack.web.stop()  # this version's own delivery is lost: guard-job below is its only check
    name, version = register_model(stack.client, tmp_path, name="e2e-republish")
    stack.server.stop()
    done = _run(stack, "guard-job", "--model", name, "--version", version, GUARD_MAX_RETRIES="1",
                GUARD_RETRY_BASE_S="0.2", GUARD_RETRY_MAX_S="0.5")
    assert done.returncode == 2, done.stdout + done.stderr
    [row] = stack.rows(name)
    assert row["status"] == "ERROR" and row["publish_status"] == "FAILED"

    stack.server = MlflowServer(stack.server.root, port=stack.server.port)
    stack.server.start()
    stack.start_web()
    assert "validation.status" not in _tags(stack, name, version)
    report = _sweep(stack)
    assert report["republished"] == [row["job_key"]]
    tags = _status(stack, name, version, "ERROR")
    assert tags["validation.summary"].startswith("could not check")
    wait_for(lambda: stack.rows(name)[0]["publish_status"] == "PUBLISHED", timeout=30, what="published")
    assert len(stack.rows(name)) == 1


def test_reverification_catches_a_file_changed_under_a_protected_alias(stack: Stack, tmp_path: Path):
    name = "e2e-reverify"
    good = _champion_on_passed(stack, tmp_path, name)
    served = _champion_on_passed(stack, tmp_path, name)
    _tamper(stack, name, served)  # no event at all

    def reverified() -> bool:
        _sweep(stack, GUARD_REVERIFY_INTERVAL="1")
        time.sleep(1.0)
        return _tags(stack, name, served).get("validation.status") == "FAILED"

    wait_for(reverified, timeout=120, interval=0, what="re-verification FAILED")
    wait_for(lambda: _holder(stack, name, "champion") == good, timeout=30, what="champion moved back")
    [row] = [r for r in stack.rows(name) if r["trigger"] == "reverify" and r["status"] == "FAILED"]
    assert "data/deep/nested/layer.bin" in row["summary"] and "@champion moved back" in row["summary"]
    metrics = requests.get(stack.url + "/metrics", timeout=10).text
    assert re.search(r'guard_tamper_detected_total\{registry="mlflow"\} [1-9]', metrics), metrics[-2000:]
