"""Read remote model trees by streaming: each file's SHA-256 is computed while its bytes arrive.

Nothing is written to disk unless the caller asks to keep a copy (``sink``). All files of all the
trees of one check share one pool of ``concurrency`` transfers, largest files first, so that the
big shards of both copies run side by side and the small files fill in behind them. A transfer
that breaks is started again from the first byte of that file with a fresh hash, never
continued; one that cannot complete ends the check with a :class:`core.errors.TransientError`.
"""

from __future__ import annotations

import hashlib
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import FIRST_EXCEPTION, ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath

from core.errors import CheckError, TransientError
from core.manifest import FileDigest, Manifest
from core.registry import is_transient, translate
from core.remote.progress import NoProgress, TransferProgress
from core.remote.source import BrokenTransfer, Listing, RemoteFile, RetryPolicy, ScratchMeter, Source
from core.tree import IGNORED_FILES, ScanResult

ExcludePredicate = Callable[[str], bool]


@dataclass
class RemoteTree:
    """One tree to read: where from, how it is named, and where to keep a copy (None: nowhere)."""

    source: Source
    label: str
    sink: Path | None = None
    ignore: frozenset[str] = IGNORED_FILES
    exclude: ExcludePredicate | None = None


@dataclass
class _Plan:
    tree: RemoteTree
    listing: Listing
    files: list[RemoteFile]
    ignored: list[str]
    excluded: list[str]
    digests: dict[str, FileDigest] = field(default_factory=dict)
    started: float = 0.0


def _safe_relpath(rel: str, display: str) -> str:
    p = PurePosixPath(rel)
    if not rel or p.is_absolute() or ".." in p.parts or "\\" in rel or "\0" in rel:
        raise CheckError(f"{display}: the store lists an unsafe file name: {rel!r}")
    return rel


def _plan(tree: RemoteTree, retry: RetryPolicy) -> _Plan:
    started = time.perf_counter()
    listing = tree.source.list_files(retry)
    files, ignored, excluded = [], [], []
    for item in listing.files:
        rel = _safe_relpath(item.relpath, tree.source.display)
        if "/" not in rel and rel in tree.ignore and not listing.single_file:
            ignored.append(rel)
        elif tree.exclude is not None and tree.exclude(rel):
            excluded.append(rel)
        else:
            files.append(item)
    if not files and not listing.dirs and not ignored and not excluded:
        raise CheckError(f"no model files found at {tree.source.display}")
    return _Plan(tree, listing, files, ignored, excluded, started=started)


def _hash_one(source: Source, item: RemoteFile, retry: RetryPolicy, progress: TransferProgress,
              sink: Path | None, stop: threading.Event) -> FileDigest:
    """Read one file completely into a fresh SHA-256, retrying a broken transfer from its start."""
    what = f"reading {item.relpath} from {source.display}"
    last: BaseException | None = None
    target = sink.joinpath(*PurePosixPath(item.relpath).parts) if sink is not None else None
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
            with source.open(item, retry) as chunks:
                for chunk in chunks:
                    if stop.is_set():
                        raise CheckError(f"{what}: stopped after another transfer failed")
                    h.update(chunk)
                    got += len(chunk)
                    if out is not None:
                        out.write(chunk)
                    progress.transferred(len(chunk))
            if item.size is not None and got != item.size:
                raise BrokenTransfer(f"got {got} of {item.size} bytes")
            progress.verified(got)
            return FileDigest(got, h.hexdigest())
        except BrokenTransfer as exc:
            last = exc
        except CheckError:
            raise
        except Exception as exc:  # a client library's own error type: judge it, do not guess
            if not is_transient(exc):
                raise translate(exc, what) from exc
            last = exc
        finally:
            if out is not None:
                out.close()
        progress.restarted(got)
    raise TransientError(f"{what}: the transfer failed {retry.attempts} times, last: {last}") from last


def read_remote_trees(trees: Sequence[RemoteTree], *, concurrency: int | None = None,
                      progress: TransferProgress | None = None, retry: RetryPolicy | None = None,
                      meter: ScratchMeter | None = None) -> list[ScanResult]:
    """Read every file of every tree once, streaming; one :class:`ScanResult` per tree, in order.

    ``concurrency`` (default: the largest default of the trees' store kinds) bounds the transfers
    in flight across all trees. The trees are listed concurrently first, so ``progress`` learns the
    totals before the first byte. Top-level files in a tree's ``ignore`` are left out and named in
    ``Manifest.ignored``; paths its ``exclude`` predicate accepts are left out and named in
    ``ScanResult.excluded``. The first failure stops the other transfers and is raised.
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
    with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="guard-transfer") as pool:
        plans = [f.result() for f in [pool.submit(_plan, t, retry) for t in trees]]
        for p in plans:
            progress.planned(len(p.files), sum(f.size or 0 for f in p.files))
        jobs = sorted(((f.size or 0, i, f) for i, p in enumerate(plans) for f in p.files),
                      key=lambda j: (-j[0], j[1], j[2].relpath))
        futures = {pool.submit(_hash_one, plans[i].tree.source, f, retry, progress, plans[i].tree.sink, stop):
                   (i, f.relpath) for _, i, f in jobs}
        done, _ = wait(futures, return_when=FIRST_EXCEPTION)
        failed = [f for f in done if f.exception() is not None]
        if failed:
            stop.set()
            for f in futures:
                f.cancel()
            wait(futures)
            # The first real failure, not the "stopped" of the transfers it interrupted.
            errors = [f.exception() for f in futures if not f.cancelled() and f.exception() is not None]
            raise next((e for e in errors if "stopped after another" not in str(e)), errors[0])
        for fut, (i, rel) in futures.items():
            plans[i].digests[rel] = fut.result()
    results = []
    for p in plans:
        manifest = Manifest.build(p.digests, dirs=set(p.listing.dirs), ignored=p.ignored)
        results.append(ScanResult(
            p.tree.source.display, manifest, manifest.total_bytes, time.perf_counter() - p.started,
            excluded=sorted(p.excluded),
            transfer={"streamed": True, "concurrency": workers, "peak_scratch_bytes": meter.peak,
                      "kept_in": str(p.tree.sink) if p.tree.sink is not None else None}))
    return results
