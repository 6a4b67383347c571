"""`make run`'s launcher, started for real: its own mlflow server, honcho, gunicorn, the huey consumer."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import stat
import subprocess
import sys
import time
import urllib.request
import uuid
from pathlib import Path

import pytest
from mlflow import MlflowClient

from deploy.local_stack import child_pids
from listener.store.owners import pid_alive
from tests.support.procs import free_port

REPO_ROOT = Path(__file__).resolve().parents[2]
pytestmark = pytest.mark.e2e
# Variables of the developer's shell that would point the stack elsewhere.
CLEARED_ENV = ("MLFLOW_TRACKING_URI", "MLFLOW_REGISTRY_URI", "GUARD_MLFLOW_SECRET", "GUARD_QUEUE",
               "PROMETHEUS_MULTIPROC_DIR", "GUARD_LISTENER_URL")


class Launcher:
    """``python deploy/local_stack.py`` as a subprocess whose output goes to a file."""

    def __init__(self, data_dir: Path, port: int, mlflow_port: int, log_path: Path,
                 tracking_uri: str | None = None) -> None:
        env = {k: v for k, v in os.environ.items() if k not in CLEARED_ENV}
        env.update(GUARD_DATA_DIR=str(data_dir), PORT=str(port), MLFLOW_PORT=str(mlflow_port))
        if tracking_uri:
            env["MLFLOW_TRACKING_URI"] = tracking_uri
        self.log_path = log_path
        self.offset = log_path.stat().st_size if log_path.exists() else 0
        self.out = open(log_path, "ab")  # noqa: SIM115 - closed in stop()
        self.proc = subprocess.Popen([sys.executable, "deploy/local_stack.py"], cwd=REPO_ROOT, env=env,
                                     stdout=self.out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                     start_new_session=True)

    def output(self) -> str:
        return self.log_path.read_bytes()[self.offset:].decode(errors="replace")

    def wait_ready(self, timeout: float = 240.0) -> str:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            text = self.output()
            if "Status page:" in text:
                return text
            if self.proc.poll() is not None:
                pytest.fail(f"launcher exited with {self.proc.returncode}:\n{text[-4000:]}")
            time.sleep(0.3)
        self.proc.kill()
        pytest.fail(f"launcher printed no URLs within {timeout}s:\n{self.output()[-4000:]}")

    def interrupt_and_check_all_gone(self, expected_children: int = 4) -> None:
        tree = child_pids(self.proc.pid)
        # mlflow server (when started here), honcho, gunicorn master and workers, huey consumer, ...
        assert len(tree) >= expected_children, tree
        self.proc.send_signal(signal.SIGINT)
        try:
            code = self.proc.wait(timeout=90)
        finally:
            self.out.close()
        assert code == 0, self.output()[-3000:]
        time.sleep(0.2)
        left = [pid for pid in tree if pid_alive(pid)]
        for pid in left:  # never leave strays behind, even when the assertion below fails
            os.kill(pid, signal.SIGKILL)
        assert not left, f"processes still alive after SIGINT: {left}\n{self.output()[-3000:]}"

    def kill(self) -> None:
        if self.proc.poll() is None:
            for pid in child_pids(self.proc.pid):
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
            self.proc.kill()
            self.proc.wait(timeout=10)
        if not self.out.closed:
            self.out.close()


def url_from(text: str, label: str) -> str:
    line = next(line for line in text.splitlines() if line.strip().startswith(label))
    return line.split(label, 1)[1].split()[0]


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

    first = Launcher(data_dir, port, mlflow_port, log_path)
    try:
        text = first.wait_ready()
        tracking = url_from(text, "MLflow UI:")
        listener = url_from(text, "Listener:")
        assert tracking == f"http://127.0.0.1:{mlflow_port}"
        assert listener == f"http://127.0.0.1:{port}"
        assert url_from(text, "Status page:") == f"http://127.0.0.1:{port}/"

        secret_file = data_dir / "webhook-secret"
        key_file = data_dir / "mlflow-webhook-fernet.key"
        for path in (secret_file, key_file):
            assert stat.S_IMODE(path.stat().st_mode) == 0o600
        secret = secret_file.read_text().strip()
        fernet_key = key_file.read_text().strip()

        # The stack remembers the (non-default) addresses it was started with, for `make demo`.
        remembered = json.loads((data_dir / "stack.json").read_text())
        assert (remembered["tracking_uri"], remembered["listener_url"]) == (tracking, listener)

        # `make demo` against this stack, given only GUARD_DATA_DIR (no ports, no URLs): PASSED for an
        # honest version, FAILED naming the changed file.
        demo_env = {k: v for k, v in os.environ.items() if k not in (*CLEARED_ENV, "MLFLOW_PORT", "PORT")}
        demo_env.update(GUARD_DATA_DIR=str(data_dir), GUARD_DEMO_MODEL=name)
        demo = subprocess.run([sys.executable, "deploy/demo.py"], cwd=REPO_ROOT, env=demo_env,
                              capture_output=True, text=True, timeout=300)
        assert demo.returncode == 0, demo.stdout[-3000:] + demo.stderr[-3000:]
        assert f"MLflow server: {tracking}   listener: {listener}   (from {data_dir / 'stack.json'})" \
            in demo.stdout
        # Act 1 shows the verdict of the event it triggered (the alias), not the creation's.
        act_1 = demo.stdout.split("== 2.", 1)[0]
        assert "verdict:  PASSED" in act_1 and "event:    model_version_alias.created" in act_1, act_1
        assert "seal verified" in act_1.split("summary:", 1)[1].split("\n", 1)[0], act_1
        assert "verdict:  PASSED" in demo.stdout
        assert "verdict:  FAILED" in demo.stdout
        assert "files:    code/demo_assets/preprocessing/vocabulary.txt" in demo.stdout
        client = MlflowClient(tracking_uri=tracking)
        assert client.get_model_version(name, "1").tags["validation.status"] == "PASSED"
        assert client.get_model_version(name, "2").tags["validation.status"] == "FAILED"
        with urllib.request.urlopen(f"{listener}/api/validations?model={name}", timeout=10) as resp:
            body = json.loads(resp.read())
        rows = body["validations"]
        assert {"PASSED", "FAILED"} <= {r.get("status") for r in rows}, body
        hooks = client.list_webhooks()
        assert len(hooks) == 1 and hooks[0].url == f"{listener}/webhooks/mlflow"
        first_hook_id = hooks[0].webhook_id

        first.interrupt_and_check_all_gone()
        assert not (data_dir / "stack.json").exists()  # a stopped stack leaves no addresses behind
    finally:
        first.kill()

    second = Launcher(data_dir, port, mlflow_port, log_path)
    try:
        text = second.wait_ready()
        assert f"reusing MLflow webhook {first_hook_id}" in text
        # Secrets were generated once and kept.
        assert (data_dir / "webhook-secret").read_text().strip() == secret
        assert (data_dir / "mlflow-webhook-fernet.key").read_text().strip() == fernet_key
        client = MlflowClient(tracking_uri=tracking)
        hooks = client.list_webhooks()
        assert [h.webhook_id for h in hooks] == [first_hook_id]
        # The restarted server can still decrypt the stored secret, and the listener still verifies it.
        version = register_small_model(client, "local-stack-plain", tmp_path)
        assert wait_for_status(client, "local-stack-plain", version)["validation.status"] == "PASSED"
        second.interrupt_and_check_all_gone()
    finally:
        second.kill()
    whole_log = log_path.read_text(errors="replace")
    assert secret not in whole_log and fernet_key not in whole_log


def test_local_stack_with_an_existing_server_starts_none(tmp_path: Path, mlflow_server) -> None:
    """MLFLOW_TRACKING_URI set: no server of its own; the webhook lands on the existing server."""
    port = free_port()
    log_path = tmp_path / "launcher.log"
    launcher = Launcher(tmp_path / "guard", port, free_port(), log_path, tracking_uri=mlflow_server.url)
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
