"""The webhook administration CLI against a real MLflow server and the Databricks workspace fake."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import os
import uuid
from collections.abc import Iterator

import pytest
from click.testing import CliRunner
from mlflow import MlflowClient

from listener.admin import listener_webhook_url, main, secret_from_env
from tests.support.databricks_workspace import WorkspaceFake
from tests.support.procs import MlflowServer
from tests.support.receiver import Receiver

SECRET = "adm1n-webhook-s3cret-value"


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    rec = Receiver()
    yield rec
    rec.close()


def _run(args: list[str], env: dict[str, str]) -> tuple[int, str]:
    result = CliRunner().invoke(main, args, env=env, catch_exceptions=False)
    return result.exit_code, result.output


def test_url_and_secret_helpers() -> None:
    assert listener_webhook_url("https://guard.example.com", "mlflow") == "https://guard.example.com/webhooks/mlflow"
    assert listener_webhook_url("http://h:8000/", "databricks") == "http://h:8000/webhooks/databricks"
    # A path given by the operator (reverse proxy mount) is kept as is.
    assert listener_webhook_url("https://p.example.com/guard/hook", "mlflow") == "https://p.example.com/guard/hook"
    assert secret_from_env("mlflow", {"GUARD_MLFLOW_SECRET": " new , old "}) == "new"
    assert secret_from_env("databricks", {}) is None


def test_mlflow_register_is_idempotent_signed_and_never_echoes_the_secret(
        mlflow_server: MlflowServer, receiver: Receiver) -> None:
    name = f"guard-admin-{uuid.uuid4().hex[:8]}"
    env = {"MLFLOW_TRACKING_URI": mlflow_server.url, "GUARD_MLFLOW_SECRET": f"{SECRET},older-secret"}
    client = MlflowClient(tracking_uri=mlflow_server.url)
    outputs = []
    hook_id = None
    try:
        code, out = _run(["register", "--url", receiver.base_url, "--name", name], env)
        outputs.append(out)
        assert code == 0, out
        assert out.startswith("created webhook ")
        hook_id = out.split()[2]

        code, out = _run(["register", "--url", receiver.base_url, "--name", name, "--json"], env)
        outputs.append(out)
        assert code == 0, out
        again = json.loads(out)
        assert again["created"] is False and again["webhook"]["id"] == hook_id

        ours = [w for w in client.list_webhooks() if w.name == name]
        assert len(ours) == 1
        assert ours[0].url == receiver.base_url + "/webhooks/mlflow"
        events = sorted(str(e) for e in ours[0].events)
        assert events == ["model_version.created", "model_version_alias.created"]

        code, out = _run(["list", "--json"], env)
        outputs.append(out)
        listed = [w for w in json.loads(out) if w["name"] == name]
        assert len(listed) == 1 and listed[0]["id"] == hook_id

        code, out = _run(["test", hook_id], env)
        outputs.append(out)
        assert code == 0, out
        assert out.startswith("OK: HTTP 200")
        delivery = receiver.wait(1)[-1]
        headers = {k.lower(): v for k, v in delivery["headers"].items()}
        prefix = f"{headers['x-mlflow-delivery-id']}.{headers['x-mlflow-timestamp']}."
        signed = prefix.encode() + delivery["raw"]
        expected = base64.b64encode(hmac.new(SECRET.encode(), signed, hashlib.sha256).digest()).decode()
        # The first secret of the rotation list is the one registered.
        assert headers["x-mlflow-signature"] == f"v1,{expected}"
        assert json.loads(delivery["raw"])["action"] == "set"

        code, out = _run(["delete", hook_id], env)
        outputs.append(out)
        assert code == 0, out
        assert not [w for w in client.list_webhooks() if w.name == name]
        hook_id = None
    finally:
        if hook_id:
            client.delete_webhook(hook_id)
    assert all(SECRET not in o and "older-secret" not in o for o in outputs)


def test_register_without_a_secret_source_refuses(mlflow_server: MlflowServer) -> None:
    env = {"MLFLOW_TRACKING_URI": mlflow_server.url, "GUARD_MLFLOW_SECRET": ""}
    code, out = _run(["register", "--url", "http://127.0.0.1:9/"], env)
    assert code != 0
    assert "GUARD_MLFLOW_SECRET" in out


def test_test_reports_a_failing_listener(mlflow_server: MlflowServer) -> None:
    rec = Receiver(status=401)
    client = MlflowClient(tracking_uri=mlflow_server.url)
    hook = client.create_webhook(name=f"guard-admin-{uuid.uuid4().hex[:8]}", url=rec.base_url + "/x",
                                 events=["model_version.created"], secret=SECRET)
    try:
        code, out = _run(["test", hook.webhook_id], {"MLFLOW_TRACKING_URI": mlflow_server.url})
        assert code == 1
        assert "FAILED: HTTP 401" in out
    finally:
        client.delete_webhook(hook.webhook_id)
        rec.close()


def test_databricks_register_list_test_delete(workspace_fake: WorkspaceFake, receiver: Receiver) -> None:
    env = {"DATABRICKS_HOST": workspace_fake.url, "DATABRICKS_TOKEN": workspace_fake.token,
           "DATABRICKS_CONFIG_FILE": os.devnull,
           "GUARD_DATABRICKS_SECRET": SECRET, "GUARD_DATABRICKS_AUTHORIZATION": "Bearer listener-token"}
    base = ["--registry", "databricks"]
    code, out = _run(["register", *base, "--url", receiver.base_url, "--model-name", "fraud", "--json"], env)
    assert code == 0, out
    first = json.loads(out)
    assert first["created"] is True
    hook_id = first["webhook"]["id"]
    assert first["webhook"]["events"] == ["MODEL_VERSION_CREATED", "MODEL_VERSION_TRANSITIONED_STAGE",
                                          "TRANSITION_REQUEST_CREATED"]
    code, out = _run(["register", *base, "--url", receiver.base_url, "--model-name", "fraud", "--json"], env)
    assert json.loads(out) == {**first, "created": False}

    hooks = workspace_fake.state()["webhooks"]
    ours = [h for h in (hooks.values() if isinstance(hooks, dict) else hooks)
            if h["http_url_spec"]["url"] == receiver.base_url + "/webhooks/databricks"]
    assert len(ours) == 1

    code, out = _run(["list", *base], env)
    assert hook_id in out and "fraud" in out

    code, out = _run(["test", *base, hook_id, "--event", "MODEL_VERSION_CREATED"], env)
    assert code == 0, out
    assert out.startswith("OK: HTTP 200")
    delivery = receiver.wait(1)[-1]
    headers = {k.lower(): v for k, v in delivery["headers"].items()}
    assert headers["x-databricks-signature"] == hmac.new(SECRET.encode(), delivery["raw"],
                                                         hashlib.sha256).hexdigest()
    assert headers["authorization"] == "Bearer listener-token"
    assert json.loads(delivery["raw"])["event"] == "MODEL_VERSION_CREATED"
    # Without --event only an event the listener always ignores is sent: never a check or a gate.
    seen = len(receiver.wait(1))
    code, out = _run(["test", *base, hook_id], env)
    assert code != 0 and "--event" in out and "no event the listener ignores" in out
    assert len(receiver.received) == seen

    code, out = _run(["delete", *base, hook_id], env)
    assert code == 0, out
    code, out = _run(["list", *base, "--json"], env)
    assert hook_id not in out
    assert SECRET not in out and "listener-token" not in out


def test_notify_test_sends_to_every_url_and_reports_each(receiver: Receiver) -> None:
    port = receiver.server.server_port
    urls = f"json://alerts:receiver-pass@127.0.0.1:{port}/alerts json://127.0.0.1:9/nobody-listens nonsense://x"
    code, out = _run(["notify-test"], {"GUARD_NOTIFY": urls})
    assert code == 1
    lines = out.strip().splitlines()
    assert lines[0] == f"OK: json://alerts:****@127.0.0.1:{port}/alerts"
    assert lines[1].startswith("FAILED: json://127.0.0.1:9/nobody-listens: ")
    assert lines[2] == "FAILED: nonsense://…: not a supported notification URL"
    [message] = receiver.events()
    assert message["title"] == "Model version guard: test alert" and "receiver-pass" not in out

    code, out = _run(["notify-test", "--json"], {"GUARD_NOTIFY": f"json://127.0.0.1:{port}/alerts"})
    assert code == 0
    assert json.loads(out) == [{"url": f"json://127.0.0.1:{port}/alerts", "ok": True, "error": None}]
    code, out = _run(["notify-test"], {"GUARD_NOTIFY": ""})
    assert code == 1 and "GUARD_NOTIFY is not set" in out
