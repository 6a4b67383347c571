"""A Databricks registry's copy of a version (``models:/<name>/<version>``), read as MLflow reads it.

- Workspace registry (``databricks[://profile]``): the copy is access-controlled, so it is never
  read as ``dbfs:/databricks/mlflow-registry/…``. MLflow's
  ``DatabricksModelsArtifactRepository`` lists it with ``model-versions/list-artifacts`` (one
  folder per request, so folders are listed concurrently) and hands out a signed URL per file
  with ``model-versions/get-signed-download-uri``; the file is then streamed from that URL with
  the headers that came with it.
- Unity Catalog (``databricks-uc[://profile]``): MLflow's ``UnityCatalogModelsArtifactRepository``
  obtains temporary credentials for the version (``generate-temporary-credentials``) and its
  storage location; an ``s3://`` location is read with :class:`core.remote.s3_store.S3Source`
  and those credentials. Other storage (default storage, Azure, GCS, the SDK-based repository the
  workspace may ask for) is read by MLflow's own repository for the ``models:/`` URI.

Credentials are MLflow's own (``get_databricks_host_creds``: token, profile, OAuth).
"""

from __future__ import annotations

import posixpath
import re
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from core.errors import CheckError, NotFoundError, redact
from core.registry.error_mapping import dependency_unavailable, translate
from core.remote.source import BrokenTransfer, Found, Listing, RemoteFile, RetryPolicy, ScratchMeter, Source
from core.remote.walk import Entries, walk_folders

DEFAULT_CONCURRENCY = 8
_RETRY_STATUS = frozenset({408, 425, 429, 500, 502, 503, 504})
_VERSION_URI = re.compile(r"^models:/(?P<name>[^/]+)/(?P<version>\d+)(?:/(?P<path>.*))?$")


def is_workspace_registry(registry_uri: str | None) -> bool:
    """True for ``databricks`` / ``databricks://profile`` (the workspace model registry)."""
    from mlflow.utils.uri import is_databricks_unity_catalog_uri, is_databricks_uri

    return bool(registry_uri) and is_databricks_uri(registry_uri) and not is_databricks_unity_catalog_uri(
        registry_uri)


def is_unity_catalog(registry_uri: str | None) -> bool:
    """True for ``databricks-uc`` / ``databricks-uc://profile``."""
    from mlflow.utils.uri import is_databricks_unity_catalog_uri

    return bool(registry_uri) and is_databricks_unity_catalog_uri(registry_uri)


def is_databricks_registry(registry_uri: str | None) -> bool:
    """True when ``registry_uri`` is a Databricks registry (workspace or Unity Catalog)."""
    return is_workspace_registry(registry_uri) or is_unity_catalog(registry_uri)


def _split(uri: str) -> tuple[str, str, str]:
    m = _VERSION_URI.match(uri)
    if not m:
        raise CheckError(f"not a models:/<name>/<version> URI: {uri}")
    return m.group("name"), m.group("version"), (m.group("path") or "").strip("/")


def _guard(what: str, fn: Any, *args: Any, **kwargs: Any) -> Any:
    """Run one MLflow call; transient failures become :class:`BrokenTransfer` (retried)."""
    try:
        return fn(*args, **kwargs)
    except (CheckError, BrokenTransfer):
        raise
    except Exception as exc:
        if dependency_unavailable(exc) or _status_of(exc) in _RETRY_STATUS:
            raise BrokenTransfer(f"{what}: {str(exc)[:300]}") from exc
        if _status_of(exc) == 404 or "RESOURCE_DOES_NOT_EXIST" in str(exc):
            raise NotFoundError(f"{what}: {str(exc)[:300]}") from exc
        raise translate(exc, what) from exc


def _status_of(exc: BaseException) -> int | None:
    m = re.search(r"status code (\d{3})", str(exc))
    return int(m.group(1)) if m else None


class WorkspaceRegistrySource:
    """The workspace registry's copy of one version (see the module docstring)."""

    default_concurrency = DEFAULT_CONCURRENCY

    def __init__(self, uri: str, registry_uri: str) -> None:
        from mlflow.store.artifact.databricks_models_artifact_repo import DatabricksModelsArtifactRepository

        name, version, self._root = _split(uri)
        self.display = redact(uri) or uri
        self._repo = _guard(f"opening {self.display}", DatabricksModelsArtifactRepository,
                            f"models:/{name}/{version}", registry_uri=registry_uri)
        self._session = _plain_session()

    def _path(self, rel: str) -> str:
        return posixpath.join(self._root, rel) if self._root and rel else (self._root or rel)

    def _list_folder(self, rel: str) -> Entries:
        infos = _guard(f"{self.display}: listing '{rel or '.'}'", self._repo.list_artifacts, self._path(rel))
        base = self._root + "/" if self._root else ""
        out: Entries = []
        for info in infos:
            path = info.path[len(base):] if base and info.path.startswith(base) else info.path
            out.append((path, bool(info.is_dir), info.file_size))
        return out

    def list_files(self, retry: RetryPolicy, found: Found | None = None) -> Listing:
        """Every file of the copy, folders listed concurrently through ``list-artifacts``."""
        listing = walk_folders(self._list_folder, retry, self.default_concurrency, self.display, found)
        if listing.files or listing.dirs or not self._root:
            return listing
        # list-artifacts lists a file as nothing: the URI may name one file of the model.
        return Listing(files=[RemoteFile(posixpath.basename(self._root), None, key=self._root)],
                       single_file=True)

    @contextmanager
    def open(self, item: RemoteFile, retry: RetryPolicy) -> Iterator[Iterator[bytes]]:
        """Ask for the file's signed URL, then stream it with the headers that came with it."""
        path = item.key or self._path(item.relpath)
        what = f"{self.display}: reading '{item.relpath}'"
        signed, raw_headers = _guard(what, self._repo._get_signed_download_uri, path)
        if not signed:
            raise CheckError(f"{what}: the workspace gave no signed download URL")
        headers = self._repo._extract_headers_from_signed_url(raw_headers)
        resp = self._get(signed, headers, retry, what)
        try:
            yield _body(resp)
        finally:
            resp.close()

    def _get(self, url: str, headers: dict[str, str], retry: RetryPolicy, what: str) -> Any:
        try:
            resp = self._session.get(url, headers=headers, stream=True,
                                     timeout=(retry.connect_timeout_s, retry.read_timeout_s))
        except Exception as exc:  # refused, reset, timed out: the storage, not the file
            raise BrokenTransfer(f"{what}: {type(exc).__name__}: {str(exc)[:300]}") from exc
        if resp.status_code in _RETRY_STATUS:
            resp.close()
            raise BrokenTransfer(f"{what}: HTTP {resp.status_code} from the signed URL")
        if resp.status_code >= 400:
            text = resp.text[:300]
            resp.close()
            if resp.status_code == 404:
                raise NotFoundError(f"{what}: not found (HTTP 404)")
            # An expired signature (403) or a refused one: a new URL is asked for on the next try.
            if resp.status_code == 403:
                raise BrokenTransfer(f"{what}: HTTP 403 from the signed URL: {text}")
            raise CheckError(f"{what}: HTTP {resp.status_code} from the signed URL: {text}")
        return resp


def _body(resp: Any) -> Iterator[bytes]:
    """A ``requests`` response's body; a short one (against Content-Length) is a :class:`BrokenTransfer`."""
    import requests

    expected = resp.headers.get("Content-Length")
    exact = expected is not None and not resp.headers.get("Content-Encoding")
    got = 0
    try:
        for chunk in resp.iter_content(chunk_size=1 << 20):
            got += len(chunk)
            yield chunk
    except (requests.RequestException, OSError) as exc:
        raise BrokenTransfer(f"{type(exc).__name__} after {got} bytes: {exc}") from exc
    if exact and got != int(expected):
        raise BrokenTransfer(f"short read: {got} of {expected} bytes")


def _plain_session() -> Any:
    """A keep-alive session for signed URLs: they carry their own authorisation, never our token."""
    import requests

    session = requests.Session()
    adapter = requests.adapters.HTTPAdapter(pool_connections=2, pool_maxsize=64, max_retries=0)
    session.mount("http://", adapter)
    session.mount("https://", adapter)
    return session


def unity_catalog_source(uri: str, registry_uri: str, *, tracking_uri: str | None = None,
                         scratch_root: Path | str | None = None, meter: ScratchMeter | None = None,
                         concurrency: int | None = None) -> Source:
    """The reader of a Unity Catalog version's files, with the version's temporary credentials."""
    from mlflow.protos.databricks_uc_registry_messages_pb2 import StorageMode
    from mlflow.store.artifact.unity_catalog_models_artifact_repo import UnityCatalogModelsArtifactRepository
    from mlflow.utils._unity_catalog_utils import is_databricks_sdk_models_artifact_repository_enabled
    from mlflow.utils.databricks_utils import get_databricks_host_creds

    name, version, sub = _split(uri)
    display = redact(uri) or uri
    repo = _guard(f"opening {display}", UnityCatalogModelsArtifactRepository,
                  f"models:/{name}/{version}", registry_uri=registry_uri)

    def by_mlflow() -> Source:
        from core.remote.mlflow_repo_store import MlflowRepositorySource

        return MlflowRepositorySource(uri, tracking_uri=tracking_uri, registry_uri=registry_uri,
                                      scratch_root=scratch_root, meter=meter)

    creds = get_databricks_host_creds(registry_uri)
    if _guard(f"opening {display}", is_databricks_sdk_models_artifact_repository_enabled, creds):
        return by_mlflow()
    token = _guard(f"{display}: temporary credentials", repo._get_scoped_token)
    if token.storage_mode == StorageMode.DEFAULT_STORAGE or not token.HasField("aws_temp_credentials"):
        return by_mlflow()
    location = _guard(f"{display}: storage location", repo._get_blob_storage_path)
    if not str(location).startswith("s3://"):
        return by_mlflow()
    from core.remote.s3_store import S3Source

    aws = token.aws_temp_credentials
    full = location.rstrip("/") + ("/" + sub if sub else "")
    return S3Source(full, concurrency=concurrency, credentials={
        "access_key_id": aws.access_key_id, "secret_access_key": aws.secret_access_key,
        "session_token": aws.session_token})
