"""One large file read as concurrent byte ranges and hashed in order, in bounded memory.

A single multi-GiB file streamed over one connection runs at one connection's speed. A store that
serves byte ranges (the artifact proxy, S3) lets several ranges of it be in flight at once, as many
as the check's transfer concurrency. The ranges are hashed strictly in file order into the file's one
SHA-256, so the digest is the digest of the file. Each range is checked before it is hashed (a 206
answer naming exactly that range of a file of the listed size, the exact number of bytes, the same
version of the file as the first range); a range that breaks is fetched again whole, the same rule
as a broken file, so the hash never sees a partial or a foreign byte. Ranges that arrived ahead of
the hash wait in memory, at most :data:`BUFFER_BUDGET` bytes for the whole check.
"""

from __future__ import annotations

import queue
import threading
import time
from collections import deque
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any

from core.errors import CheckError, TransientError
from core.registry.error_mapping import dependency_unavailable, translate
from core.remote.progress import TransferProgress
from core.remote.source import BrokenTransfer, RangesUnsupported, RemoteFile, RetryPolicy, Source

MIB = 1 << 20
#: bytes of ranges held in memory at once, across all the large files of one check
BUFFER_BUDGET = 32 * MIB


def part_size_for(workers: int) -> int:
    """Range size for ``workers`` concurrent transfers: the buffer budget shared by them, 1 to 8 MiB."""
    return max(MIB, min(8 * MIB, BUFFER_BUDGET // max(1, workers)))


class RangedReader:
    """The range transfers of one check: their threads, the buffer budget, the shared request slots.

    ``slots`` bounds the requests in flight; whole-file transfers hold the same slots, so a check
    never has more than its concurrency of requests open, whatever mix of files it reads.
    """

    def __init__(self, workers: int, slots: threading.Semaphore) -> None:
        self.workers = workers
        self._backlog = 0  # files handed to the transfer pool and not started yet
        self._listed: set[int] = set()  # id() of the sources whose listing can add no more files
        self.part = part_size_for(workers)
        self.min_size = max(4 * self.part, 16 * MIB)
        self.window = max(2, BUFFER_BUDGET // self.part)
        self.slots = slots
        # Allocated once, on first use, and reused: memory for ranges stays at the budget whatever
        # the file sizes, and a check without large files allocates none.
        self._buffers: queue.LifoQueue[memoryview] = queue.LifoQueue()
        self._allocated = False
        self._lock = threading.Lock()
        self._pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="guard-range")

    def _allocate(self) -> None:
        with self._lock:
            if not self._allocated:
                for _ in range(self.window):
                    self._buffers.put(memoryview(bytearray(self.part)))
                self._allocated = True

    def close(self) -> None:
        """Stop the range threads (after the transfers that use them are done or stopped)."""
        self._pool.shutdown(wait=True, cancel_futures=True)

    def queued(self, files: int) -> None:
        """``files`` more files wait for a transfer thread."""
        with self._lock:
            self._backlog += files

    def listed(self, source: Source) -> None:
        """``source``'s tree has handed every file it has to the transfer pool."""
        with self._lock:
            self._listed.add(id(source))

    def starting(self) -> None:
        """One waiting file has a transfer thread now."""
        with self._lock:
            self._backlog -= 1

    def wants(self, source: Source, item: RemoteFile) -> bool:
        """True when ``item`` is large, its store serves ranges, and connections would otherwise idle.

        While more files wait than there are transfers, or the file's tree is still being listed, every
        connection has a whole file to read: ranges would only add requests and hold the transfer
        threads (a model's shards found early, read in ranges side by side, left its thousands of
        small files waiting: twice the time of whole reads, measured). They pay off for the large
        files that are left when their tree is listed and the rest is under way, and for a single file.
        """
        return (item.size is not None and item.size >= self.min_size and hasattr(source, "read_range")
                and id(source) in self._listed and self._backlog < self.workers)

    def read(self, source: Source, item: RemoteFile, retry: RetryPolicy, progress: TransferProgress,
             stop: threading.Event, consume: Callable[[memoryview], None]) -> int:
        """Give every byte of ``item`` to ``consume``, in order; the number of bytes.

        Raises :class:`RangesUnsupported` before any byte is consumed when the store ignores ranges.
        """
        size, part = int(item.size or 0), self.part
        count = (size + part - 1) // part
        pending: deque[tuple[memoryview, memoryview, Future]] = deque()
        self._allocate()
        buf = self._buffers.get()
        try:
            validator = self._fetch(source, item, 0, buf[:min(part, size)], retry, None, progress, stop)
            consume(buf[:min(part, size)])
        finally:
            self._buffers.put(buf)
        nxt = 1
        try:
            for _ in range(1, count):
                # Wait for a buffer only with nothing in flight: a reader never holds buffers while
                # it waits for more, so readers of several large files cannot starve each other.
                while nxt < count:
                    try:
                        buf = self._buffers.get(block=not pending)
                    except queue.Empty:
                        break
                    start = nxt * part
                    view = buf[:min(part, size - start)]
                    pending.append((buf, view, self._pool.submit(self._fetch, source, item, start, view,
                                                                 retry, validator, progress, stop)))
                    nxt += 1
                buf, view, fut = pending.popleft()
                try:
                    fut.result()
                    consume(view)
                finally:
                    self._buffers.put(buf)
        finally:
            for buf, _view, fut in pending:
                if fut.cancel():
                    self._buffers.put(buf)
                else:
                    fut.add_done_callback(lambda _f, b=buf: self._buffers.put(b))
        return size

    def _fetch(self, source: Any, item: RemoteFile, start: int, into: memoryview, retry: RetryPolicy,
               validator: str | None, progress: TransferProgress, stop: threading.Event) -> str | None:
        """One range into ``into``, tried again whole while it breaks (``retry``'s attempts and backoff)."""
        what = f"reading {item.relpath} bytes {start}-{start + len(into) - 1} from {source.display}"
        last: BaseException | None = None
        for attempt in range(retry.attempts):
            if attempt:
                progress.restarted(0)
                time.sleep(retry.delay(attempt - 1))
            if stop.is_set():
                raise CheckError(f"{what}: stopped after another transfer failed")
            try:
                with self.slots:
                    tag = source.read_range(item, start, into, retry, validator)
                progress.transferred(len(into))
                return tag
            except BrokenTransfer as exc:
                last = exc
            except (CheckError, RangesUnsupported):
                raise
            except Exception as exc:  # a client library's own error type: judge it, do not guess
                if not dependency_unavailable(exc):
                    raise translate(exc, what) from exc
                last = exc
        raise TransientError(f"{what}: the transfer failed {retry.attempts} times, last: {last}") from last
