"""Files API (``/api/2.0/fs/...``), DBFS REST (``/api/2.0/dbfs/...``, ``/dbfs/...``) and the signed URLs.

MLflow writes and reads run and logged-model artifacts through the Files API of ``databricks-sdk``
(``/WorkspaceInternal/Mlflow/Artifacts/...`` paths), a plain ``dbfs:/`` URI through DBFS REST; the
signed URLs handed out by the credential endpoints are served by ``/signed/<token>``.
"""

from __future__ import annotations

import base64
from typing import Any
from urllib.parse import unquote

from flask import Response, request

from tests.support.databricks_workspace.routing import ApiError, Router, body_json, json_response, need
from tests.support.databricks_workspace.storage import Dbfs, dbfs_path_of, files_api_to_dbfs

DBFS_READ_LIMIT = 1024 * 1024  # DBFS REST `read` returns at most 1 MB per call


class FilesApi:
    """The Files API and DBFS REST over the fake's DBFS folder."""

    def __init__(self, dbfs: Dbfs) -> None:
        self.dbfs = dbfs

    # -- Files API ------------------------------------------------------------------------------
    def _local_of(self, path: str):
        return self.dbfs.local(files_api_to_dbfs(unquote(path)))

    def directory_head(self, path: str) -> Response:
        if not self._local_of(path).is_dir():
            return Response(status=404)
        return Response(status=200)

    def directory_list(self, path: str) -> dict[str, Any]:
        local = self._local_of(path)
        if not local.is_dir():
            raise ApiError(404, "NOT_FOUND", f"The directory being accessed is not found: {unquote(path)}")
        base = unquote(path).rstrip("/")
        contents = []
        for child in sorted(local.iterdir()):
            entry: dict[str, Any] = {
                "path": f"{base}/{child.name}",
                "name": child.name,
                "is_directory": child.is_dir(),
            }
            if child.is_file():
                st = child.stat()
                entry.update(file_size=st.st_size, last_modified=int(st.st_mtime * 1000))
            contents.append(entry)
        return {"contents": contents}

    def directory_create(self, path: str) -> dict[str, Any]:
        self._local_of(path).mkdir(parents=True, exist_ok=True)
        return {}

    def _file_headers(self, local) -> dict[str, str]:
        return {
            "Content-Length": str(local.stat().st_size),
            "Content-Type": "application/octet-stream",
            "Last-Modified": "Tue, 01 Dec 2026 00:00:00 GMT",
        }

    def file_head(self, path: str) -> Response:
        local = self._local_of(path)
        if not local.is_file():
            return Response(status=404)
        return Response(status=200, headers=self._file_headers(local))

    def file_get(self, path: str) -> Response:
        local = self._local_of(path)
        if not local.is_file():
            raise ApiError(404, "NOT_FOUND", f"The file being accessed is not found: {unquote(path)}")
        return serve_file(local)

    def file_put(self, path: str) -> Response:
        if request.args.get("action"):
            # Multipart / resumable uploads: MLflow's small artifacts never need them; say so clearly.
            raise ApiError(
                501, "NOT_IMPLEMENTED", f"Files API action {request.args['action']!r} is not implemented"
            )
        local = self._local_of(path)
        if local.exists() and request.args.get("overwrite", "false").lower() != "true":
            raise ApiError(409, "ALREADY_EXISTS", f"The file being created already exists: {unquote(path)}")
        self.dbfs.write(files_api_to_dbfs(unquote(path)), request.get_data())
        return Response(status=204)

    def create_download_url(self) -> dict[str, Any]:
        p = {**request.args, **(body_json() if request.get_data() else {})}
        (path,) = need(p, "path")
        dbfs_path = files_api_to_dbfs(path)
        if not self.dbfs.local(dbfs_path).is_file():
            raise ApiError(404, "NOT_FOUND", f"The file being accessed is not found: {path}")
        return {"url": self.dbfs.sign(request.host_url, dbfs_path, "read"), "headers": []}

    # -- DBFS REST ------------------------------------------------------------------------------
    def dbfs_get_status(self) -> dict[str, Any]:
        (path,) = need(dict(request.args), "path")
        return self.dbfs.status(path)

    def dbfs_list(self) -> dict[str, Any]:
        (path,) = need(dict(request.args), "path")
        files = self.dbfs.children(path)
        return {"files": files} if files else {}

    def dbfs_read(self) -> dict[str, Any]:
        p = dict(request.args)
        (path,) = need(p, "path")
        local = self.dbfs.local(path)
        if not local.is_file():
            raise ApiError(404, "RESOURCE_DOES_NOT_EXIST", f"No file exists on path {path}.")
        offset, length = int(p.get("offset", 0)), min(int(p.get("length", DBFS_READ_LIMIT)), DBFS_READ_LIMIT)
        with open(local, "rb") as fh:
            fh.seek(offset)
            data = fh.read(length)
        return {"bytes_read": len(data), "data": base64.b64encode(data).decode()}

    def dbfs_put(self) -> dict[str, Any]:
        p = body_json()
        (path,) = need(p, "path")
        local = self.dbfs.local(path)
        if local.exists() and not p.get("overwrite"):
            raise ApiError(400, "RESOURCE_ALREADY_EXISTS", f"A file or directory already exists at {path}.")
        self.dbfs.write(path, base64.b64decode(p.get("contents", "")))
        return {}

    def dbfs_fuse_get(self, path: str) -> Response:
        local = self.dbfs.local(path)
        if not local.is_file():
            raise ApiError(404, "RESOURCE_DOES_NOT_EXIST", f"No file exists on path {dbfs_path_of(path)}.")
        return serve_file(local)

    def dbfs_fuse_post(self, path: str) -> dict[str, Any]:
        self.dbfs.write(path, request.get_data())
        return {}

    # -- signed URLs ----------------------------------------------------------------------------
    def signed_get(self, token: str) -> Response:
        local = self.dbfs.local(self.dbfs.check(token, "read"))
        if not local.is_file():
            raise ApiError(404, "NoSuchKey", "The specified key does not exist.")
        return serve_file(local)

    def signed_put(self, token: str) -> Response:
        self.dbfs.write(self.dbfs.check(token, "write"), request.get_data())
        return Response(status=200, headers={"ETag": '"fake-etag"'})

    def register(self, router: Router) -> None:
        files, dbfs, signed = "Files API", "DBFS REST", "signed URLs (cloud storage)"
        router.add("HEAD", "/api/2.0/fs/directories{path}", files, self.directory_head)
        router.add("GET", "/api/2.0/fs/directories{path}", files, self.directory_list)
        router.add("PUT", "/api/2.0/fs/directories{path}", files, self.directory_create)
        router.add("HEAD", "/api/2.0/fs/files{path}", files, self.file_head)
        router.add("GET", "/api/2.0/fs/files{path}", files, self.file_get)
        router.add("PUT", "/api/2.0/fs/files{path}", files, self.file_put)
        router.add("POST", "/api/2.0/fs/create-download-url", files, self.create_download_url)
        router.add("GET", "/api/2.0/dbfs/get-status", dbfs, self.dbfs_get_status)
        router.add("GET", "/api/2.0/dbfs/list", dbfs, self.dbfs_list)
        router.add("GET", "/api/2.0/dbfs/read", dbfs, self.dbfs_read)
        router.add("POST", "/api/2.0/dbfs/put", dbfs, self.dbfs_put)
        router.add("GET", "/dbfs{path}", dbfs, self.dbfs_fuse_get)
        router.add("POST", "/dbfs{path}", dbfs, self.dbfs_fuse_post)
        router.add("GET", "/signed/{token}", signed, self.signed_get)
        router.add("PUT", "/signed/{token}", signed, self.signed_put)


def serve_file(local) -> Response:
    """A file's bytes, with Content-Length and Range support (MLflow downloads large files in ranges)."""
    size = local.stat().st_size
    rng = request.headers.get("Range")
    with open(local, "rb") as fh:
        if rng and rng.startswith("bytes="):
            start_s, _, end_s = rng[6:].partition("-")
            start = int(start_s)
            end = min(int(end_s) if end_s else size - 1, size - 1)
            fh.seek(start)
            data = fh.read(end - start + 1)
            return Response(
                data,
                status=206,
                content_type="application/octet-stream",
                headers={"Content-Range": f"bytes {start}-{end}/{size}", "Accept-Ranges": "bytes"},
            )
        data = fh.read()
    return Response(
        data, status=200, content_type="application/octet-stream", headers={"Accept-Ranges": "bytes"}
    )


__all__ = ["FilesApi", "json_response"]
