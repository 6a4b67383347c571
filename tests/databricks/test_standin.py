"""The Databricks stand-in behaves like the workspace registry, seen through the real databricks-sdk."""

from __future__ import annotations

import hashlib
import hmac
import os
from collections.abc import Iterator
from pathlib import Path

import pytest
from databricks.sdk import WorkspaceClient
from databricks.sdk.core import Config
from databricks.sdk.errors import NotFound, PermissionDenied
from databricks.sdk.service.ml import ActivityType, HttpUrlSpec, RegistryWebhookEvent
from mlflow import MlflowClient

from tests.support.databricks_fixtures import NESTED_FILE, TOKEN, register_model
from tests.support.databricks_standin import DatabricksStandIn
from tests.support.receiver import Receiver


def workspace(standin: DatabricksStandIn, token: str = TOKEN) -> WorkspaceClient:
    """A real SDK client with PAT auth on the stand-in's plain-HTTP loopback host."""
    cfg = Config(host=standin.url, token=token, config_file=os.devnull, retry_timeout_seconds=10)
    return WorkspaceClient(config=cfg)


@pytest.fixture(scope="module")
def version(standin: DatabricksStandIn, tmp_path_factory: pytest.TempPathFactory) -> str:
    return register_model(standin.url, "standin-sanity", tmp_path_factory.mktemp("models"))


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    r = Receiver()
    yield r
    r.close()


def tree(path: Path) -> dict[str, bytes]:
    return {str(p.relative_to(path)): p.read_bytes() for p in sorted(path.rglob("*")) if p.is_file()}


def test_registry_keeps_a_separate_copy(standin: DatabricksStandIn, version: str) -> None:
    client = MlflowClient(tracking_uri=standin.url)
    mv = client.get_model_version("standin-sanity", version)
    run_dir = Path(mv.source)  # local artifact root: the run's folder
    reg_dir = Path(client.get_model_version_download_uri("standin-sanity", version))
    assert reg_dir == standin.registry_copy("standin-sanity", version)
    assert "mlflow-registry" in reg_dir.parts and reg_dir.resolve() != run_dir.resolve()
    assert tree(reg_dir) == tree(run_dir) and NESTED_FILE in tree(reg_dir)


def test_comments_and_transition_requests_through_the_sdk(standin: DatabricksStandIn, version: str) -> None:
    w = workspace(standin)
    reg = w.model_registry
    c = reg.create_comment(name="standin-sanity", version=version, comment="first line\nsecond")
    assert c.comment.comment == "first line\nsecond" and c.comment.id

    reg.create_transition_request(name="standin-sanity", version=version, stage="Staging", comment="please")
    open_reqs = reg.list_transition_requests(name="standin-sanity", version=version)
    assert [(r.activity_type, r.to_stage) for r in open_reqs] == \
        [(ActivityType.REQUESTED_TRANSITION, "Staging")]
    rej = reg.reject_transition_request(name="standin-sanity", version=version, stage="Staging", comment="no")
    assert rej.activity.activity_type == ActivityType.REJECTED_REQUEST and rej.activity.comment == "no"
    assert reg.list_transition_requests(name="standin-sanity", version=version) == []
    with pytest.raises(NotFound):
        reg.reject_transition_request(name="standin-sanity", version=version, stage="Staging")

    reg.create_transition_request(name="standin-sanity", version=version, stage="Production")
    ok = reg.approve_transition_request(name="standin-sanity", version=version, stage="Production",
                                        archive_existing_versions=False, comment="yes")
    assert ok.activity.activity_type == ActivityType.APPROVED_REQUEST
    assert MlflowClient(tracking_uri=standin.url).get_model_version("standin-sanity", version).current_stage \
        == "Production"
    state = standin.state()
    assert any(x["comment"] == "first line\nsecond" for x in state["comments"])
    kinds = [a["activity_type"] for a in state["activities"] if a["model_name"] == "standin-sanity"]
    assert kinds[-1] == "APPROVED_REQUEST"


def test_databricks_endpoints_need_a_valid_token(standin: DatabricksStandIn, version: str) -> None:
    with pytest.raises(PermissionDenied):
        workspace(standin, token="wrong").model_registry.create_comment(
            name="standin-sanity", version=version, comment="x")
    import requests

    resp = requests.post(standin.url + "/api/2.0/mlflow/comments/create", timeout=10,
                         json={"name": "standin-sanity", "version": version, "comment": "x"})
    assert resp.status_code == 401 and resp.json()["error_code"] == "UNAUTHENTICATED"


def test_webhooks_are_delivered_signed(standin: DatabricksStandIn, receiver: Receiver,
                                       tmp_path: Path) -> None:
    w = workspace(standin)
    events = [RegistryWebhookEvent(e) for e in (
        "MODEL_VERSION_CREATED", "TRANSITION_REQUEST_CREATED", "TRANSITION_REQUEST_TO_STAGING_CREATED",
        "COMMENT_CREATED", "MODEL_VERSION_TAG_SET", "MODEL_VERSION_TRANSITIONED_STAGE")]
    hook = w.model_registry.create_webhook(
        events=events, model_name="standin-hooks",
        http_url_spec=HttpUrlSpec(url=receiver.url, secret="hook-secret", authorization="Bearer abc"),
    ).webhook
    try:
        assert [h.id for h in w.model_registry.list_webhooks(model_name="standin-hooks")] == [hook.id]
        v = register_model(standin.url, "standin-hooks", tmp_path)
        reg = w.model_registry
        reg.create_transition_request(name="standin-hooks", version=v, stage="Staging")
        reg.create_comment(name="standin-hooks", version=v, comment="looks fine")
        reg.set_model_version_tag(name="standin-hooks", version=v, key="k", value="v")
        got = receiver.wait_for(lambda evs: len(evs) >= 5)
        names = [e["event"] for e in got]
        assert names[:5] == ["MODEL_VERSION_CREATED", "TRANSITION_REQUEST_CREATED",
                             "TRANSITION_REQUEST_TO_STAGING_CREATED", "COMMENT_CREATED",
                             "MODEL_VERSION_TAG_SET"]
        assert all(e["model_name"] == "standin-hooks" and e["version"] == v and e["webhook_id"] == hook.id
                   and isinstance(e["event_timestamp"], int) for e in got)
        assert got[1]["to_stage"] == "Staging" and got[1]["from_stage"] == "None"
        assert got[3]["comment"] == "looks fine" and got[4]["tags"] == [{"key": "k", "value": "v"}]
        for r in receiver.received:
            expected = hmac.new(b"hook-secret", r["raw"], hashlib.sha256).hexdigest()
            assert r["headers"]["X-Databricks-Signature"] == expected
            assert r["headers"]["Authorization"] == "Bearer abc"
        # A registry-wide event for another model does not reach a model-scoped webhook.
        assert all(e["model_name"] == "standin-hooks" for e in receiver.events())

        res = reg.test_registry_webhook(id=hook.id, event=RegistryWebhookEvent.COMMENT_CREATED)
        assert res.status_code == 200 and '"receiver"' in res.body
    finally:
        w.model_registry.delete_webhook(id=hook.id)
    assert list(w.model_registry.list_webhooks(model_name="standin-hooks")) == []
    assert "hook-secret" not in str(standin.state())
