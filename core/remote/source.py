"""What a remote artifact store must offer to be read by the streaming hasher.

A :class:`Source` is one model tree in one store. It lists its files flat (relative path and
size, every sub-folder included) and opens one file as a stream of byte chunks. Everything else
(hashing, concurrency, retries, progress, materialising kept copies) is shared and lives in
:mod:`core.remote.hashing`, so a new store kind is one small class: list, open, classify errors.

A store reached in another way (a Databricks workspace's signed download URLs, Unity Catalog's
temporary cloud credentials) plugs in the same way: a ``Source`` whose ``list_files`` calls the
workspace's listing endpoint and whose ``open`` GETs the signed URL, or an existing source
(:class:`core.remote.s3_store.S3Source`) built with the temporary credentials.
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable, Iterable, Iterator
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from typing import Protocol, TypeVar

T = TypeVar("T")


@dataclass(frozen=True)
class RemoteFile:
    """One file of a remote tree: its path relative to the tree's root and its listed size.

    ``size`` is None when the store does not list sizes; then only the transfer's own length
    check (Content-Length, object size) guards against a short read.
    """

    relpath: str
    size: int | None
    key: str = ""  # the store's own name for the file (object key, artifact path), when it differs
    etag: str = ""  # the store's version tag of the file when the listing gives one (S3)


@dataclass
class Listing:
    """A tree as listed: its files, its folders (S3 folder markers, empty folders), single-file flag.

    ``single_file`` is set when the URI names one file rather than a folder: the tree is then that
    one file, named after it (as :func:`core.compare.tree.scan_tree` does for a local file).
    """

    files: list[RemoteFile]
    dirs: set[str] = field(default_factory=set)
    single_file: bool = False


class Found(Protocol):
    """Receives files as soon as they are listed (see :meth:`Source.list_files`)."""

    def __call__(self, batch: list[RemoteFile], last: bool = False) -> None:
        """``last``: the lister knows no more files of its tree will follow (a large one may be ranged)."""


class BrokenTransfer(Exception):
    """A transfer that did not complete (connection reset, short read, 5xx, timeout): retry it."""


class RangesUnsupported(Exception):
    """The store answered a ``Range`` request with the whole file: read it as one stream instead."""


@dataclass(frozen=True)
class RetryPolicy:
    """How often one request (a listing page or one whole file) is tried, and how long each waits.

    ``attempts`` tries, ``backoff_s`` × 2^n apart (capped at ``max_backoff_s``, with up to 25 %
    jitter), each connection bounded by ``connect_timeout_s`` and each read by ``read_timeout_s``.
    With the defaults a store that refuses connections is an ERROR after about 3.5 s of waiting;
    one that accepts but never answers after 4 × 30 s.
    """

    attempts: int = 4
    backoff_s: float = 0.5
    max_backoff_s: float = 4.0
    connect_timeout_s: float = 10.0
    read_timeout_s: float = 30.0

    def delay(self, attempt: int) -> float:
        """Seconds to wait before try number ``attempt + 1`` (``attempt`` counts from 0)."""
        base = min(self.max_backoff_s, self.backoff_s * (2 ** attempt))
        return base * (1 + random.random() / 4)

    def refused_bound_s(self) -> float:
        """The longest this policy waits in all when every try fails at once (connection refused)."""
        return sum(min(self.max_backoff_s, self.backoff_s * (2 ** i)) * 1.25
                   for i in range(self.attempts - 1))

    def call(self, fn: Callable[[], T], what: str) -> T:
        """Run ``fn`` until it does not raise :class:`BrokenTransfer`; then a transient error."""
        from core.errors import TransientError

        last: BaseException | None = None
        for attempt in range(self.attempts):
            if attempt:
                time.sleep(self.delay(attempt - 1))
            try:
                return fn()
            except BrokenTransfer as exc:
                last = exc
        raise TransientError(f"{what}: failed {self.attempts} times, last: {last}") from last


class Source(Protocol):
    """One model tree in a remote store (see the module docstring)."""

    #: how the tree is named in reports and errors (credentials removed)
    display: str
    #: concurrent transfers this store kind serves well when the caller does not say
    default_concurrency: int

    def list_files(self, retry: RetryPolicy, found: Found | None = None) -> Listing:
        """Every file under the tree (flat, or folders listed concurrently), with sizes.

        ``found``, when given, receives the files in batches as they are listed (one folder, one
        page), so that transfers start while the listing goes on; every file of the returned
        listing has then been passed to it, except the one file of a ``single_file`` listing.
        """
        ...

    def open(self, item: RemoteFile, retry: RetryPolicy) -> AbstractContextManager[Iterator[bytes]]:
        """A context manager yielding the file's content as byte chunks, front to back.

        A transfer that breaks raises :class:`BrokenTransfer` (before or while iterating); a file
        that cannot be read at all (gone, forbidden) raises :class:`CheckError`.
        """
        ...

    # Optional: a store that serves byte ranges also offers
    # ``read_range(item, start, length, retry, validator) -> (bytes, validator)``, exactly the bytes
    # ``[start, start + length)`` of a file of known size (see core.remote.ranged).



class ScratchMeter:
    """Bytes a check holds in scratch files right now, and the most it ever held (thread-safe).

    Only sources that cannot stream (MLflow's own artifact repositories) write scratch files; they
    add a file's size when it lands and take it off when it is deleted, right after hashing.
    """

    def __init__(self) -> None:
        import threading

        self._lock = threading.Lock()
        self.current = 0
        self.peak = 0

    def add(self, nbytes: int) -> None:
        with self._lock:
            self.current += nbytes
            self.peak = max(self.peak, self.current)

    def remove(self, nbytes: int) -> None:
        with self._lock:
            self.current -= nbytes


def join_key(prefix: str, rel: str) -> str:
    """``prefix/rel`` without doubled or leading slashes when ``prefix`` is empty."""
    return f"{prefix.rstrip('/')}/{rel}" if prefix.strip("/") else rel


def relative_to(prefix: str, paths: Iterable[str]) -> Iterator[tuple[str, str]]:
    """``(full, relative)`` for the paths strictly under ``prefix`` (a folder name, no slash)."""
    base = prefix.rstrip("/") + "/" if prefix.strip("/") else ""
    for p in paths:
        if p.startswith(base) and len(p) > len(base):
            yield p, p[len(base):]
