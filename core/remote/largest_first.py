"""A pool of transfer threads that starts the largest waiting file first."""

from __future__ import annotations

import heapq
import itertools
import threading
from collections.abc import Callable
from concurrent.futures import Future


class LargestFirst:
    """Transfer threads that take the largest waiting file first, whichever tree or batch it came in.

    A FIFO pool would start a large file listed late (S3 lists in key order, so ``data/…`` shards come
    after thousands of small files) only at the end, alone, while the other connections sit idle.
    """

    def __init__(self, workers: int) -> None:
        self._heap: list[tuple[int, int, Future, Callable, tuple]] = []
        self._order = itertools.count()
        self._cv = threading.Condition()
        self._closed = False
        self._threads = [threading.Thread(target=self._run, name=f"guard-transfer-{i}", daemon=True)
                         for i in range(workers)]
        for t in self._threads:
            t.start()

    def submit(self, size: int, fn: Callable, *args: object) -> Future:
        """Run ``fn(*args)`` for a file of ``size`` bytes; larger files waiting run first, ties in order."""
        fut: Future = Future()
        with self._cv:
            heapq.heappush(self._heap, (-size, next(self._order), fut, fn, args))
            self._cv.notify()
        return fut

    def _run(self) -> None:
        while True:
            with self._cv:
                while not self._heap and not self._closed:
                    self._cv.wait()
                if not self._heap:
                    return
                _, _, fut, fn, args = heapq.heappop(self._heap)
            if not fut.set_running_or_notify_cancel():
                continue
            try:
                fut.set_result(fn(*args))
            except BaseException as exc:  # handed to whoever waits on the future
                fut.set_exception(exc)

    def shutdown(self) -> None:
        """Let the threads end once nothing waits (cancelled futures are skipped), and join them."""
        with self._cv:
            self._closed = True
            self._cv.notify_all()
        for t in self._threads:
            t.join()
