"""A policy on the Databricks path, on the workspace fake in production configuration: the listener and
its worker (the stack of :mod:`tests.databricks.test_e2e`) run with ``GUARD_POLICY``, whose
``Production`` stage section requires an ``owner`` tag. A request to move a version without one to
Production is rejected, and the comment carries the table of the policy's checks; the integrity check
itself passes.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
import requests
from databricks.sdk import WorkspaceClient

from tests.databricks.test_e2e import Listener, registry_webhook
from tests.support.databricks_fixtures import (
    activities,
    new_workspace_version,
    own_comments,
)
from tests.support.databricks_workspace import WorkspaceFake

pytestmark = pytest.mark.e2e
MODEL = "dbx-policy"
POLICY = """\
version: 1
default:
  limits: {max_files: 10000}
stages:
  Production:
    metadata: {required_tags: [owner]}
"""


@pytest.fixture(scope="module")
def listener(workspace_fake: WorkspaceFake, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Listener]:
    root = tmp_path_factory.mktemp("dbx-policy")
    (root / "policy.yaml").write_text(POLICY)
    lst = Listener(root, workspace_fake)
    lst.env["GUARD_POLICY"] = str(root / "policy.yaml")  # web and worker share this environment
    lst.start()
    yield lst
    lst.stop()


@pytest.fixture(scope="module")
def workspace(workspace_fake: WorkspaceFake, listener: Listener) -> Iterator[WorkspaceClient]:
    with registry_webhook(workspace_fake, listener.url, MODEL) as w:
        yield w


def test_a_policy_fail_rejects_the_transition_request_with_the_checks_in_the_comment(
        workspace_fake: WorkspaceFake, listener: Listener, workspace: WorkspaceClient,
        recordings: dict[str, Any]) -> None:
    fake, reg = workspace_fake, workspace.model_registry
    try:
        version = new_workspace_version(fake, recordings, MODEL)
        fake.wait_for(lambda s: own_comments(fake, MODEL, version), timeout=120, what="creation comment")
        [created] = own_comments(fake, MODEL, version)
        assert "Validation PASSED" in created and "Policy PASS:" in created
        assert "  PASS  limits" in created

        reg.create_transition_request(name=MODEL, version=version, stage="Production")
        fake.wait_for(lambda s: activities(fake, MODEL, version, "REJECTED_REQUEST"), timeout=120,
                      what="rejected transition request")
        [rejected] = activities(fake, MODEL, version, "REJECTED_REQUEST")
        comment = rejected["comment"]
        assert "Validation FAILED" in comment and "policy FAIL (metadata:" in comment
        assert "Policy FAIL:" in comment
        assert "  FAIL  metadata" in comment and "owner" in comment
        assert "  PASS  limits" in comment
        assert reg.list_transition_requests(name=MODEL, version=version) == []
        tags = {t.key: t.value for t in reg.get_model_version(name=MODEL, version=version).model_version.tags}
        assert tags["validation.status"] == "FAILED" and tags["validation.policy"] == "FAIL: metadata"
        rows = requests.get(listener.url + "/api/validations", params={"model": MODEL}, timeout=10).json()
        assert [r["policy"]["status"] for r in rows["validations"]] == ["FAIL", "PASS"]
    except BaseException:
        print(listener.logs())
        raise
