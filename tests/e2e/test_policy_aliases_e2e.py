"""A policy per alias, end to end on open-source MLflow, and a broken policy refusing to start.

Real parts only (the stack of :mod:`tests.e2e.test_mlflow_e2e`): ``mlflow server`` delivering webhooks to
the listener (gunicorn), a huey consumer, ``GUARD_POLICY`` naming a policy whose ``champion`` section
turns ``load_predict`` on, and ``@champion`` protected. The models are real pyfunc models logged with
MLflow and registered; one predicts, the other's ``predict`` raises. The same version passes as
``@challenger`` and fails as ``@champion``, and the champion alias goes back to the version that held it.
"""

from __future__ import annotations

import subprocess
from collections.abc import Iterator
from pathlib import Path

import mlflow
import pandas as pd
import pytest
import requests
from mlflow.models import infer_signature

from tests.e2e.test_mlflow_e2e import REPO, VENV_BIN, Stack
from tests.listener.worker.helpers import wait_for
from tests.support.procs import ManagedProcess, free_port

pytestmark = pytest.mark.e2e
POLICY = """\
version: 1
default:
  signature: required
aliases:
  champion:
    load_predict: {enabled: true, timeout_s: 300, memory_mb: 2048}
"""
MODEL_CODE = """\
import pandas as pd
from mlflow.models import set_model
from mlflow.pyfunc import PythonModel


class Model(PythonModel):
    def predict(self, context, model_input, params=None):
        {body}


set_model(Model())
"""
GOOD = 'return pd.DataFrame({"y": model_input["x"] * 2.0})'
RAISES = 'raise ValueError("scaler was fitted on another feature set")'
EXAMPLE = pd.DataFrame({"x": [1.0, 2.0]})


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    root = tmp_path_factory.mktemp("e2e-policy")
    policy = root / "policy.yaml"
    policy.write_text(POLICY)
    extra = {"GUARD_PROTECTED_ALIASES": "champion", "GUARD_SWEEP_INTERVAL": "86400",
             "GUARD_POLICY": str(policy)}
    with Stack(root, extra).running(hold_periodic_sweep=True) as st:
        yield st


def _register(stack: Stack, tmp_path: Path, name: str, body: str) -> str:
    """Log a pyfunc model (models from code: no pickle) with an input example and signature; register it."""
    code = tmp_path / ("good_model.py" if body == GOOD else "raising_model.py")
    code.write_text(MODEL_CODE.format(body=body))
    mlflow.set_tracking_uri(stack.server.url)
    try:
        with mlflow.start_run():
            info = mlflow.pyfunc.log_model(name="model", python_model=str(code), input_example=EXAMPLE,
                                           signature=infer_signature(EXAMPLE, pd.DataFrame({"y": [1.0]})),
                                           registered_model_name=name)
    finally:
        mlflow.set_tracking_uri(None)
    return str(info.registered_model_version)


def _checks(row: dict) -> dict[str, tuple[str, str]]:
    return {c["check"]: (c["status"], c["reason"]) for c in row["policy"]["checks"]}


def _alias_rows(stack: Stack, name: str) -> list[dict]:
    return [r for r in stack.rows(name) if r["trigger"] == "model_version_alias.created"
            and r["publish_status"] == "PUBLISHED"]


def _holder(stack: Stack, name: str, alias: str) -> str | None:
    return stack.client.get_registered_model(name).aliases.get(alias)


def test_the_same_version_passes_as_challenger_and_fails_as_champion(stack: Stack, tmp_path: Path):
    name = "e2e-policy-alias"
    good = _register(stack, tmp_path, name, GOOD)
    wait_for(lambda: stack.client.get_model_version(name, good).tags.get("validation.status") == "PASSED",
             timeout=120, what="the good version's creation check")
    stack.client.set_registered_model_alias(name, "champion", good)
    wait_for(lambda: len(_alias_rows(stack, name)) == 1, timeout=300, what="@champion check of version 1")
    first = _alias_rows(stack, name)[0]
    assert first["status"] == "PASSED", first
    assert _checks(first)["load_predict"][0] == "PASS"

    candidate = _register(stack, tmp_path, name, RAISES)
    created = wait_for(lambda: (t := stack.client.get_model_version(name, candidate).tags)
                       .get("validation.status") == "PASSED" and t, timeout=120, what="creation check")
    assert "validation.policy" not in created  # default only (the MLmodel and its signature): it passed

    stack.client.set_registered_model_alias(name, "challenger", candidate)
    wait_for(lambda: len(_alias_rows(stack, name)) == 2, timeout=300, what="@challenger check")
    challenger = _alias_rows(stack, name)[0]
    assert (challenger["version"], challenger["status"]) == (candidate, "PASSED"), challenger
    assert "load_predict" not in _checks(challenger)

    stack.client.set_registered_model_alias(name, "champion", candidate)
    wait_for(lambda: len(_alias_rows(stack, name)) == 3, timeout=300, what="@champion check of the candidate")
    champion = _alias_rows(stack, name)[0]
    assert (champion["version"], champion["status"]) == (candidate, "FAILED"), champion
    assert champion["policy"]["status"] == "FAIL"
    assert _checks(champion)["load_predict"] == (
        "FAIL", "predict raised ValueError: scaler was fitted on another feature set")

    # The protected alias goes back to the version that held it; the challenger alias stays.
    wait_for(lambda: _holder(stack, name, "champion") == good, timeout=60, what="@champion moved back")
    assert _holder(stack, name, "challenger") == candidate
    version = stack.client.get_model_version(name, candidate)
    assert version.tags["validation.status"] == "FAILED"
    assert version.tags["validation.policy"] == "FAIL: load_predict"
    assert "| load_predict | FAIL | predict raised ValueError: scaler was fitted on another feature set |" \
        in version.description
    api = requests.get(stack.url + "/api/validations", params={"model": name}, timeout=10).json()
    assert [v["policy"]["status"] for v in api["validations"][:2]] == ["FAIL", "PASS"]
    assert "FAIL load_predict: predict raised ValueError" in requests.get(stack.url + "/", timeout=10).text


def _refusal(argv: list[str], env: dict[str, str], cwd: Path, log: Path) -> str:
    """Run a process that must refuse to start; its output once it has exited (non-zero)."""
    proc = ManagedProcess(argv, env=env, cwd=cwd, log_path=log).start()
    try:
        wait_for(lambda: proc.proc.poll() is not None, timeout=120, what=f"{argv[0]} to exit")
    finally:
        proc.stop()
    assert proc.proc.returncode != 0
    return log.read_text(errors="replace")


def test_a_broken_policy_file_stops_the_listener_worker_and_guard_job(stack: Stack, tmp_path: Path):
    broken = tmp_path / "broken.yaml"
    broken.write_text(POLICY.replace("signature: required", "signature: requird"))
    line = f"GUARD_POLICY: {broken}:3: default.signature:"
    env = {**stack.env, "GUARD_POLICY": str(broken), "GUARD_DATA_DIR": str(tmp_path / "guard")}
    web = _refusal([str(VENV_BIN / "gunicorn"), "-c", "deploy/gunicorn.conf.py", "listener.web:create_app()"],
                   {**env, "GUNICORN_BIND": f"127.0.0.1:{free_port()}"}, REPO, tmp_path / "web.log")
    assert f"refusing to start: {line}" in web
    plain = _refusal([str(VENV_BIN / "gunicorn"), "-b", f"127.0.0.1:{free_port()}",
                      "listener.web:create_app()"], env, REPO, tmp_path / "plain.log")
    assert line in plain
    worker = _refusal([str(VENV_BIN / "huey_consumer"), "listener.worker.tasks.huey"], env, REPO,
                      tmp_path / "worker.log")
    assert f"error: refusing to start: {line}" in worker
    job = subprocess.run([str(VENV_BIN / "guard-job"), "--model_name", "m", "--model_version", "1"], env=env,
                         cwd=tmp_path, capture_output=True, text=True, timeout=120)
    assert job.returncode == 2 and line in job.stderr
    sweep = subprocess.run([str(VENV_BIN / "guard-sweep")], env=env, cwd=tmp_path, capture_output=True,
                           text=True, timeout=120)
    assert sweep.returncode == 2 and f"refusing to start: {line}" in sweep.stderr
    assert not (tmp_path / "guard" / "queue.db").exists()  # nothing was started, so nothing was queued
