"""``s3://bucket/prefix`` trees, read with boto3: one flat paginated listing, streaming GETs.

The client honours what MLflow's own S3 repository honours: ``MLFLOW_S3_ENDPOINT_URL``,
``MLFLOW_S3_IGNORE_TLS``, ``MLFLOW_BOTO_CLIENT_ADDRESSING_STYLE``,
``MLFLOW_S3_EXPECTED_BUCKET_OWNER`` (read through MLflow's own settings) and boto3's usual
credential chain (``AWS_*`` variables, profiles, instance roles). botocore's retries are turned
off: a broken GET is started again from the first byte by the hasher, and a listing page is
retried by the same policy. Explicit credentials (for example temporary ones a registry hands
out) can be given instead of the chain.
"""

from __future__ import annotations

import posixpath
import urllib.parse
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from core.errors import CheckError, NotFoundError
from core.remote.source import BrokenTransfer, Found, Listing, RemoteFile, RetryPolicy

CHUNK_SIZE = 1 << 20
DEFAULT_CONCURRENCY = 16
_NOT_FOUND = {"NoSuchKey", "404", "NotFound", "NoSuchBucket"}
_FORBIDDEN = {"AccessDenied", "403", "InvalidAccessKeyId", "SignatureDoesNotMatch", "ExpiredToken"}


def make_s3_client(concurrency: int, retry: RetryPolicy, credentials: dict[str, str] | None = None) -> Any:
    """A boto3 S3 client configured as MLflow configures its own, sized for ``concurrency``."""
    try:
        import boto3
        from botocore.config import Config
    except ImportError as exc:  # pragma: no cover - depends on the installation
        raise CheckError("reading s3:// artifacts needs boto3: pip install 'mlflow-version-guard[s3]'") \
            from exc
    from mlflow.environment_variables import (
        MLFLOW_BOTO_CLIENT_ADDRESSING_STYLE,
        MLFLOW_S3_ENDPOINT_URL,
        MLFLOW_S3_IGNORE_TLS,
    )

    config = Config(max_pool_connections=max(10, concurrency), connect_timeout=retry.connect_timeout_s,
                    read_timeout=retry.read_timeout_s, retries={"total_max_attempts": 1, "mode": "standard"},
                    s3={"addressing_style": MLFLOW_BOTO_CLIENT_ADDRESSING_STYLE.get()})
    creds = credentials or {}
    return boto3.client("s3", config=config, endpoint_url=MLFLOW_S3_ENDPOINT_URL.get() or None,
                        verify=False if MLFLOW_S3_IGNORE_TLS.get() else None,
                        aws_access_key_id=creds.get("access_key_id"),
                        aws_secret_access_key=creds.get("secret_access_key"),
                        aws_session_token=creds.get("session_token"))


class S3Source:
    """A tree under an S3 prefix (see the module docstring)."""

    default_concurrency = DEFAULT_CONCURRENCY

    def __init__(self, uri: str, *, concurrency: int | None = None, credentials: dict[str, str] | None = None,
                 retry: RetryPolicy | None = None) -> None:
        parsed = urllib.parse.urlparse(uri)
        if parsed.scheme != "s3" or not parsed.netloc:
            raise CheckError(f"not an s3://bucket/prefix URI: {uri}")
        from mlflow.environment_variables import MLFLOW_S3_EXPECTED_BUCKET_OWNER

        self.display = f"s3://{parsed.netloc}{parsed.path}"
        self.bucket = parsed.netloc
        self.prefix = parsed.path.strip("/")
        owner = MLFLOW_S3_EXPECTED_BUCKET_OWNER.get()
        self._owner = {"ExpectedBucketOwner": owner} if owner else {}
        self._client = make_s3_client(concurrency or DEFAULT_CONCURRENCY, retry or RetryPolicy(), credentials)

    def _call(self, what: str, fn: Any, **kwargs: Any) -> Any:
        from botocore.exceptions import BotoCoreError, ClientError

        try:
            return fn(**kwargs, **self._owner)
        except ClientError as exc:
            code = str(exc.response.get("Error", {}).get("Code", ""))
            status = exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode") or 0
            if code in _NOT_FOUND:
                raise NotFoundError(f"{self.display}: {what}: not found ({code})") from exc
            if code in _FORBIDDEN:
                raise CheckError(f"{self.display}: {what}: access denied ({code})") from exc
            if status == 429 or status >= 500 or code in ("SlowDown", "RequestTimeout", "InternalError"):
                raise BrokenTransfer(f"{what}: {code or status}") from exc
            raise CheckError(f"{self.display}: {what}: {code}: {exc}") from exc
        except (BotoCoreError, OSError) as exc:
            raise BrokenTransfer(f"{what}: {type(exc).__name__}: {exc}") from exc

    def list_files(self, retry: RetryPolicy, found: Found | None = None) -> Listing:
        """One flat, paginated ``ListObjectsV2`` of the prefix; a prefix naming one object gives it alone."""
        base = self.prefix + "/" if self.prefix else ""
        files: list[RemoteFile] = []
        dirs: set[str] = set()
        token: str | None = None
        while True:
            kwargs: dict[str, Any] = {"Bucket": self.bucket, "Prefix": base, "MaxKeys": 1000}
            if token:
                kwargs["ContinuationToken"] = token
            page = retry.call(lambda kw=kwargs: self._call("listing", self._client.list_objects_v2, **kw),
                              f"{self.display}: listing")
            batch = []
            for obj in page.get("Contents", []):
                rel = obj["Key"][len(base):]
                if not rel:
                    continue
                if rel.endswith("/") and obj.get("Size", 0) == 0:  # a folder marker, as MLflow reads it
                    dirs.add(rel.rstrip("/"))
                else:
                    batch.append(RemoteFile(rel, int(obj["Size"]), key=obj["Key"], etag=obj.get("ETag", "")))
            files += batch
            token = page.get("NextContinuationToken")
            last = not page.get("IsTruncated") or not token
            if found is not None and batch:
                found(batch, last=last)
            if last:
                break
        if files or dirs or not self.prefix:
            return Listing(files=files, dirs=dirs)
        try:
            head = retry.call(lambda: self._call("reading", self._client.head_object, Bucket=self.bucket,
                                                 Key=self.prefix), f"{self.display}: reading")
        except NotFoundError:
            return Listing(files=[])
        return Listing(files=[RemoteFile(posixpath.basename(self.prefix), int(head["ContentLength"]),
                                         key=self.prefix, etag=head.get("ETag", ""))], single_file=True)

    @contextmanager
    def open(self, item: RemoteFile, retry: RetryPolicy) -> Iterator[Iterator[bytes]]:
        """Stream one object; botocore checks the body against its Content-Length."""
        key = item.key or (f"{self.prefix}/{item.relpath}" if self.prefix else item.relpath)
        resp = self._call(f"reading {item.relpath}", self._client.get_object, Bucket=self.bucket, Key=key)
        body = resp["Body"]
        try:
            yield self._chunks(body, item.relpath)
        finally:
            body.close()

    def read_range(self, item: RemoteFile, start: int, into: memoryview, retry: RetryPolicy,
                   validator: str | None) -> str | None:
        """Fill ``into`` with an object's bytes from ``start`` on, of the version listed (``If-Match``).

        An object replaced since it was listed answers 412: an error, never bytes of two versions.
        """
        from core.remote.http_store import expect_range
        from core.remote.http_transport import read_into, release

        length = len(into)
        key = item.key or (f"{self.prefix}/{item.relpath}" if self.prefix else item.relpath)
        what = f"reading {item.relpath} bytes {start}-{start + length - 1}"
        extra = {"IfMatch": item.etag} if item.etag else {}
        try:
            resp = self._call(what, self._client.get_object, Bucket=self.bucket, Key=key,
                              Range=f"bytes={start}-{start + length - 1}", **extra)
        except CheckError as exc:
            if "PreconditionFailed" in str(exc):
                raise CheckError(f"{self.display}: {item.relpath} changed while it was being read") from exc
            raise
        body = resp["Body"]
        # botocore's body wraps a urllib3 response: read it straight into the range's buffer, and
        # hand its connection back to the pool when the range was read to its end.
        raw = getattr(body, "_raw_stream", None)
        broken = True
        try:
            expect_range(resp.get("ContentRange"), start, length, item.size, what)
            got = read_into(raw if raw is not None else body, into)
            broken = False
        except (CheckError, BrokenTransfer):
            raise
        except Exception as exc:  # reset, timeout: this range again
            raise BrokenTransfer(f"{what}: {type(exc).__name__}: {exc}") from exc
        finally:
            if raw is not None and hasattr(raw, "release_conn"):
                release(raw, broken=broken)
            else:
                body.close()
        if got != length:
            raise BrokenTransfer(f"{what}: got {got} of {length} bytes")
        return item.etag or None

    def _chunks(self, body: Any, rel: str) -> Iterator[bytes]:
        from botocore.exceptions import BotoCoreError

        got = 0
        try:
            while chunk := body.read(CHUNK_SIZE):
                got += len(chunk)
                yield chunk
        except (BotoCoreError, OSError) as exc:  # IncompleteReadError, ReadTimeoutError, reset
            raise BrokenTransfer(f"reading {rel}: {type(exc).__name__} after {got} bytes: {exc}") from exc
