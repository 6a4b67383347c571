"""Any other artifact URI (``dbfs:/``, ``gs://`` or Azure without their client, ``hdfs:``, …): MLflow's
own artifact repository, one file at a time.

The repository can only download to a file, so each file is downloaded into a folder of its own
under the scratch root, hashed, and deleted at once: disk use is bounded by the files in flight
(at most ``concurrency`` files), never by the model. Folders are listed concurrently with the
repository's per-folder ``list_artifacts``.
"""

from __future__ import annotations

import os
import posixpath
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from core.errors import CheckError, redact
from core.registry.error_mapping import dependency_unavailable, translate
from core.remote.source import BrokenTransfer, Found, Listing, RemoteFile, RetryPolicy, ScratchMeter
from core.remote.walk import Entries, walk_folders

CHUNK_SIZE = 1 << 20
DEFAULT_CONCURRENCY = 4


class MlflowRepositorySource:
    """A tree read through ``mlflow.store.artifact.artifact_repository_registry`` (see above)."""

    default_concurrency = DEFAULT_CONCURRENCY

    def __init__(self, uri: str, *, tracking_uri: str | None = None, registry_uri: str | None = None,
                 scratch_root: Path | str | None = None, meter: ScratchMeter | None = None) -> None:
        from mlflow.store.artifact.artifact_repository_registry import get_artifact_repository
        from mlflow.utils.uri import add_databricks_profile_info_to_artifact_uri

        self.display = redact(uri) or uri
        # A dbfs:/ URI carries no workspace: bind it to the tracking URI's profile, or a second
        # workspace (compare-model-versions) would be read with the default profile's credentials.
        remote = add_databricks_profile_info_to_artifact_uri(uri, tracking_uri)
        try:
            self._repo = get_artifact_repository(remote, tracking_uri=tracking_uri, registry_uri=registry_uri)
        except Exception as exc:
            raise translate(exc, f"opening {self.display}") from exc
        self._scratch_root = str(scratch_root) if scratch_root is not None else None
        self._meter = meter or ScratchMeter()

    def _guard(self, what: str, fn, *args):  # noqa: ANN001, ANN202 - a thin wrapper
        try:
            return fn(*args)
        except CheckError:
            raise
        except Exception as exc:
            if dependency_unavailable(exc):
                raise BrokenTransfer(f"{what}: {exc}") from exc
            raise translate(exc, f"{what} {self.display}") from exc

    def _list_folder(self, rel: str) -> Entries:
        infos = self._guard("listing", self._repo.list_artifacts, rel or None)
        out: Entries = []
        for info in infos:
            # Repositories return paths relative to their root, folder included.
            path = info.path if not rel or info.path.startswith(rel + "/") else posixpath.join(rel, info.path)
            out.append((path, bool(info.is_dir), info.file_size))
        return out

    def list_files(self, retry: RetryPolicy, found: Found | None = None) -> Listing:
        """Every file under the tree, folders listed concurrently; one file when the URI names a file."""
        listing = walk_folders(self._list_folder, retry, 8, self.display, found)
        if listing.files or listing.dirs:
            return listing
        # Repositories list a file URI as empty: it may be one file. Try to read it as such.
        name = posixpath.basename(self._repo.artifact_uri.rstrip("/"))
        return Listing(files=[RemoteFile(name, None, key=".")], single_file=True)

    @contextmanager
    def open(self, item: RemoteFile, retry: RetryPolicy) -> Iterator[Iterator[bytes]]:
        """Download one file into its own scratch folder, yield its bytes, delete it."""
        folder = tempfile.mkdtemp(prefix="guard-file-", dir=self._scratch_root)
        landed = 0
        try:
            if item.key == ".":  # the repository's URI is the file itself: download "everything"
                local = self._guard(f"reading {item.relpath}", self._download_all, folder)
            else:
                local = self._guard(f"reading {item.relpath}", self._repo.download_artifacts,
                                    item.relpath, folder)
            if os.path.isdir(local):
                raise CheckError(f"no model files found at {self.display}")
            landed = os.path.getsize(local)
            self._meter.add(landed)
            yield _read_file(local)
        finally:
            shutil.rmtree(folder, ignore_errors=True)
            self._meter.remove(landed)

    def _download_all(self, folder: str) -> str:
        return self._repo.download_artifacts("", folder)


def _read_file(path: str) -> Iterator[bytes]:
    with open(path, "rb", buffering=0) as f:
        while chunk := f.read(CHUNK_SIZE):
            yield chunk
