"""``mlflow-artifacts:/`` and ``http(s)://`` trees, read through the tracking server's artifact API.

Listing is ``GET /api/2.0/mlflow-artifacts/artifacts?path=…`` (one folder per request, so the
folders are listed concurrently); a file is ``GET /api/2.0/mlflow-artifacts/artifacts/<path>``,
streamed. Authentication is MLflow's own (``get_default_host_creds``: token, basic auth, auth
plugins, TLS settings from the usual ``MLFLOW_TRACKING_*`` variables) with MLflow's request headers,
resolved once per tree: MLflow's ``http_request`` re-resolves them on every call, about 10 ms of
CPU per request, which for thousands of small files costs more than the transfers. Requests share
one keep-alive session without retries of its own: a broken transfer starts again from the first
byte of the file, which is the hasher's job.
"""

from __future__ import annotations

import posixpath
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from core.errors import CheckError, NotFoundError, redact
from core.registry.error_mapping import dependency_unavailable, translate
from core.remote.source import BrokenTransfer, Found, Listing, RemoteFile, RetryPolicy
from core.remote.walk import Entries, walk_folders

CHUNK_SIZE = 1 << 20
ENDPOINT = "/mlflow-artifacts/artifacts"
DEFAULT_CONCURRENCY = 8
_RETRY_STATUS = frozenset({408, 425, 429, 500, 502, 503, 504})


def resolve_http_uri(uri: str, tracking_uri: str | None) -> str:
    """The ``http(s)://…/api/2.0/mlflow-artifacts/artifacts/…`` URL of ``uri``."""
    if uri.startswith("mlflow-artifacts:"):
        from mlflow.store.artifact.mlflow_artifacts_repo import MlflowArtifactsRepository

        if not tracking_uri:
            raise CheckError(f"{uri} needs the tracking server's URI to be read")
        return MlflowArtifactsRepository.resolve_uri(uri, tracking_uri)
    return uri.rstrip("/")


class HttpArtifactSource:
    """A tree behind a tracking server's artifact API (see the module docstring)."""

    default_concurrency = DEFAULT_CONCURRENCY

    def __init__(self, uri: str, tracking_uri: str | None = None) -> None:
        url = resolve_http_uri(uri, tracking_uri)
        if ENDPOINT not in url:
            raise CheckError(f"not an MLflow artifact API URL: {redact(url)}")
        self.display = redact(uri) or uri
        self._api, tail = url.split(ENDPOINT, maxsplit=1)
        self._root = tail.strip("/")
        self._session, self._request_kwargs = _session_for(self._api)

    def _get(self, endpoint: str, retry: RetryPolicy, **kwargs: Any) -> Any:
        try:
            timeout = (retry.connect_timeout_s, retry.read_timeout_s)
            resp = self._session.get(self._api + endpoint, timeout=timeout, **self._request_kwargs, **kwargs)
        except Exception as exc:  # connection refused / reset, timeouts, TLS failures
            if dependency_unavailable(exc):
                raise BrokenTransfer(_first_line(exc)) from exc
            raise translate(exc, f"reading {self.display}") from exc
        if resp.status_code in _RETRY_STATUS:
            resp.close()
            raise BrokenTransfer(f"HTTP {resp.status_code} from {redact(self._api)}")
        if resp.status_code == 404:
            resp.close()
            raise NotFoundError(f"{self.display}: {endpoint} not found (HTTP 404)")
        if resp.status_code >= 400:
            text = resp.text[:300]
            raise CheckError(f"{self.display}: HTTP {resp.status_code} from the artifact API: {text}")
        return resp

    def _list_folder(self, rel: str, retry: RetryPolicy) -> Entries:
        path = posixpath.join(self._root, rel) if rel else self._root
        resp = self._get(ENDPOINT, retry, params={"path": path})
        try:
            body = resp.json()
        except ValueError as exc:
            raise BrokenTransfer(f"the listing of '{rel or '.'}' is not JSON") from exc
        out: Entries = []
        for f in body.get("files", []):
            name = f["path"]
            size = int(f["file_size"]) if f.get("file_size") is not None else None
            out.append((posixpath.join(rel, name) if rel else name, bool(f.get("is_dir")), size))
        return out

    def list_files(self, retry: RetryPolicy, found: Found | None = None) -> Listing:
        """Every file under the tree; a URI naming one file gives that file alone."""
        listing = walk_folders(lambda rel: self._list_folder(rel, retry), retry, self.default_concurrency,
                               self.display, found)
        if listing.files or listing.dirs or not self._root:
            return listing
        # Nothing under it: perhaps the URI names a file. Look for it in its parent folder.
        parent, name = posixpath.split(self._root)
        parent_entries = retry.call(lambda: self._list_parent(parent, retry), f"{self.display}: listing")
        for entry_name, is_dir, size in parent_entries:
            if entry_name == name and not is_dir:
                return Listing(files=[RemoteFile(name, size, key=name)], single_file=True)
        return listing

    def _list_parent(self, parent: str, retry: RetryPolicy) -> Entries:
        resp = self._get(ENDPOINT, retry, params={"path": parent})
        return [(f["path"], bool(f.get("is_dir")), int(f["file_size"]) if f.get("file_size") is not None
                 else None) for f in resp.json().get("files", [])]

    @contextmanager
    def open(self, item: RemoteFile, retry: RetryPolicy) -> Iterator[Iterator[bytes]]:
        """Stream one file; a short body (against Content-Length) is a :class:`BrokenTransfer`."""
        if item.key:  # the tree is this one file: the URI itself names it
            path = self._root
        else:
            path = posixpath.join(self._root, item.relpath) if self._root else item.relpath
        resp = self._get(posixpath.join(ENDPOINT, path), retry, stream=True)
        try:
            yield _body(resp)
        finally:
            resp.close()


def _session_for(api: str) -> tuple[Any, dict[str, Any]]:
    """A keep-alive session and the request arguments MLflow would use for the server at ``api``."""
    import base64

    import requests
    from mlflow.tracking.request_header.registry import resolve_request_headers
    from mlflow.utils.credentials import get_default_host_creds

    creds = get_default_host_creds(api)
    headers = dict(resolve_request_headers())
    kwargs: dict[str, Any] = {"headers": headers}
    if creds.username and creds.password and creds.auth not in ("kubernetes", "kubernetes-namespaced"):
        token = base64.standard_b64encode(f"{creds.username}:{creds.password}".encode()).decode()
        headers["Authorization"] = f"Basic {token}"
    elif creds.token:
        headers["Authorization"] = f"Bearer {creds.token}"
    if creds.auth:
        from mlflow.tracking.request_auth.registry import fetch_auth

        kwargs["auth"] = fetch_auth(creds.auth)
    if creds.server_cert_path:
        kwargs["verify"] = creds.server_cert_path
    elif creds.ignore_tls_verification:
        kwargs["verify"] = False
    if creds.client_cert_path:
        kwargs["cert"] = creds.client_cert_path
    session = requests.Session()
    adapter = requests.adapters.HTTPAdapter(pool_connections=2, pool_maxsize=64, max_retries=0)
    session.mount("http://", adapter)
    session.mount("https://", adapter)
    return session, kwargs


def _body(resp: Any) -> Iterator[bytes]:
    import requests

    expected = resp.headers.get("Content-Length")
    exact = expected is not None and not resp.headers.get("Content-Encoding")
    got = 0
    try:
        for chunk in resp.iter_content(chunk_size=CHUNK_SIZE):
            got += len(chunk)
            yield chunk
    except (requests.RequestException, OSError) as exc:
        raise BrokenTransfer(f"{type(exc).__name__} after {got} bytes: {exc}") from exc
    if exact and got != int(expected):
        raise BrokenTransfer(f"short read: {got} of {expected} bytes")


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    return text if len(text) <= 300 else text[:300] + "…"
