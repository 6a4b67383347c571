"""Read the model trees of a check, from wherever they are, copying only when asked to.

:func:`read_trees` is what a check calls. A local path or ``file://`` URI is read in place: no
copy, no extra reads. A remote tree (``mlflow-artifacts:/``, ``s3://``, ``dbfs:/``, …; a
``models:/`` URI is first resolved to its storage against the right server) is streamed and
hashed as it arrives (:mod:`core.remote`), with no scratch copy; with ``keep`` its files are also
written into a fresh folder created for this check alone, so leftovers of an earlier check can
never mix in. :func:`fetch` / :func:`materialize` download a URI into such a folder with MLflow,
for callers that need the files themselves.
"""

from __future__ import annotations

import os
import re
import shutil
import tempfile
import urllib.parse
import urllib.request
from collections.abc import Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath

from core.compare.exclude import is_excluded
from core.compare.observe import ObserveFile
from core.compare.tree import ScanResult, scan_trees
from core.errors import CheckError, redact
from core.registry.error_mapping import translate
from core.remote.progress import NoProgress, TransferProgress


@dataclass
class Fetched:
    """A URI made local: ``path`` to compare, ``scratch`` folder we created (None when in place)."""

    uri: str
    path: Path
    scratch: Path | None

    @property
    def downloaded(self) -> bool:
        """True when the files were downloaded (not read in place)."""
        return self.scratch is not None


def local_path(uri: str) -> Path | None:
    """The local path ``uri`` names (plain path or ``file://``), or None for a remote URI."""
    parsed = urllib.parse.urlparse(uri)
    if parsed.scheme == "file":
        if parsed.netloc not in ("", "localhost"):
            return None
        return Path(urllib.request.url2pathname(parsed.path))
    # One-letter schemes are Windows drive letters, not URI schemes.
    if parsed.scheme == "" or (len(parsed.scheme) == 1 and os.name == "nt"):
        return Path(uri)
    return None


def fetch(uri: str, scratch_root: Path | str | None = None, *, tracking_uri: str | None = None,
          registry_uri: str | None = None, label: str = "model") -> Fetched:
    """Make ``uri`` local: in place when it already is, else download into a fresh scratch folder.

    The caller owns the scratch folder (see :func:`release`). Errors are core errors naming
    ``label`` and the (redacted) URI.
    """
    uri = _resolve(FetchRequest(uri, tracking_uri, registry_uri, label))
    path = local_path(uri)
    if path is not None:
        if not path.exists():
            raise CheckError(f"{label} files not found at {path}")
        return Fetched(uri, path, None)
    if scratch_root is not None:
        Path(scratch_root).mkdir(parents=True, exist_ok=True)
    scratch = Path(tempfile.mkdtemp(prefix=f"guard-{label.replace(' ', '_')}-",
                                    dir=str(scratch_root) if scratch_root is not None else None))
    try:
        from mlflow.artifacts import download_artifacts
        from mlflow.utils.uri import add_databricks_profile_info_to_artifact_uri

        # A dbfs:/ URI carries no workspace: bind it to the tracking URI's profile, or a second
        # workspace (compare-model-versions) would be read with the default profile's credentials.
        remote = add_databricks_profile_info_to_artifact_uri(uri, tracking_uri)
        got = download_artifacts(artifact_uri=remote, dst_path=str(scratch / "download"),
                                 tracking_uri=tracking_uri, registry_uri=registry_uri)
        return Fetched(uri, Path(got), scratch)
    except BaseException as exc:
        shutil.rmtree(scratch, ignore_errors=True)
        if isinstance(exc, Exception):
            raise translate(exc, f"downloading the {label} from {redact(uri)}") from exc
        raise


_LOGGED_MODEL_URI = re.compile(r"^models:/(?P<id>m-[0-9a-f]+)(?:/(?P<path>.*))?$")
_MODELS_URI = re.compile(r"^models:/(?P<name>[^/@]+)(?:@(?P<alias>[^/]+)|/(?P<spec>[^/]+))"
                         r"(?:/(?P<path>.*))?$")


def resolve_models_uri(uri: str, tracking_uri: str | None = None, registry_uri: str | None = None) -> str:
    """The storage URI behind ``models:/<name>/<version|stage>[/path]``, ``models:/<name>@<alias>``
    or ``models:/m-<id>`` (a logged model), resolved with a client for the given servers."""
    from core.registry.access import make_client, registry_model_uri, resolve_version

    logged, m = _LOGGED_MODEL_URI.match(uri), _MODELS_URI.match(uri)
    if not (logged or m):
        raise CheckError(f"not a model URI that can be resolved: {uri}")
    client = make_client(tracking_uri, registry_uri)
    try:
        if logged:
            base, sub = client.get_logged_model(logged.group("id")).artifact_location, logged.group("path")
        else:
            alias, spec, sub = m.group("alias"), m.group("spec"), m.group("path")
            mv = resolve_version(client, m.group("name"), "@" + alias if alias is not None else spec)
            # On Databricks this stays models:/name/<number>: the copy is read through the
            # registry's own API (core.remote.databricks_store), never via its storage URI.
            base = registry_model_uri(client, mv)
    except CheckError:
        raise
    except Exception as exc:
        raise translate(exc, f"resolving {uri}") from exc
    return base.rstrip("/") + ("/" + sub if sub else "")


def release(fetched: Fetched, keep: bool = False) -> None:
    """Remove the scratch folder of a download (nothing for an in-place path) unless ``keep``."""
    if fetched.scratch is not None and not keep:
        shutil.rmtree(fetched.scratch, ignore_errors=True)


@contextmanager
def materialize(uri: str, scratch_root: Path | str | None = None, keep: bool = False,
                tracking_uri: str | None = None, registry_uri: str | None = None) -> Iterator[Path]:
    """Context manager yielding a local path for ``uri``; a download is removed on exit unless ``keep``."""
    fetched = fetch(uri, scratch_root, tracking_uri=tracking_uri, registry_uri=registry_uri)
    try:
        yield fetched.path
    finally:
        release(fetched, keep)


@dataclass(frozen=True)
class FetchRequest:
    """One model tree to read, with the tracking/registry URIs that can resolve it.

    ``subpath`` names a path inside the model to read instead of the whole tree (a native model).
    ``observe`` sees the tree's files as they are read (:mod:`core.compare.observe`).
    """

    uri: str
    tracking_uri: str | None = None
    registry_uri: str | None = None
    label: str = "model"
    subpath: str | None = None
    observe: ObserveFile | None = field(default=None, compare=False, hash=False)


@dataclass
class ReadTree:
    """A tree read for a check: its :class:`core.compare.tree.ScanResult`, and where it was read from.

    ``path`` is the local folder read (in place, or the kept copy of a remote tree) or, for a tree
    streamed without keeping a copy, its redacted URI. ``scratch`` is the kept copy's folder.
    """

    uri: str
    path: Path | str
    scan: ScanResult
    scratch: Path | None = None
    streamed: bool = False

    @property
    def downloaded(self) -> bool:
        """True when the files came from a remote store."""
        return self.streamed or self.scratch is not None


def _local_target(req: FetchRequest, uri: str) -> Path | None:
    path = local_path(uri)
    if path is None:
        return None
    if not path.exists():
        raise CheckError(f"{req.label} files not found at {path}")
    if req.subpath:
        target = path.joinpath(*PurePosixPath(req.subpath).parts)
        if not target.exists() and not target.is_symlink():
            raise CheckError(f"'{req.subpath}' not found in the {req.label} at {path}")
        return target
    return path


@contextmanager
def read_trees(requests: Sequence[FetchRequest], scratch_root: Path | str | None = None, keep: bool = False,
               *, concurrency: int | None = None, progress: TransferProgress | None = None,
               exclude: Sequence[str] = ()) -> Iterator[list[ReadTree]]:
    """Read several model trees for one check; yields one :class:`ReadTree` per request, in order.

    Local trees are read in place (:func:`core.compare.tree.scan_trees`); remote ones are streamed and
    hashed without touching the disk (:mod:`core.remote`), all through one pool of
    ``concurrency`` transfers (default: per store kind). With ``keep`` a remote tree's files are
    also written, as they stream, into a fresh folder under ``scratch_root`` that is left in
    place. The same URI on the same server is read once and shared. Paths matching an ``exclude``
    glob (:mod:`core.compare.exclude`) are left out of every tree, local or remote, and named in
    ``ScanResult.excluded``.
    """
    from core.remote import open_source
    from core.remote.hashing import RemoteTree, read_remote_trees
    from core.remote.source import ScratchMeter

    keys = [(r.uri, r.tracking_uri, r.registry_uri, r.subpath) for r in requests]
    distinct = list(dict.fromkeys(keys))
    first = {k: next(r for r, kk in zip(requests, keys, strict=True) if kk == k) for k in distinct}
    # A tree read once for two requests is observed for whichever asked.
    watch = {k: next((r.observe for r, kk in zip(requests, keys, strict=True) if kk == k and r.observe), None)
             for k in distinct}
    progress = progress or NoProgress()
    with ThreadPoolExecutor(max_workers=max(1, min(4, len(distinct))),
                            thread_name_prefix="guard-resolve") as pool:
        resolved = dict(zip(distinct, pool.map(lambda k: _resolve(first[k]), distinct), strict=True))
    local = {k: t for k in distinct if (t := _local_target(first[k], resolved[k])) is not None}
    remote = [k for k in distinct if k not in local]
    if scratch_root is not None and remote:
        Path(scratch_root).mkdir(parents=True, exist_ok=True)
    meter = ScratchMeter()
    trees, sinks = [], {}
    for k in remote:
        req, uri = first[k], resolved[k]
        full = uri.rstrip("/") + "/" + req.subpath if req.subpath else uri
        if keep:
            sinks[k] = Path(tempfile.mkdtemp(prefix=f"guard-{req.label.replace(' ', '_')}-",
                                             dir=str(scratch_root) if scratch_root is not None else None))
        try:
            source = open_source(full, tracking_uri=req.tracking_uri, registry_uri=req.registry_uri,
                                 scratch_root=scratch_root, meter=meter, concurrency=concurrency)
        except CheckError:
            raise
        except Exception as exc:
            raise translate(exc, f"reading the {req.label} from {redact(full)}") from exc
        trees.append(RemoteTree(source, req.label, sink=sinks[k] / "download" if keep else None,
                                exclude=(lambda rel: is_excluded(rel, exclude)) if exclude else None,
                                observe=watch[k]))
    results: dict[tuple, ReadTree] = {}
    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="guard-local") as pool:
        local_keys = list(local)
        local_job = (pool.submit(scan_trees, [local[k] for k in local_keys], exclude=exclude,
                                 observe=[watch[k] for k in local_keys])
                     if local_keys else None)
        try:
            scans = read_remote_trees(trees, concurrency=concurrency, progress=progress, meter=meter)
        except CheckError:
            raise
        except Exception as exc:
            raise translate(exc, "reading the models") from exc
        for k, scan in zip(remote, scans, strict=True):
            kept = sinks[k] / "download" if k in sinks else None
            results[k] = ReadTree(resolved[k], kept if kept is not None else scan.path, scan,
                                  scratch=sinks.get(k), streamed=True)
        if local_job is not None:
            for k, scan in zip(local_keys, local_job.result(), strict=True):
                _report_local(progress, scan)
                results[k] = ReadTree(resolved[k], local[k], scan)
    yield [results[k] for k in keys]


def _resolve(req: FetchRequest) -> str:
    if req.uri.startswith("models:/"):
        # MLflow resolves a registered-model URI against the process-wide registry, not the one
        # passed in: resolve it here, against the right server, to the storage it points at.
        return resolve_models_uri(req.uri, req.tracking_uri, req.registry_uri)
    return req.uri


def _report_local(progress: TransferProgress, scan: ScanResult) -> None:
    """Local trees are read too fast to show progress; their bytes still count as verified."""
    files = scan.manifest.files.values()
    progress.planned(len(files), scan.bytes_read)
    progress.transferred(scan.bytes_read)
    for f in files:
        progress.verified(f.size)
