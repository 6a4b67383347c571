"""Read remote model trees by streaming: each file's SHA-256 is computed while its bytes arrive.

Nothing is written to disk unless the caller asks to keep a copy (``sink``). All files of all the
trees of one check share one pool of ``concurrency`` transfers. Files join the pool as soon as
their folder (or listing page) is listed, largest first within each batch, so transfers overlap
the listing and the big shards of both copies run side by side. A transfer
that breaks is started again from the first byte of that file with a fresh hash, never
continued; one that cannot complete ends the check with a :class:`core.errors.TransientError`.
A large file whose store serves byte ranges is read as concurrent ranges hashed in order once the
other connections would otherwise sit idle (:mod:`core.remote.ranged`); a range that breaks is
fetched again whole. All requests of a check, whole files and ranges, share ``concurrency`` slots.
"""

from __future__ import annotations

import hashlib
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import FIRST_EXCEPTION, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from core.compare.observe import ObserveFile, feed_all
from core.compare.tree import IGNORED_FILES, ScanResult
from core.errors import CheckError, TransientError
from core.registry.error_mapping import dependency_unavailable, translate
from core.remote.largest_first import LargestFirst
from core.remote.progress import NoProgress, TransferProgress
from core.remote.ranged import RangedReader
from core.remote.source import (
    BrokenTransfer,
    Listing,
    RangesUnsupported,
    RemoteFile,
    RetryPolicy,
    ScratchMeter,
    Source,
)
from core.seal.manifest import FileDigest, Manifest

ExcludePredicate = Callable[[str], bool]


@dataclass
class RemoteTree:
    """One tree to read: where from, how it is named, and where to keep a copy (None: nowhere)."""

    source: Source
    label: str
    sink: Path | None = None
    ignore: frozenset[str] = IGNORED_FILES
    exclude: ExcludePredicate | None = None
    observe: ObserveFile | None = None  # sees each file's chunks as they are hashed (core.compare.observe)


class _TreeRead:
    """One tree while it is being read: what was listed, left out, and handed to the pool."""

    def __init__(self, tree: RemoteTree) -> None:
        self.tree = tree
        self.started = time.perf_counter()
        self.ignored: list[str] = []
        self.excluded: list[str] = []
        self.futures: dict[str, Future] = {}
        self.listing: Listing | None = None
        self.listed = False  # every file of the tree has been handed to the transfer pool

    def accept(self, items: list[RemoteFile], single_file: bool = False) -> list[RemoteFile]:
        """The files of ``items`` to read: names checked, ignored and excluded ones set aside."""
        keep = []
        for item in items:
            rel = _safe_relpath(item.relpath, self.tree.source.display)
            if "/" not in rel and rel in self.tree.ignore and not single_file:
                self.ignored.append(rel)
            elif self.tree.exclude is not None and self.tree.exclude(rel):
                self.excluded.append(rel)
            else:
                keep.append(item)
        return keep


def _safe_relpath(rel: str, display: str) -> str:
    # String tests rather than a PurePosixPath per file: the same rule, run for thousands of files.
    if not rel or rel.startswith("/") or ".." in rel.split("/") or "\\" in rel or "\0" in rel:
        raise CheckError(f"{display}: the store lists an unsafe file name: {rel!r}")
    return rel


def _hash_one(source: Source, item: RemoteFile, retry: RetryPolicy, progress: TransferProgress,
              sink: Path | None, stop: threading.Event, ranged: RangedReader,
              observe: ObserveFile | None = None) -> FileDigest:
    """Read one file completely into a fresh SHA-256: in ranges when it is large and the store serves
    them, else as one stream, retrying a broken transfer from its start. ``observe`` sees the file's
    bytes in order as they are hashed (:mod:`core.compare.observe`)."""
    target = sink.joinpath(*PurePosixPath(item.relpath).parts) if sink is not None else None
    ranged.starting()
    if ranged.wants(source, item):
        try:
            return _hash_ranged(source, item, retry, progress, target, stop, ranged, observe)
        except RangesUnsupported:
            pass
    what = f"reading {item.relpath} from {source.display}"
    last: BaseException | None = None
    for attempt in range(retry.attempts):
        if attempt:
            time.sleep(retry.delay(attempt - 1))
        if stop.is_set():
            raise CheckError(f"{what}: stopped after another transfer failed")
        h = hashlib.sha256()
        got = 0
        out = None
        try:
            if target is not None:
                target.parent.mkdir(parents=True, exist_ok=True)
                out = open(target, "wb")  # noqa: SIM115 - closed in finally, reopened per attempt
            # A restarted transfer gets a fresh observer: it must see the file from its first byte.
            watcher = observe(item.relpath, item.size) if observe is not None else None
            observer = watcher
            with ranged.slots, source.open(item, retry) as chunks:
                for chunk in chunks:
                    if stop.is_set():
                        raise CheckError(f"{what}: stopped after another transfer failed")
                    h.update(chunk)
                    got += len(chunk)
                    if out is not None:
                        out.write(chunk)
                    if observer is not None:
                        observer = feed_all(observer, chunk)
                    progress.transferred(len(chunk))
            if item.size is not None and got != item.size:
                raise BrokenTransfer(f"got {got} of {item.size} bytes")
            if watcher is not None:
                watcher.close()
            progress.verified(got)
            return FileDigest(got, h.hexdigest())
        except BrokenTransfer as exc:
            last = exc
        except CheckError:
            raise
        except Exception as exc:  # a client library's own error type: judge it, do not guess
            if not dependency_unavailable(exc):
                raise translate(exc, what) from exc
            last = exc
        finally:
            if out is not None:
                out.close()
        progress.restarted(got)
    raise TransientError(f"{what}: the transfer failed {retry.attempts} times, last: {last}") from last


def _hash_ranged(source: Source, item: RemoteFile, retry: RetryPolicy, progress: TransferProgress,
                 target: Path | None, stop: threading.Event, ranged: RangedReader,
                 observe: ObserveFile | None) -> FileDigest:
    """One large file read in concurrent ranges (:mod:`core.remote.ranged`), hashed in order."""
    h = hashlib.sha256()
    watcher = observe(item.relpath, item.size) if observe is not None else None
    observer = [watcher]
    out = None
    if target is not None:
        target.parent.mkdir(parents=True, exist_ok=True)
        out = open(target, "wb")  # noqa: SIM115 - closed in finally
    try:
        def consume(data: memoryview) -> None:
            h.update(data)
            if out is not None:
                out.write(data)
            if observer[0] is not None:
                observer[0] = feed_all(observer[0], data)

        got = ranged.read(source, item, retry, progress, stop, consume)
    finally:
        if out is not None:
            out.close()
    if watcher is not None:
        watcher.close()
    progress.verified(got)
    return FileDigest(got, h.hexdigest())


def read_remote_trees(trees: Sequence[RemoteTree], *, concurrency: int | None = None,
                      progress: TransferProgress | None = None, retry: RetryPolicy | None = None,
                      meter: ScratchMeter | None = None) -> list[ScanResult]:
    """Read every file of every tree once, streaming; one :class:`ScanResult` per tree, in order.

    ``concurrency`` (default: the largest default of the trees' store kinds) bounds the transfers
    in flight across all trees. The trees are listed concurrently, and each listed batch (a folder,
    a page) goes to the transfer pool at once, largest files first, so that transfers overlap the
    listing. Top-level files in a tree's ``ignore`` are left out and named in ``Manifest.ignored``;
    paths its ``exclude`` predicate accepts are left out and named in ``ScanResult.excluded``. The
    first failure stops the other transfers and is raised.
    """
    if not trees:
        return []
    progress = progress or NoProgress()
    retry = retry or RetryPolicy()
    meter = meter or ScratchMeter()
    workers = concurrency or max(t.source.default_concurrency for t in trees)
    if workers < 1:
        raise CheckError(f"transfer concurrency must be at least 1, not {workers}")
    stop = threading.Event()
    lock = threading.Lock()
    reads = [_TreeRead(t) for t in trees]
    ranged = RangedReader(workers, threading.Semaphore(workers))
    pool = LargestFirst(workers)
    with ThreadPoolExecutor(max_workers=len(reads), thread_name_prefix="guard-list") as lister:

        def found(read: _TreeRead, items: list[RemoteFile], single_file: bool = False,
                  last: bool = False) -> None:
            batch = sorted(read.accept(items, single_file), key=lambda f: -(f.size or 0))
            progress.planned(len(batch), sum(f.size or 0 for f in batch))
            with lock:
                if stop.is_set():
                    return
                if last or single_file:
                    read_listed(read)  # before its files are handed out: they may be read in ranges
                ranged.queued(len(batch))
                for item in batch:
                    read.futures[item.relpath] = pool.submit(
                        item.size or 0, _hash_one, read.tree.source, item, retry, progress, read.tree.sink,
                        stop, ranged, read.tree.observe)

        def read_listed(read: _TreeRead) -> None:
            if not read.listed:
                read.listed = True
                ranged.listed(read.tree.source)

        def list_tree(read: _TreeRead) -> None:
            read.listing = read.tree.source.list_files(
                retry, lambda items, last=False: found(read, items, last=last))
            if read.listing.single_file:
                found(read, read.listing.files, single_file=True)
            with lock:
                read_listed(read)
            if not read.futures and not read.listing.dirs and not read.ignored and not read.excluded:
                raise CheckError(f"no model files found at {read.tree.source.display}")

        try:
            for job in [lister.submit(list_tree, r) for r in reads]:
                job.result()
            with lock:
                futures = [f for r in reads for f in r.futures.values()]
            done, _ = wait(futures, return_when=FIRST_EXCEPTION)
            errors = [f.exception() for f in done if f.exception() is not None]
            if errors:
                raise _first_real(errors)
        except BaseException as exc:
            with lock:
                stop.set()
                futures = [f for r in reads for f in r.futures.values()]
            for f in futures:
                f.cancel()
            wait(futures)
            others = [f.exception() for f in futures if not f.cancelled() and f.exception() is not None]
            raise _first_real([exc, *others]) from None
        finally:
            pool.shutdown()
            ranged.close()
    results = []
    for r in reads:
        digests = {rel: fut.result() for rel, fut in r.futures.items()}
        dirs = set(r.listing.dirs) if r.listing is not None else set()
        manifest = Manifest.build(digests, dirs=dirs, ignored=r.ignored + r.excluded)
        results.append(ScanResult(
            r.tree.source.display, manifest, manifest.total_bytes, time.perf_counter() - r.started,
            excluded=sorted(r.excluded),
            transfer={"streamed": True, "concurrency": workers, "peak_scratch_bytes": meter.peak,
                      "kept_in": str(r.tree.sink) if r.tree.sink is not None else None}))
    return results


def _first_real(errors: list[BaseException]) -> BaseException:
    """The failure that stopped the check, not the "stopped" of the transfers it interrupted."""
    return next((e for e in errors if "stopped after another" not in str(e)), errors[0])
