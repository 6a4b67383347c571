"""The workspace fake seen through the real databricks-sdk in process: comments, transition requests,
authentication and signed registry webhook deliveries behave as a workspace's."""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Iterator
from typing import Any

import pytest
import requests
from databricks.sdk.errors import NotFound, PermissionDenied
from databricks.sdk.service.ml import ActivityType, HttpUrlSpec, RegistryWebhookEvent

from tests.databricks.endpoint_record import WORKSPACE_MODEL
from tests.support.databricks_fixtures import activities, new_workspace_version, workspace_client
from tests.support.databricks_workspace import WorkspaceFake
from tests.support.receiver import Receiver


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    r = Receiver()
    yield r
    r.close()


def test_comments_and_transition_requests_through_the_sdk(workspace_fake: WorkspaceFake,
                                                          recordings: dict[str, Any]) -> None:
    model = "fake-collaboration"
    version = new_workspace_version(workspace_fake, recordings, model)
    reg = workspace_client(workspace_fake).model_registry
    c = reg.create_comment(name=model, version=version, comment="first line\nsecond")
    assert c.comment.comment == "first line\nsecond" and c.comment.id

    reg.create_transition_request(name=model, version=version, stage="Staging", comment="please")
    open_reqs = reg.list_transition_requests(name=model, version=version)
    assert [(r.activity_type, r.to_stage) for r in open_reqs] == \
        [(ActivityType.REQUESTED_TRANSITION, "Staging")]
    rej = reg.reject_transition_request(name=model, version=version, stage="Staging", comment="no")
    assert rej.activity.activity_type == ActivityType.REJECTED_REQUEST and rej.activity.comment == "no"
    assert reg.list_transition_requests(name=model, version=version) == []
    with pytest.raises(NotFound):  # a request decided once cannot be decided again
        reg.reject_transition_request(name=model, version=version, stage="Staging")

    reg.create_transition_request(name=model, version=version, stage="Production")
    ok = reg.approve_transition_request(name=model, version=version, stage="Production",
                                        archive_existing_versions=False, comment="yes")
    assert ok.activity.activity_type == ActivityType.APPROVED_REQUEST
    assert reg.get_model_version(name=model, version=version).model_version.current_stage == "Production"
    assert any(x["comment"] == "first line\nsecond" for x in workspace_fake.state()["comments"])
    assert [a["activity_type"] for a in activities(workspace_fake, model, version)] == [
        "REQUESTED_TRANSITION", "REJECTED_REQUEST", "REQUESTED_TRANSITION", "APPROVED_REQUEST"]


def test_endpoints_need_a_valid_token(workspace_fake: WorkspaceFake, recordings: dict[str, Any]) -> None:
    version = str(recordings["workspace registry"]["result"]["version"])
    with pytest.raises(PermissionDenied):
        workspace_client(workspace_fake, token="wrong", retry_timeout_s=10).model_registry.create_comment(
            name=WORKSPACE_MODEL, version=version, comment="x")
    resp = requests.post(workspace_fake.url + "/api/2.0/mlflow/comments/create", timeout=10,
                         json={"name": WORKSPACE_MODEL, "version": version, "comment": "x"})
    assert resp.status_code == 401 and resp.json()["error_code"] == "UNAUTHENTICATED"
    assert "x" not in [c["comment"] for c in workspace_fake.state()["comments"]]


def test_webhooks_are_delivered_signed(workspace_fake: WorkspaceFake, recordings: dict[str, Any],
                                       receiver: Receiver) -> None:
    model = "fake-hooks"
    w = workspace_client(workspace_fake)
    reg = w.model_registry
    events = [RegistryWebhookEvent(e) for e in (
        "MODEL_VERSION_CREATED", "TRANSITION_REQUEST_CREATED", "TRANSITION_REQUEST_TO_STAGING_CREATED",
        "COMMENT_CREATED", "MODEL_VERSION_TAG_SET", "MODEL_VERSION_TRANSITIONED_STAGE")]
    hook = reg.create_webhook(
        events=events, model_name=model,
        http_url_spec=HttpUrlSpec(url=receiver.url, secret="hook-secret", authorization="Bearer abc"),
    ).webhook
    try:
        assert [h.id for h in reg.list_webhooks(model_name=model)] == [hook.id]
        v = new_workspace_version(workspace_fake, recordings, model)
        reg.create_transition_request(name=model, version=v, stage="Staging")
        # A comment on another model does not reach a webhook scoped to this one.
        other = str(recordings["workspace registry"]["result"]["version"])
        reg.create_comment(name=WORKSPACE_MODEL, version=other, comment="not for fake-hooks")
        reg.create_comment(name=model, version=v, comment="looks fine")
        reg.set_model_version_tag(name=model, version=v, key="k", value="v")
        got = receiver.wait_for(lambda evs: len(evs) >= 5)
        assert [e["event"] for e in got] == ["MODEL_VERSION_CREATED", "TRANSITION_REQUEST_CREATED",
                                             "TRANSITION_REQUEST_TO_STAGING_CREATED", "COMMENT_CREATED",
                                             "MODEL_VERSION_TAG_SET"]
        assert all(e["model_name"] == model and e["version"] == v and e["webhook_id"] == hook.id
                   and isinstance(e["event_timestamp"], int) for e in got)
        assert got[1]["to_stage"] == "Staging" and got[1]["from_stage"] == "None"
        assert got[3]["comment"] == "looks fine" and got[4]["tags"] == [{"key": "k", "value": "v"}]
        for r in receiver.received:
            expected = hmac.new(b"hook-secret", r["raw"], hashlib.sha256).hexdigest()
            assert r["headers"]["X-Databricks-Signature"] == expected
            assert r["headers"]["Authorization"] == "Bearer abc"

        res = reg.test_registry_webhook(id=hook.id, event=RegistryWebhookEvent.COMMENT_CREATED)
        assert res.status_code == 200 and '"receiver"' in res.body
        assert receiver.events()[-1]["event"] == "COMMENT_CREATED"
    finally:
        reg.delete_webhook(id=hook.id)
    assert list(reg.list_webhooks(model_name=model)) == []
    assert "hook-secret" not in str(workspace_fake.state())
