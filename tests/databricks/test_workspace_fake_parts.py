"""Parts of the workspace fake that tests rely on, checked in process: signed URLs, DBFS confinement,
Files API paths, route templates and faults."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.support.databricks_workspace.routing import ApiError, Router
from tests.support.databricks_workspace.storage import Dbfs, files_api_to_dbfs


def test_signed_urls_grant_one_operation_on_one_file(tmp_path: Path) -> None:
    dbfs = Dbfs(tmp_path)
    url = dbfs.sign("http://127.0.0.1:1", "/databricks/mlflow-registry/a/models/m/MLmodel", "read")
    token = url.rsplit("/", 1)[1]
    assert dbfs.check(token, "read") == "/databricks/mlflow-registry/a/models/m/MLmodel"
    with pytest.raises(ApiError) as wrong_op:
        dbfs.check(token, "write")
    raw, _, mac = token.partition(".")
    with pytest.raises(ApiError) as forged:
        dbfs.check(raw[:-1] + ("A" if raw[-1] != "A" else "B") + "." + mac, "read")
    with pytest.raises(ApiError) as expired:
        dbfs.check(dbfs.sign("http://h", "/x", "read", ttl_s=-1).rsplit("/", 1)[1], "read")
    assert {wrong_op.value.status, forged.value.status, expired.value.status} == {403}


def test_dbfs_paths_cannot_leave_the_dbfs_folder(tmp_path: Path) -> None:
    dbfs = Dbfs(tmp_path)
    assert dbfs.local("dbfs:/databricks/x") == (tmp_path / "dbfs" / "databricks" / "x").resolve()
    with pytest.raises(ApiError):
        dbfs.local("dbfs:/../../etc/passwd")


def test_files_api_paths_map_to_the_tracking_folders() -> None:
    assert files_api_to_dbfs("/WorkspaceInternal/Mlflow/Artifacts/7/Runs/abc/artifacts/m/x.bin") == \
        "/databricks/mlflow-tracking/7/abc/artifacts/m/x.bin"
    assert files_api_to_dbfs("/WorkspaceInternal/Mlflow/Artifacts/7/LoggedModels/m-1/artifacts/MLmodel") == \
        "/databricks/mlflow-tracking/7/logged_models/m-1/artifacts/MLmodel"
    assert files_api_to_dbfs("/Volumes/main/s/v/f") == "/Volumes/main/s/v/f"


def test_route_templates_match_segments_and_rest_of_path() -> None:
    router = Router()
    router.add("GET", "/api/2.0/mlflow/logged-models/search", "a", lambda: "search")
    router.add("GET", "/api/2.0/mlflow/logged-models/{model_id}", "a", lambda model_id: model_id)
    router.add("GET", "/api/2.0/fs/files{path}", "b", lambda path: path)
    route, params = router.match("GET", "/api/2.0/mlflow/logged-models/m-12")
    assert route.template.endswith("{model_id}") and params == {"model_id": "m-12"}
    assert router.match("GET", "/api/2.0/mlflow/logged-models/search")[0].template.endswith("/search")
    assert router.match("GET", "/api/2.0/fs/files/a/b c")[1] == {"path": "/a/b c"}
    assert router.match("POST", "/api/2.0/fs/files/a") is None
    assert router.match("GET", "/api/2.0/mlflow/logged-models/m-1/extra") is None
