"""Exact comparison of two model trees.

Every entry under both roots is visited, in every sub-folder. Each regular file is read once in
fixed-size chunks into one reusable buffer, and its SHA-256 is computed in that same read, so
memory stays flat whatever the model size and no byte is read twice. The two trees are read at
the same time in two threads: ``hashlib`` and file reads release the GIL, so the two copies are
hashed on two cores. The comparison itself then works on the two manifests (see
:func:`core.seal.manifest.diff_manifests`).
"""

from __future__ import annotations

import hashlib
import os
import threading
import time
from collections.abc import Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from core.compare.exclude import is_excluded
from core.compare.observe import FileObserver, ObserveFile, feed_all
from core.errors import CheckError
from core.seal.manifest import Difference, FileDigest, Manifest, diff_manifests

__all__ = ["CHUNK_SIZE", "IGNORED_FILES", "Difference", "FileDigest", "ScanResult", "TreeComparison",
           "compare_trees", "scan_tree", "scan_trees"]

CHUNK_SIZE = 1 << 20
# Files MLflow adds around a model that are not part of it; ignored at the top level only.
IGNORED_FILES = frozenset({"registered_model_meta"})


@dataclass
class ScanResult:
    """A tree read: its manifest and how many content bytes were read.

    ``path`` is the folder read, or for a tree streamed from a remote store its (redacted) URI.
    ``excluded`` names paths left out by exclude patterns; ``transfer`` describes a remote read
    (concurrency, peak scratch bytes, where a kept copy is), None for a local one.
    """

    path: Path | str
    manifest: Manifest
    bytes_read: int
    elapsed_s: float
    excluded: list[str] = field(default_factory=list)
    transfer: dict[str, Any] | None = None


def _hash_file(path: str, buf: bytearray, view: memoryview, observe: ObserveFile | None = None,
               rel: str = "", size_hint: int | None = None) -> FileDigest:
    h = hashlib.sha256()
    watcher: FileObserver | None = observe(rel, size_hint) if observe is not None else None
    size = 0
    fd = os.open(path, os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_CLOEXEC", 0))
    try:
        if hasattr(os, "posix_fadvise"):
            # A hint for cold caches: the file is read once, front to back.
            os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_SEQUENTIAL)
        with open(fd, "rb", buffering=0, closefd=False) as f:
            if watcher is None:
                while n := f.readinto(buf):
                    h.update(view[:n])
                    size += n
            else:
                observer, closing = watcher, watcher
                while n := f.readinto(buf):
                    h.update(view[:n])
                    size += n
                    observer = feed_all(observer, view[:n])
                closing.close()
    finally:
        os.close(fd)
    return FileDigest(size, h.hexdigest())


def scan_tree(root: Path | str, *, ignore: Iterable[str] = IGNORED_FILES,
              chunk_size: int = CHUNK_SIZE, workers: int = 1, exclude: Sequence[str] = (),
              observe: ObserveFile | None = None) -> ScanResult:
    """Read the tree under ``root`` (every file, every sub-folder) into a :class:`Manifest`.

    Symbolic links are recorded with their target and never followed. A ``root`` that is a
    single file gives a one-entry manifest named after the file. Top-level files named in
    ``ignore`` are left out and listed in ``Manifest.ignored``. Any entry that cannot be read is
    an error: nothing is skipped silently. With ``workers`` > 1 the files are hashed by that many
    threads (largest first, so that they finish together), each file still read once by one thread.
    Entries whose relative path matches an ``exclude`` glob (:func:`core.compare.exclude.is_excluded`; a
    folder with everything under it) are left out the same way and listed in ``Manifest.ignored``.
    ``observe`` (:mod:`core.compare.observe`) sees every file's bytes in the same read.
    """
    started = time.perf_counter()
    root = Path(root)
    files: dict[str, FileDigest] = {}
    dirs: set[str] = set()
    symlinks: dict[str, str] = {}
    special: set[str] = set()
    ignored: list[str] = []
    excluded: list[str] = []
    ignore = frozenset(ignore)
    todo: list[tuple[int, str, str]] = []  # (size, relative path, path) when hashing in parallel
    buf = bytearray(chunk_size)
    view = memoryview(buf)
    try:
        if not root.exists():
            raise CheckError(f"model path does not exist: {root}")
        if root.is_file():
            files[root.name] = _hash_file(str(root), buf, view, observe, root.name, root.stat().st_size)
        elif not root.is_dir():
            raise CheckError(f"model path is neither a file nor a folder: {root}")
        else:
            stack: list[tuple[str, str]] = [(str(root), "")]
            while stack:
                abs_dir, rel_dir = stack.pop()
                with os.scandir(abs_dir) as it:
                    for entry in it:
                        rel = f"{rel_dir}/{entry.name}" if rel_dir else entry.name
                        if exclude and is_excluded(rel, exclude):
                            excluded.append(rel)
                            continue
                        if entry.is_symlink():
                            symlinks[rel] = os.readlink(entry.path)
                        elif entry.is_dir(follow_symlinks=False):
                            dirs.add(rel)
                            stack.append((entry.path, rel))
                        elif entry.is_file(follow_symlinks=False):
                            if not rel_dir and entry.name in ignore:
                                ignored.append(rel)
                                continue
                            if workers > 1:
                                todo.append((entry.stat(follow_symlinks=False).st_size, rel, entry.path))
                            elif observe is None:
                                files[rel] = _hash_file(entry.path, buf, view)
                            else:
                                files[rel] = _hash_file(entry.path, buf, view, observe, rel,
                                                        entry.stat(follow_symlinks=False).st_size)
                        else:
                            special.add(rel)
            if todo:
                files.update(_hash_files(todo, workers, chunk_size, observe))
    except CheckError:
        raise
    except OSError as exc:
        raise CheckError(f"cannot read model files under {root}: {exc.strerror or exc}"
                         f"{': ' + exc.filename if exc.filename else ''}") from exc
    finally:
        view.release()
    # Excluded paths are left out like ignored ones, so a seal or a comparison never covers them.
    manifest = Manifest.build(files, dirs=dirs, symlinks=symlinks, special=special,
                              ignored=ignored + excluded)
    return ScanResult(root, manifest, manifest.total_bytes, time.perf_counter() - started,
                      excluded=sorted(excluded))


def _hash_files(todo: list[tuple[int, str, str]], workers: int, chunk_size: int,
                observe: ObserveFile | None = None) -> dict[str, FileDigest]:
    """Hash ``(size, rel, path)`` files with ``workers`` threads, each with its own buffer."""
    todo.sort(reverse=True)  # largest first: the threads end within one small file of each other
    local = threading.local()

    def one(item: tuple[int, str, str]) -> tuple[str, FileDigest]:
        if not hasattr(local, "view"):
            local.view = memoryview(bytearray(chunk_size))
        return item[1], _hash_file(item[2], local.view.obj, local.view, observe, item[1], item[0])

    with ThreadPoolExecutor(max_workers=min(workers, len(todo)), thread_name_prefix="guard-hash") as pool:
        return dict(pool.map(one, todo))


def _same_location(a: Path, b: Path) -> bool:
    try:
        return os.path.samefile(a, b)
    except OSError:
        return os.path.realpath(a) == os.path.realpath(b)


def scan_trees(paths: Iterable[Path | str], *, max_workers: int = 2, exclude: Sequence[str] = (),
               observe: Sequence[ObserveFile | None] = ()) -> list[ScanResult]:
    """Scan several trees concurrently; a location given twice (same file system object) is read once.

    Returns one :class:`ScanResult` per given path, in order. ``observe[i]``, when given, sees the
    files of ``paths[i]`` as they are read (:mod:`core.compare.observe`).
    """
    paths = [Path(p) for p in paths]
    distinct: list[Path] = []
    watchers: list[ObserveFile | None] = []
    index: list[int] = []
    for n, p in enumerate(paths):
        watcher = observe[n] if n < len(observe) else None
        for i, q in enumerate(distinct):
            if _same_location(p, q):
                index.append(i)
                watchers[i] = watchers[i] or watcher
                break
        else:
            index.append(len(distinct))
            distinct.append(p)
            watchers.append(watcher)
    if len(distinct) == 1:
        # One tree (run and registry model are one folder in open-source MLflow): hash its files
        # on every worker instead of one.
        results = [scan_tree(distinct[0], workers=max_workers, exclude=exclude, observe=watchers[0])]
    else:
        with ThreadPoolExecutor(max_workers=min(max_workers, len(distinct)),
                                thread_name_prefix="guard-scan") as pool:
            results = list(pool.map(lambda pw: scan_tree(pw[0], exclude=exclude, observe=pw[1]),
                                    zip(distinct, watchers, strict=True)))
    return [results[i] for i in index]


@dataclass
class TreeComparison:
    """Outcome of comparing two trees; ``differences`` is empty exactly when ``equal``."""

    equal: bool
    differences: list[Difference]
    left: Manifest
    right: Manifest
    bytes_compared: int
    elapsed_s: float
    ignored: list[str]
    labels: tuple[str, str]
    same_location: bool = False
    paths: tuple[str, str] = field(default=("", ""))
    #: how each side was read when streamed from a remote store (see ``ScanResult.transfer``)
    transfers: tuple[dict[str, Any] | None, dict[str, Any] | None] = (None, None)

    def to_dict(self) -> dict[str, Any]:
        """Plain-dict summary for reports (no per-file manifest)."""
        a, b = self.labels
        return {
            "equals": self.equal,
            "labels": list(self.labels),
            "differences": [d.to_dict() for d in self.differences],
            "difference_count": len(self.differences),
            a: {"path": self.paths[0], "hash": self.left.tree_digest, "file_count": self.left.file_count,
                "total_bytes": self.left.total_bytes, "ignored": list(self.left.ignored)},
            b: {"path": self.paths[1], "hash": self.right.tree_digest, "file_count": self.right.file_count,
                "total_bytes": self.right.total_bytes, "ignored": list(self.right.ignored)},
            "same_location": self.same_location,
            "bytes_compared": self.bytes_compared,
            "elapsed_s": round(self.elapsed_s, 4),
        }


def comparison_from_scans(left: ScanResult, right: ScanResult, labels: tuple[str, str],
                          elapsed_s: float) -> TreeComparison:
    """Build a :class:`TreeComparison` from two scans (the same scan twice for one location)."""
    same = left is right
    diffs = [] if same else diff_manifests(left.manifest, right.manifest, labels)
    ignored = sorted(set(left.manifest.ignored) | set(right.manifest.ignored))
    return TreeComparison(
        equal=not diffs, differences=diffs, left=left.manifest, right=right.manifest,
        bytes_compared=left.bytes_read + (0 if same else right.bytes_read), elapsed_s=elapsed_s,
        ignored=ignored, labels=labels, same_location=same, paths=(str(left.path), str(right.path)),
        transfers=(left.transfer, right.transfer))


def compare_trees(left: Path | str, right: Path | str,
                  labels: tuple[str, str] = ("run", "registry")) -> TreeComparison:
    """Compare two trees exactly: every file in every sub-folder, byte for byte via SHA-256.

    Both trees are read concurrently, each byte once. When ``left`` and ``right`` are the same
    location it is read once and reported equal (``same_location`` is set).
    """
    started = time.perf_counter()
    ls, rs = scan_trees([left, right])
    return comparison_from_scans(ls, rs, labels, time.perf_counter() - started)
