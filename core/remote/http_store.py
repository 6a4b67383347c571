"""``mlflow-artifacts:/`` and ``http(s)://`` trees, read through the tracking server's artifact API.

Listing is ``GET /api/2.0/mlflow-artifacts/artifacts?path=…`` (one folder per request, so the
folders are listed concurrently, while the files already listed are transferred); a file is
``GET /api/2.0/mlflow-artifacts/artifacts/<path>``, streamed, and a large one is read as
concurrent ``Range`` requests (:meth:`HttpArtifactSource.read_range`). Every request goes through the
server's shared keep-alive transport (:mod:`core.remote.http_transport`), with the credentials, TLS
and proxy settings MLflow would use, resolved once: nothing is re-resolved per file. The transport
does not retry: a broken transfer is started again from a known byte by the hasher.
"""

from __future__ import annotations

import posixpath
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from core.errors import CheckError, NotFoundError, redact
from core.remote.http_transport import HttpTransport, read_into, release, transport_for
from core.remote.source import BrokenTransfer, Found, Listing, RangesUnsupported, RemoteFile, RetryPolicy
from core.remote.walk import Entries, walk_folders

CHUNK_SIZE = 1 << 20
ENDPOINT = "/mlflow-artifacts/artifacts"
DEFAULT_CONCURRENCY = 8


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

    def __init__(self, uri: str, tracking_uri: str | None = None, *,
                 transport: HttpTransport | None = None) -> None:
        url = resolve_http_uri(uri, tracking_uri)
        if ENDPOINT not in url:
            raise CheckError(f"not an MLflow artifact API URL: {redact(url)}")
        self.display = redact(uri) or uri
        api, tail = url.split(ENDPOINT, maxsplit=1)
        self._root = tail.strip("/")
        self._http = transport or transport_for(api)

    def _get(self, path: str, retry: RetryPolicy, what: str, **kwargs: Any) -> Any:
        resp = self._http.get(path, retry, what=what, **kwargs)
        if resp.status >= 400:
            body = resp.read(300).decode(errors="replace") if resp.status != 404 else ""
            release(resp, broken=True)
            if resp.status == 404:
                raise NotFoundError(f"{self.display}: {what}: not found (HTTP 404)")
            raise CheckError(f"{self.display}: HTTP {resp.status} from the artifact API ({what}): {body}")
        return resp

    def _list(self, path: str, retry: RetryPolicy, what: str) -> list[dict]:
        import json

        resp = self._get(ENDPOINT, retry, what, query={"path": path})
        try:
            data = resp.read()
        except Exception as exc:  # a listing cut short: try it again
            release(resp, broken=True)
            raise BrokenTransfer(f"{what}: {type(exc).__name__}: {exc}") from exc
        release(resp)
        try:
            return json.loads(data or b"{}").get("files", [])
        except ValueError as exc:
            raise BrokenTransfer(f"{what}: the listing is not JSON") from exc

    def _list_folder(self, rel: str, retry: RetryPolicy) -> Entries:
        path = posixpath.join(self._root, rel) if rel else self._root
        out: Entries = []
        for f in self._list(path, retry, f"listing '{rel or '.'}'"):
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
        entries = retry.call(lambda: self._list(parent, retry, "listing the parent folder"),
                             f"{self.display}: listing")
        for f in entries:
            if f["path"] == name and not f.get("is_dir"):
                size = int(f["file_size"]) if f.get("file_size") is not None else None
                return Listing(files=[RemoteFile(name, size, key=name)], single_file=True)
        return listing

    def _file_path(self, item: RemoteFile) -> str:
        if item.key:  # the tree is this one file: the URI itself names it
            return posixpath.join(ENDPOINT, self._root)
        return posixpath.join(ENDPOINT, self._root, item.relpath) if self._root else \
            posixpath.join(ENDPOINT, item.relpath)

    @contextmanager
    def open(self, item: RemoteFile, retry: RetryPolicy) -> Iterator[Iterator[bytes]]:
        """Stream one file; a short body (against Content-Length) is a :class:`BrokenTransfer`."""
        resp = self._get(self._file_path(item), retry, f"reading {item.relpath}")
        done = False
        try:
            yield _body(resp)
            done = True
        finally:
            release(resp, broken=not done)

    def read_range(self, item: RemoteFile, start: int, into: memoryview, retry: RetryPolicy,
                   validator: str | None) -> str | None:
        """Fill ``into`` with the bytes of a file from ``start`` on; the file's validator.

        ``validator`` (the ETag or Last-Modified of an earlier range, sent as ``If-Range``) makes a
        file changed in between answer with the whole file instead of the range: that is an error,
        never bytes of two versions hashed together. A server that ignores ranges on the first
        request raises :class:`RangesUnsupported`.
        """
        length = len(into)
        what = f"reading {item.relpath} bytes {start}-{start + length - 1}"
        headers = {"Range": f"bytes={start}-{start + length - 1}"}
        if validator:
            headers["If-Range"] = validator
        resp = self._get(self._file_path(item), retry, what, headers=headers)
        if resp.status != 206:
            release(resp, broken=True)
            if validator is None:
                raise RangesUnsupported(f"{self.display} answers ranges with HTTP {resp.status}")
            raise CheckError(f"{self.display}: {item.relpath} changed while it was being read")
        try:
            expect_range(resp.headers.get("Content-Range"), start, length, item.size, what)
            got = read_into(resp, into)
        except CheckError:
            release(resp, broken=True)
            raise
        except Exception as exc:  # reset, timeout: this range again
            release(resp, broken=True)
            raise BrokenTransfer(f"{what}: {type(exc).__name__}: {exc}") from exc
        release(resp)
        if got != length:
            raise BrokenTransfer(f"{what}: got {got} of {length} bytes")
        return validator or resp.headers.get("ETag") or resp.headers.get("Last-Modified")


def expect_range(content_range: str | None, start: int, length: int, size: int | None, what: str) -> None:
    """Check that a 206 answer holds exactly the range asked for, of a file of the listed size."""
    want = f"bytes {start}-{start + length - 1}/{size}"
    if (content_range or "").strip() != want:
        raise CheckError(f"{what}: the store answered with {content_range!r} instead of {want!r}")


_buffers = threading.local()


def _body(resp: Any) -> Iterator[memoryview]:
    """The body in chunks of one buffer per thread, reused: each chunk is valid until the next."""
    view = getattr(_buffers, "view", None)
    if view is None:
        view = _buffers.view = memoryview(bytearray(CHUNK_SIZE))
    headers = resp.headers
    expected, encoded = headers.get("Content-Length"), headers.get("Content-Encoding")
    exact = expected is not None and not encoded
    # An unencoded body is read by the http.client response straight into the buffer; the headers
    # are looked up once per file, not once per chunk (a small file is one chunk).
    fp = getattr(resp, "_fp", None)
    direct = fp.readinto if fp is not None and not encoded and hasattr(fp, "readinto") else None
    got = 0
    try:
        while n := (direct(view) if direct is not None else read_into(resp, view)):
            got += n
            yield view[:n]
    except (OSError, ValueError) as exc:
        raise BrokenTransfer(f"{type(exc).__name__} after {got} bytes: {exc}") from exc
    except Exception as exc:
        if type(exc).__module__.startswith(("urllib3", "http")):  # IncompleteRead, ReadTimeout, …
            raise BrokenTransfer(f"{type(exc).__name__} after {got} bytes: {exc}") from exc
        raise
    if exact and got != int(expected):
        raise BrokenTransfer(f"short read: {got} of {expected} bytes")
