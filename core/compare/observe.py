"""A narrow hook into the one read of every file: the policy inspector sees the bytes the hasher reads.

A check reads each file once, in chunks, to hash it (:mod:`core.compare.tree` for local trees,
:mod:`core.remote.hashing` for streamed ones). An :data:`ObserveFile` given to those readers is asked
once per file (and again when a broken transfer restarts from the first byte) for a
:class:`FileObserver`; None means "not interested" and costs nothing more. An observer gets the
same chunks the hash gets, and can stop them early by returning False from :meth:`FileObserver.feed`.
Chunks are views of a reused buffer: an observer that keeps bytes must copy them.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Protocol


class FileObserver(Protocol):
    """Sees one file's bytes as they are read (see the module docstring)."""

    def feed(self, chunk: bytes | memoryview) -> bool:
        """The next chunk; return False when no further chunks are wanted."""
        ...

    def close(self) -> None:
        """The file has been read to its end (called even after :meth:`feed` returned False)."""
        ...


#: ``(relative path, size or None) -> FileObserver | None``; called from several reader threads at once
ObserveFile = Callable[[str, "int | None"], "FileObserver | None"]


def feed_all(observer: FileObserver | None, chunk: bytes | memoryview) -> FileObserver | None:
    """Feed ``chunk`` to ``observer``; the observer to feed next (None once it wants no more)."""
    if observer is not None and not observer.feed(chunk):
        return None
    return observer
