"""`make run`'s launcher, started for real (its own mlflow server, gunicorn, huey consumer); `make demo`."""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
import time
import urllib.request
import uuid
from pathlib import Path

import pytest
from mlflow import MlflowClient

from tests.deploy.launcher import CLEARED_ENV, Launcher, launcher_env, url_from
from tests.support.procs import free_port

REPO_ROOT = Path(__file__).resolve().parents[2]
pytestmark = pytest.mark.e2e


def register_small_model(client: MlflowClient, name: str, workdir: Path) -> str:
    """Log a folder with a nested file as a run artifact and register it; return the version."""
    src = workdir / f"model-{uuid.uuid4().hex[:6]}"
    (src / "weights" / "layer1").mkdir(parents=True)
    (src / "MLmodel").write_text("flavors: {}\n")
    (src / "weights" / "layer1" / "kernel.bin").write_bytes(os.urandom(2048))
    exp = client.get_experiment_by_name("local-stack-test")
    exp_id = exp.experiment_id if exp else client.create_experiment("local-stack-test")
    run = client.create_run(exp_id)
    client.log_artifacts(run.info.run_id, str(src), "model")
    client.set_terminated(run.info.run_id)
    if not client.search_registered_models(filter_string=f"name = '{name}'"):
        client.create_registered_model(name)
    mv = client.create_model_version(name, f"{run.info.artifact_uri}/model", run_id=run.info.run_id)
    return mv.version


def wait_for_status(client: MlflowClient, name: str, version: str, timeout: float = 120.0) -> dict[str, str]:
    deadline = time.monotonic() + timeout
    tags: dict[str, str] = {}
    while time.monotonic() < deadline:
        tags = client.get_model_version(name, version).tags
        if tags.get("validation.status"):
            return tags
        time.sleep(0.3)
    pytest.fail(f"no validation.status on {name} v{version} within {timeout}s; tags: {tags}")


def test_local_stack_runs_the_loop_reuses_its_webhook_and_stops_everything(tmp_path: Path) -> None:
    data_dir = tmp_path / "guard"
    port, mlflow_port = free_port(), free_port()
    log_path = tmp_path / "launcher.log"
    name = "local-stack-demo"

    env = launcher_env(data_dir, port, mlflow_port)
    first = Launcher(env, log_path)
    try:
        text = first.wait_ready()
        tracking = url_from(text, "MLflow UI:")
        listener = url_from(text, "Listener:")
        assert tracking == f"http://127.0.0.1:{mlflow_port}"
        assert listener == f"http://127.0.0.1:{port}"
        assert url_from(text, "Status page:") == f"http://127.0.0.1:{port}/"
        # The starter policy, and alerts to the stack's own receiver on a loopback port.
        assert url_from(text, "Policy:") == str(REPO_ROOT / "deploy" / "policy.example.yaml")
        receiver = url_from(text, "Alerts:").removesuffix("/alerts")
        assert receiver.startswith("http://127.0.0.1:"), text

        secret_file = data_dir / "webhook-secret"
        key_file = data_dir / "mlflow-webhook-fernet.key"
        for path in (secret_file, key_file):
            assert stat.S_IMODE(path.stat().st_mode) == 0o600
        secret = secret_file.read_text().strip()
        fernet_key = key_file.read_text().strip()

        # The stack remembers the (non-default) addresses it was started with, for `make demo`.
        remembered = json.loads((data_dir / "stack.json").read_text())
        assert (remembered["tracking_uri"], remembered["listener_url"]) == (tracking, listener)
        assert remembered["alert_receiver"] == receiver and "alert receiver" in remembered["processes"]

        # `make demo` against this stack, given only GUARD_DATA_DIR (no ports, no URLs): five acts.
        demo_env = {k: v for k, v in os.environ.items() if k not in (*CLEARED_ENV, "MLFLOW_PORT", "PORT")}
        demo_env.update(GUARD_DATA_DIR=str(data_dir), GUARD_DEMO_MODEL=name)
        demo = subprocess.run([sys.executable, "deploy/demo.py"], cwd=REPO_ROOT, env=demo_env,
                              capture_output=True, text=True, timeout=300)
        assert demo.returncode == 0, demo.stdout[-3000:] + demo.stderr[-3000:]
        assert f"MLflow server: {tracking}   listener: {listener}   (from {data_dir / 'stack.json'})" \
            in demo.stdout
        acts = demo.stdout.split("\n== ")[1:]
        assert [act.split(" ==", 1)[0][:2] for act in acts] == ["1.", "2.", "3.", "4.", "5."], demo.stdout
        # Act 1 shows the verdict of the event it triggered (the alias), not the creation's.
        assert "verdict:  PASSED" in acts[0], acts[0]
        assert "event:    model_version_alias.created  (@champion)" in acts[0]
        assert "seal verified" in acts[0].split("summary:", 1)[1].split("\n", 1)[0], acts[0]
        # Act 2: FAILED, naming the changed file.
        assert "verdict:  FAILED" in acts[1] and "(@challenger)" in acts[1], acts[1]
        assert "files:    code/demo_assets/preprocessing/vocabulary.txt" in acts[1]
        # Act 3: champion set on the tampered version is moved back by the guard (champion is protected).
        assert "verdict:  FAILED" in acts[2] and "the guard moved it back to v1" in acts[2], acts[2]
        # Act 4: a pickled PythonModel, files untouched: the seal verifies, the policy fails it by format.
        assert "verdict:  FAILED" in acts[3] and "(@challenger)" in acts[3], acts[3]
        assert "files:    intact" in acts[3] and "seal:     signed seal verified" in acts[3], acts[3]
        assert "policy:   FAIL" in acts[3], acts[3]
        assert "FAIL  serialization  python_model.pkl: pickle" in acts[3], acts[3]
        client = MlflowClient(tracking_uri=tracking)
        assert client.get_registered_model(name).aliases == {"champion": "1", "challenger": "3"}
        assert client.get_model_version(name, "1").tags["validation.status"] == "PASSED"
        assert client.get_model_version(name, "2").tags["validation.status"] == "FAILED"
        assert client.get_model_version(name, "3").tags["validation.status"] == "FAILED"
        assert "FAIL" in client.get_model_version(name, "3").tags["validation.policy"]
        with urllib.request.urlopen(f"{listener}/api/validations?model={name}", timeout=10) as resp:
            body = json.loads(resp.read())
        rows = body["validations"]
        assert {"PASSED", "FAILED"} <= {r.get("status") for r in rows}, body
        assert {(r["version"], r["alias"]) for r in rows} >= {("1", "champion"), ("2", "challenger"),
                                                               ("2", "champion"), ("3", "challenger")}
        # Act 5: one alert per FAILED verdict, read from the receiver, none for a PASSED one; no secret.
        failed = sorted(r["version"] for r in rows if r["status"] == "FAILED")
        alerts = [line.strip() for line in acts[4].splitlines() if line.strip().startswith("ALERT ")]
        assert sorted(line.split(f"ALERT FAILED {name} v", 1)[1].split(",", 1)[0] for line in alerts) \
            == failed == ["2", "2", "3", "3"], acts[4]
        assert "ALERT PASSED" not in demo.stdout and "none for PASSED ones" in acts[4], acts[4]
        assert any("python_model.pkl" in line for line in alerts), alerts
        assert any("vocabulary.txt" in line for line in alerts), alerts
        assert secret not in demo.stdout
        # The console: one line per verdict; the processes' own logs are in files, each line once.
        console = first.output()
        assert "FAILED local-stack-demo v2 @champion" in console, console[-3000:]
        assert "PASSED local-stack-demo v1 @champion" in console
        # One line per alert too (the console polls the receiver: give it a moment to catch up).
        deadline = time.monotonic() + 30
        while console.count(f"ALERT FAILED {name} v") < 4 and time.monotonic() < deadline:
            time.sleep(0.3)
            console = first.output()
        assert console.count(f"ALERT FAILED {name} v") == 4, console[-3000:]
        assert f"ALERT FAILED {name} v3, event (model_version_alias.created): policy check" in console
        assert "Huey consumer started" not in console and "RetryTask" not in console
        worker_log = (data_dir / "logs" / "worker.log").read_text()
        assert worker_log.count("Huey consumer started") == 1, worker_log[:2000]
        assert "listener.tasks.validate_version" not in worker_log
        assert (data_dir / "logs" / "web.log").is_file() and (data_dir / "logs" / "mlflow.log").is_file()
        hooks = client.list_webhooks()
        assert len(hooks) == 1 and hooks[0].url == f"{listener}/webhooks/mlflow"
        first_hook_id = hooks[0].webhook_id

        first.interrupt_and_check_all_gone()
        assert not (data_dir / "stack.json").exists()  # a stopped stack leaves no addresses behind
    finally:
        first.kill()

    # The user's own choices win: GUARD_POLICY empty checks integrity only; their GUARD_NOTIFY (never
    # printed: it may hold a token) replaces the local receiver.
    notify_token = "notify-tok3n-" + uuid.uuid4().hex[:8]
    second = Launcher({**env, "GUARD_POLICY": "", "GUARD_NOTIFY": f"json://guard:{notify_token}@127.0.0.1:9/x"},
                      log_path)
    try:
        text = second.wait_ready()
        assert f"reusing MLflow webhook {first_hook_id}" in text
        assert "Policy:       (none: integrity only" in text, text
        assert "Alerts:       GUARD_NOTIFY (the URLs you set)" in text, text
        assert "alert receiver" not in json.loads((data_dir / "stack.json").read_text())["processes"]
        # Secrets were generated once and kept.
        assert (data_dir / "webhook-secret").read_text().strip() == secret
        assert (data_dir / "mlflow-webhook-fernet.key").read_text().strip() == fernet_key
        client = MlflowClient(tracking_uri=tracking)
        hooks = client.list_webhooks()
        assert [h.webhook_id for h in hooks] == [first_hook_id]
        # The restarted server can still decrypt the stored secret, and the listener still verifies it.
        # A bare folder (no requirements.txt): the starter policy would fail it; with none it passes.
        version = register_small_model(client, "local-stack-plain", tmp_path)
        tags = wait_for_status(client, "local-stack-plain", version)
        assert tags["validation.status"] == "PASSED" and "policy" not in tags["validation.summary"], tags
        second.interrupt_and_check_all_gone()
    finally:
        second.kill()
    whole_log = log_path.read_text(errors="replace")
    assert secret not in whole_log and fernet_key not in whole_log and notify_token not in whole_log


def test_local_stack_with_an_existing_server_starts_none(tmp_path: Path, mlflow_server) -> None:
    """MLFLOW_TRACKING_URI set: no server of its own; the webhook lands on the existing server."""
    port = free_port()
    log_path = tmp_path / "launcher.log"
    launcher = Launcher(launcher_env(tmp_path / "guard", port, free_port(), tracking_uri=mlflow_server.url),
                        log_path)
    client = MlflowClient(tracking_uri=mlflow_server.url)
    try:
        text = launcher.wait_ready()
        assert "starting mlflow server" not in text
        assert url_from(text, "MLflow UI:") == mlflow_server.url
        assert not (tmp_path / "guard" / "mlflow").exists()
        ours = [h for h in client.list_webhooks() if h.url == f"http://127.0.0.1:{port}/webhooks/mlflow"]
        assert len(ours) == 1
        launcher.interrupt_and_check_all_gone(expected_children=3)
        assert mlflow_server.running()
    finally:
        launcher.kill()
        for hook in client.list_webhooks():
            if hook.url == f"http://127.0.0.1:{port}/webhooks/mlflow":
                client.delete_webhook(hook.webhook_id)
