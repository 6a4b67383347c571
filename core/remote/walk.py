"""List a store that only lists one folder at a time, many folders at once.

MLflow's artifact API and most of its artifact repositories list a single folder per request. A
model with hundreds of nested folders then costs hundreds of round trips; made one after
another that is seconds, so the folders are listed by a pool of threads, breadth first.
"""

from __future__ import annotations

from collections.abc import Callable
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait

from core.remote.source import Found, Listing, RemoteFile, RetryPolicy

#: (path relative to the tree root, is_dir, size or None) for each entry of one folder
Entries = list[tuple[str, bool, int | None]]


def walk_folders(list_folder: Callable[[str], Entries], retry: RetryPolicy, workers: int,
                 what: str, found: Found | None = None) -> Listing:
    """Every file under the root, listing up to ``workers`` folders at a time.

    ``list_folder(rel)`` lists the folder ``rel`` ("" is the root) and returns its entries with
    paths relative to the root; it raises :class:`core.remote.source.BrokenTransfer` for a
    listing that may succeed when tried again. A folder with nothing in it is kept in ``dirs``,
    as a local read would. ``found`` is given each folder's files as soon as it is listed.
    """
    files: list[RemoteFile] = []
    dirs: set[str] = set()
    pending: dict[Future, str] = {}
    with ThreadPoolExecutor(max_workers=max(1, workers), thread_name_prefix="guard-list") as pool:
        def submit(rel: str) -> None:
            job = pool.submit(retry.call, lambda: list_folder(rel), f"{what}: listing '{rel or '.'}'")
            pending[job] = rel

        submit("")
        while pending:
            done, _ = wait(pending, return_when=FIRST_COMPLETED)
            for fut in done:
                pending.pop(fut)
                try:
                    entries = fut.result()
                except BaseException:
                    for other in pending:
                        other.cancel()
                    raise
                batch = []
                for rel, is_dir, size in entries:
                    if is_dir:
                        dirs.add(rel)
                        submit(rel)
                    else:
                        batch.append(RemoteFile(rel, size))
                files += batch
                if found is not None and batch:
                    # Sub-folders were submitted above: nothing pending means this batch is the last.
                    found(batch, last=not pending)
    return Listing(files=files, dirs=dirs)
