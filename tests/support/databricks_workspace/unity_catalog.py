"""The Unity Catalog model registry of the workspace (``/api/2.0/mlflow/unity-catalog/...``).

Models are named ``catalog.schema.model``; each version gets a storage location on a real S3 API
(``moto_server``), and MLflow writes and reads the files there itself with the temporary credentials of
``model-versions/generate-temporary-credentials``. Tag values are limited to 1,000 characters.
State is in memory. Versions are created ``PENDING_REGISTRATION`` and become ``READY`` on ``finalize``.
"""

from __future__ import annotations

import itertools
import re
import threading
import time
import uuid
from typing import Any

from tests.support.databricks_workspace.routing import ApiError, Router, need, params
from tests.support.databricks_workspace.webhooks import now_ms

UC_TAG_VALUE_LIMIT = 1000
CREDENTIAL_TTL_MS = 15 * 60 * 1000
FAKE_USER = "workspace-user@example.com"
_FILTER_NAME = re.compile(r"""^\s*name\s*=\s*['"]([^'"]+)['"]\s*$""")


def full_name(name: str) -> str:
    """A three-level name, or the 400 UC answers for anything else."""
    if len(name.split(".")) != 3 or not all(name.split(".")):
        raise ApiError(
            400,
            "INVALID_PARAMETER_VALUE",
            f"Model name {name!r} is not a three-level name catalog.schema.model",
        )
    return name


class UnityCatalog:
    """Registered models, versions, aliases and tags of Unity Catalog, with S3 storage locations."""

    def __init__(self, bucket: str, s3_credentials: dict[str, str]) -> None:
        self.bucket = bucket
        self.s3_credentials = s3_credentials
        self.lock = threading.Lock()
        self.models: dict[str, dict[str, Any]] = {}
        self.versions: dict[str, dict[int, dict[str, Any]]] = {}
        self.counters: dict[str, itertools.count] = {}
        self.credential_grants: list[dict[str, Any]] = []

    # -- views ------------------------------------------------------------------------------------
    def model(self, name: str) -> dict[str, Any]:
        with self.lock:
            m = self.models.get(full_name(name))
        if m is None:
            raise ApiError(404, "RESOURCE_DOES_NOT_EXIST", f"Registered model {name!r} does not exist")
        return m

    def version(self, name: str, version: Any) -> dict[str, Any]:
        self.model(name)
        with self.lock:
            mv = self.versions.get(name, {}).get(int(version))
        if mv is None:
            raise ApiError(404, "RESOURCE_DOES_NOT_EXIST", f"Model version {name!r} {version} does not exist")
        return mv

    def model_view(self, m: dict[str, Any]) -> dict[str, Any]:
        return {k: v for k, v in m.items() if k != "_tags"} | {
            "tags": [{"key": k, "value": v} for k, v in m["_tags"].items()],
            "aliases": [{"alias": a, "version": str(v)} for a, v in sorted(m["_aliases"].items())],
        }

    def version_view(self, mv: dict[str, Any]) -> dict[str, Any]:
        aliases = self.model(mv["name"])["_aliases"]
        out = {k: v for k, v in mv.items() if k != "_tags"}
        out["tags"] = [{"key": k, "value": v} for k, v in mv["_tags"].items()]
        out["aliases"] = [
            {"alias": a, "version": mv["version"]}
            for a, v in sorted(aliases.items())
            if str(v) == mv["version"]
        ]
        return out

    # -- registered models ----------------------------------------------------------------------------
    def rm_create(self) -> dict[str, Any]:
        p = params()
        (name,) = need(p, "name")
        full_name(name)
        with self.lock:
            if name in self.models:
                raise ApiError(400, "RESOURCE_ALREADY_EXISTS", f"Registered model {name!r} already exists")
            self.models[name] = {
                "name": name,
                "creation_timestamp": now_ms(),
                "last_updated_timestamp": now_ms(),
                "user_id": FAKE_USER,
                "description": p.get("description", ""),
                "_tags": {t["key"]: t.get("value", "") for t in p.get("tags") or []},
                "_aliases": {},
            }
            self.versions[name] = {}
            self.counters[name] = itertools.count(1)
            m = self.models[name]
        return {"registered_model": self.model_view(m)}

    def rm_get(self) -> dict[str, Any]:
        (name,) = need(params(), "name")
        return {"registered_model": self.model_view(self.model(name))}

    def rm_set_alias(self) -> dict[str, Any]:
        name, alias, version = need(params(), "name", "alias", "version")
        self.version(name, version)
        with self.lock:
            self.models[name]["_aliases"][alias] = str(version)
        return {}

    def rm_delete_alias(self) -> dict[str, Any]:
        name, alias = need(params(), "name", "alias")
        m = self.model(name)
        with self.lock:
            if m["_aliases"].pop(alias, None) is None:
                raise ApiError(404, "RESOURCE_DOES_NOT_EXIST", f"Alias {alias!r} of {name!r} does not exist")
        return {}

    def rm_get_alias(self) -> dict[str, Any]:
        name, alias = need(params(), "name", "alias")
        version = self.model(name)["_aliases"].get(alias)
        if version is None:
            raise ApiError(404, "RESOURCE_DOES_NOT_EXIST", f"Alias {alias!r} of {name!r} does not exist")
        return {"model_version": self.version_view(self.version(name, version))}

    # -- model versions -------------------------------------------------------------------------------
    def mv_create(self) -> dict[str, Any]:
        p = params()
        name, source = need(p, "name", "source")
        self.model(name)
        with self.lock:
            number = next(self.counters[name])
            location = f"s3://{self.bucket}/models/{uuid.uuid4().hex}/versions/{number}"
            mv = {
                "name": name,
                "version": str(number),
                "creation_timestamp": now_ms(),
                "last_updated_timestamp": now_ms(),
                "user_id": FAKE_USER,
                "description": p.get("description", ""),
                "source": source,
                "run_id": p.get("run_id", ""),
                "run_tracking_server_id": p.get("run_tracking_server_id", ""),
                "status": "PENDING_REGISTRATION",
                "storage_location": location,
                "model_id": p.get("model_id", ""),
                "_tags": {t["key"]: t.get("value", "") for t in p.get("tags") or []},
            }
            self.versions[name][number] = mv
        return {"model_version": self.version_view(mv)}

    def mv_finalize(self) -> dict[str, Any]:
        name, version = need(params(), "name", "version")
        mv = self.version(name, version)
        with self.lock:
            mv.update(status="READY", last_updated_timestamp=now_ms())
        return {"model_version": self.version_view(mv)}

    def mv_get(self) -> dict[str, Any]:
        name, version = need(params(), "name", "version")
        return {"model_version": self.version_view(self.version(name, version))}

    def mv_search(self) -> dict[str, Any]:
        p = params()
        m = _FILTER_NAME.match(p.get("filter", "") or "")
        if not m:
            raise ApiError(
                400, "INVALID_PARAMETER_VALUE", "Unity Catalog searches versions by name='<model>' only"
            )
        self.model(m.group(1))
        with self.lock:
            found = sorted(self.versions[m.group(1)].values(), key=lambda v: -int(v["version"]))
        return {"model_versions": [self.version_view(v) for v in found]}

    def mv_download_uri(self) -> dict[str, Any]:
        name, version = need(params(), "name", "version")
        return {"artifact_uri": self.version(name, version)["storage_location"]}

    def mv_update(self) -> dict[str, Any]:
        p = params()
        name, version = need(p, "name", "version")
        mv = self.version(name, version)
        with self.lock:
            mv.update(description=p.get("description", ""), last_updated_timestamp=now_ms())
        return {"model_version": self.version_view(mv)}

    def mv_set_tag(self) -> dict[str, Any]:
        p = params()
        name, version, key = need(p, "name", "version", "key")
        value = str(p.get("value", ""))
        if len(value) > UC_TAG_VALUE_LIMIT:
            raise ApiError(
                400,
                "INVALID_PARAMETER_VALUE",
                f"Tag value exceeds the maximum length of {UC_TAG_VALUE_LIMIT} characters",
            )
        mv = self.version(name, version)
        with self.lock:
            mv["_tags"][key] = value
        return {}

    def mv_delete_tag(self) -> dict[str, Any]:
        name, version, key = need(params(), "name", "version", "key")
        mv = self.version(name, version)
        with self.lock:
            if mv["_tags"].pop(key, None) is None:
                raise ApiError(404, "RESOURCE_DOES_NOT_EXIST", f"Tag {key!r} does not exist")
        return {}

    def temporary_credentials(self) -> dict[str, Any]:
        p = params()
        name, version, operation = need(p, "name", "version", "operation")
        mv = self.version(name, version)
        if operation == "MODEL_VERSION_OPERATION_READ_WRITE" and mv["status"] != "PENDING_REGISTRATION":
            raise ApiError(
                400, "INVALID_STATE", f"Model version {name!r} {version} is {mv['status']}: read-only"
            )
        with self.lock:
            self.credential_grants.append(
                {"name": name, "version": str(version), "operation": operation, "at": time.time()}
            )
        creds = self.s3_credentials
        return {
            "credentials": {
                "aws_temp_credentials": {
                    "access_key_id": creds["access_key_id"],
                    "secret_access_key": creds["secret_access_key"],
                    "session_token": f"uc-{uuid.uuid4().hex}",
                },
                "expiration_time": now_ms() + CREDENTIAL_TTL_MS,
                "storage_mode": "CUSTOMER_HOSTED",
            }
        }

    @staticmethod
    def emit_lineage() -> dict[str, Any]:
        return {}

    @staticmethod
    def sdk_repo_enabled() -> dict[str, Any]:
        # The workspace's switch for MLflow's Files-API based UC artifact repository: off, so MLflow
        # takes the temporary-credentials path to cloud storage.
        return {"is_databricks_sdk_models_artifact_repository_enabled": False}

    def snapshot(self) -> dict[str, Any]:
        with self.lock:
            return {
                "uc_versions": {
                    n: {str(k): dict(v) for k, v in vs.items()} for n, vs in self.versions.items()
                },
                "uc_aliases": {n: dict(m["_aliases"]) for n, m in self.models.items()},
                "uc_credential_grants": list(self.credential_grants),
                "uc_bucket": self.bucket,
            }

    def register(self, router: Router) -> None:
        uc = "/api/2.0/mlflow/unity-catalog"
        area = "Unity Catalog registry"
        for method, path, handler in [
            ("POST", f"{uc}/registered-models/create", self.rm_create),
            ("GET", f"{uc}/registered-models/get", self.rm_get),
            ("POST", f"{uc}/registered-models/alias", self.rm_set_alias),
            ("DELETE", f"{uc}/registered-models/alias", self.rm_delete_alias),
            ("GET", f"{uc}/registered-models/alias", self.rm_get_alias),
            (
                "GET",
                f"{uc}/registered-models:is-databricks-sdk-models-artifact-repository-enabled",
                self.sdk_repo_enabled,
            ),
            ("POST", f"{uc}/model-versions/create", self.mv_create),
            ("POST", f"{uc}/model-versions/finalize", self.mv_finalize),
            ("GET", f"{uc}/model-versions/get", self.mv_get),
            ("GET", f"{uc}/model-versions/search", self.mv_search),
            ("GET", f"{uc}/model-versions/get-download-uri", self.mv_download_uri),
            ("PATCH", f"{uc}/model-versions/update", self.mv_update),
            ("POST", f"{uc}/model-versions/set-tag", self.mv_set_tag),
            ("DELETE", f"{uc}/model-versions/delete-tag", self.mv_delete_tag),
            ("POST", f"{uc}/model-versions/generate-temporary-credentials", self.temporary_credentials),
            ("POST", f"{uc}/model-versions/emit-lineage", self.emit_lineage),
        ]:
            router.add(method, path, area, handler)
