"""The workspace's DBFS, kept in a local folder, and the signed URLs that stand for cloud storage.

``dbfs:/a/b`` is the file ``<root>/dbfs/a/b``. Run and logged-model artifacts live under
``dbfs:/databricks/mlflow-tracking/...``; the workspace registry's own copy of each version under
``dbfs:/databricks/mlflow-registry/...`` (two separate trees, so a test can tamper with one of them).

Signed URLs (``/signed/<token>``) play the part of S3 presigned URLs: the token names one DBFS file,
the operation (read or write) and an expiry, and is HMAC-signed with a key only the fake knows.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import os
import secrets
import time
from pathlib import Path
from typing import Any

from tests.support.databricks_workspace.routing import ApiError

TRACKING_PREFIX = "/databricks/mlflow-tracking"
REGISTRY_PREFIX = "/databricks/mlflow-registry"


def dbfs_path_of(uri: str) -> str:
    """``dbfs:/x/y`` (or ``/x/y``) as the absolute DBFS path ``/x/y``."""
    path = uri[len("dbfs:") :] if uri.startswith("dbfs:") else uri
    return "/" + path.lstrip("/")


class Dbfs:
    """DBFS in a local folder, plus signing and checking of the fake's signed URLs."""

    def __init__(self, root: Path) -> None:
        self.base = (root / "dbfs").resolve()
        self.base.mkdir(parents=True, exist_ok=True)
        self.key = secrets.token_bytes(32)

    def local(self, dbfs_path: str) -> Path:
        """The local file behind a DBFS path; a path leaving the DBFS folder is refused."""
        target = (self.base / dbfs_path_of(dbfs_path).lstrip("/")).resolve()
        if target != self.base and self.base not in target.parents:
            raise ApiError(400, "INVALID_PARAMETER_VALUE", f"Path {dbfs_path!r} is outside DBFS")
        return target

    def status(self, dbfs_path: str) -> dict[str, Any]:
        """A ``FileInfo`` of DBFS REST (``path``, ``is_dir``, ``file_size``, ``modification_time``)."""
        p = self.local(dbfs_path)
        if not p.exists():
            raise ApiError(
                404, "RESOURCE_DOES_NOT_EXIST", f"No file or directory exists on path {dbfs_path}."
            )
        st = p.stat()
        return {
            "path": dbfs_path_of(dbfs_path).rstrip("/") or "/",
            "is_dir": p.is_dir(),
            "file_size": 0 if p.is_dir() else st.st_size,
            "modification_time": int(st.st_mtime * 1000),
        }

    def children(self, dbfs_path: str) -> list[dict[str, Any]]:
        """Direct children of a directory (a file lists as itself, like DBFS REST does)."""
        p = self.local(dbfs_path)
        if not p.exists():
            raise ApiError(
                404, "RESOURCE_DOES_NOT_EXIST", f"No file or directory exists on path {dbfs_path}."
            )
        if p.is_file():
            return [self.status(dbfs_path)]
        base = dbfs_path_of(dbfs_path).rstrip("/")
        return [self.status(f"{base}/{c.name}") for c in sorted(p.iterdir())]

    def write(self, dbfs_path: str, data: bytes) -> None:
        p = self.local(dbfs_path)
        p.parent.mkdir(parents=True, exist_ok=True)
        tmp = p.with_name(p.name + f".part-{os.getpid()}-{secrets.token_hex(4)}")
        tmp.write_bytes(data)
        tmp.replace(p)

    # -- signed URLs --------------------------------------------------------------------------------
    def sign(self, host_url: str, dbfs_path: str, op: str, ttl_s: int = 900) -> str:
        """A URL on this fake granting ``op`` (``read`` | ``write``) on one DBFS file until expiry."""
        claims = {"p": dbfs_path_of(dbfs_path), "op": op, "exp": int(time.time()) + ttl_s}
        raw = base64.urlsafe_b64encode(json.dumps(claims).encode()).decode().rstrip("=")
        mac = hmac.new(self.key, raw.encode(), hashlib.sha256).hexdigest()
        return f"{host_url.rstrip('/')}/signed/{raw}.{mac}"

    def check(self, token: str, op: str) -> str:
        """The DBFS path a signed-URL token grants ``op`` on; 403 (as S3 answers) when it does not."""
        raw, _, mac = token.partition(".")
        good = hmac.new(self.key, raw.encode(), hashlib.sha256).hexdigest()
        if not hmac.compare_digest(mac, good):
            raise ApiError(403, "SignatureDoesNotMatch", "The request signature does not match")
        claims = json.loads(base64.urlsafe_b64decode(raw + "=" * (-len(raw) % 4)))
        if claims["op"] != op or claims["exp"] < time.time():
            raise ApiError(403, "AccessDenied", "Request has expired or is not allowed for this operation")
        return claims["p"]


def files_api_to_dbfs(files_path: str) -> str:
    """The DBFS path behind a Files API path MLflow uses for tracking artifacts.

    ``/WorkspaceInternal/Mlflow/Artifacts/E/Runs/R/x`` is ``/databricks/mlflow-tracking/E/R/x``;
    ``.../E/LoggedModels/M/x`` is ``/databricks/mlflow-tracking/E/logged_models/M/x``. Any other path
    (``/Volumes/...``) keeps its own place under DBFS.
    """
    parts = files_path.strip("/").split("/")
    if parts[:3] == ["WorkspaceInternal", "Mlflow", "Artifacts"] and len(parts) >= 6:
        exp, kind, ident, rest = parts[3], parts[4], parts[5], parts[6:]
        if kind == "Runs":
            return "/".join([TRACKING_PREFIX, exp, ident, *rest])
        if kind == "LoggedModels":
            return "/".join([TRACKING_PREFIX, exp, "logged_models", ident, *rest])
    return "/" + files_path.strip("/")
