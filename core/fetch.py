"""Make a model URI available as a local folder, copying only when there is no other way.

A local path or ``file://`` URI is used in place: no copy, no extra reads. Anything else
(``mlflow-artifacts:/``, ``dbfs:/``, ``s3://``, ``models:/``, …) is downloaded with MLflow into a
fresh temporary folder created for this check alone, so leftovers of an earlier check can never
mix in; the folder is removed afterwards unless asked to keep it.
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
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path

from core.errors import CheckError
from core.registry import redact, translate


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
    if uri.startswith("models:/"):
        # MLflow resolves a registered-model URI against the process-wide registry, not the one
        # passed in: resolve it here, against the right server, to the storage it points at.
        uri = resolve_models_uri(uri, tracking_uri, registry_uri)
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
    from core.registry import make_client, registry_model_uri, resolve_version

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
    """One URI to make local, with the tracking/registry URIs that can resolve it."""

    uri: str
    tracking_uri: str | None = None
    registry_uri: str | None = None
    label: str = "model"


@contextmanager
def materialize_many(requests: Sequence[FetchRequest], scratch_root: Path | str | None = None,
                     keep: bool = False) -> Iterator[list[Fetched]]:
    """Fetch several URIs concurrently; yields one :class:`Fetched` per request, in order.

    The same URI on the same server is fetched once and shared. On exit every download is
    removed unless ``keep``; if one fetch fails, the others are cleaned up before the error
    propagates.
    """
    keys = [(r.uri, r.tracking_uri, r.registry_uri) for r in requests]
    distinct = list(dict.fromkeys(keys))
    first = {k: next(r for r, kk in zip(requests, keys, strict=True) if kk == k) for k in distinct}
    with ExitStack() as stack:
        results: dict[tuple, Fetched] = {}
        errors: list[BaseException] = []
        with ThreadPoolExecutor(max_workers=max(1, min(4, len(distinct))),
                                thread_name_prefix="guard-fetch") as pool:
            futures = {k: pool.submit(fetch, first[k].uri, scratch_root, tracking_uri=first[k].tracking_uri,
                                      registry_uri=first[k].registry_uri, label=first[k].label)
                       for k in distinct}
            for k, fut in futures.items():
                try:
                    results[k] = fut.result()
                    stack.callback(release, results[k], keep)
                except BaseException as exc:  # collected so that successful downloads are still released
                    errors.append(exc)
        if errors:
            raise errors[0]
        yield [results[k] for k in keys]
