"""The seal store: where signed seals live, written by the guard alone, once per model version.

A seal is found by the version's identity (registry, model, version) and nothing else: its
place is derived from that identity, never read from the version's tags, so whoever can rewrite
tags cannot point the guard at another seal. Layout, under the store's root::

    v1/<registry>/<model>/<version>/model.sig         the OpenSSF model-signing bundle
    v1/<registry>/<model>/<version>/attestation.json  the identity attestation

Each name is percent-encoded (only ``A-Z a-z 0-9 _ . -`` stay as they are, a leading dot is
encoded, so no name can climb out of its folder or hide), and a name whose encoding is longer
than 150 characters is cut and followed by ``~`` and 32 hex digits of its SHA-256.

The root is a folder (``/var/lib/guard/seals``, ``file:///…``), any artifact URI MLflow can
write (``s3://bucket/prefix``, through MLflow's artifact repository API), or a SQL database
(``sqlite:///…``, ``postgresql://…``: :mod:`core.seal.sql_store`, one row per seal). A seal is never
replaced: writing where the attestation already exists raises :class:`SealExistsError`. In a
folder both files appear at once (one directory rename); in an artifact store the attestation is
uploaded last and marks the seal complete, so an interrupted upload leaves no seal.
"""

from __future__ import annotations

import errno
import hashlib
import os
import shutil
import tempfile
import urllib.parse
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from core.errors import CheckError, SealExistsError, TransientError, redact
from core.registry.error_mapping import dependency_unavailable
from core.seal.attestation import SealIdentity
from core.seal.locations import is_local_folder, is_sql_uri

LAYOUT_VERSION = "v1"
BUNDLE_FILE = "model.sig"
ATTESTATION_FILE = "attestation.json"
#: Prefix of a folder store's bundle location on a version: a path relative to ``GUARD_SEAL_STORE``.
FOLDER_PUBLIC_SCHEME = "seal-store:"
_MAX_COMPONENT = 150
# botocore's names for "the endpoint did not answer" (matched by name: no import of botocore here).
_UNREACHABLE = {"EndpointConnectionError", "ConnectTimeoutError", "ReadTimeoutError", "ConnectionClosedError"}
_TRANSIENT_ERRNOS = {errno.EIO, errno.ETIMEDOUT, errno.EAGAIN, errno.ESTALE, errno.ENOTCONN, errno.EHOSTDOWN}


def encode_component(name: str) -> str:
    """One path component for ``name``: percent-encoded, never ``.``/``..``/hidden, bounded in length."""
    encoded = urllib.parse.quote(name, safe="", errors="surrogateescape").replace("~", "%7E")
    if encoded.startswith("."):
        encoded = "%2E" + encoded[1:]
    if len(encoded) > _MAX_COMPONENT:
        digest = hashlib.sha256(name.encode("utf-8", "surrogateescape")).hexdigest()[:32]
        encoded = encoded[:_MAX_COMPONENT - 33] + "~" + digest
    return encoded


def seal_relative_dir(identity: SealIdentity) -> str:
    """``v1/<registry>/<model>/<version>``: the folder of one version's seal, relative to the root."""
    return "/".join([LAYOUT_VERSION, encode_component(identity.registry), encode_component(identity.model),
                     encode_component(identity.version)])


@dataclass(frozen=True)
class StoredSeal:
    """The two files of a signed seal, as bytes."""

    bundle: bytes
    attestation: bytes


class SealStore(Protocol):
    """Where signed seals are kept; see the module docstring for the layout and the rules."""

    uri: str

    def location(self, identity: SealIdentity) -> str:
        """Folder or URI holding ``identity``'s seal (for reports and the bundle-location tag)."""
        ...

    def bundle_location(self, identity: SealIdentity) -> str:
        """Where ``identity``'s model-signing bundle (``model.sig``) is, as the version's
        ``validation.seal_bundle`` tag shows it: never a path of the guard's host nor a credential."""
        ...

    def read(self, identity: SealIdentity) -> StoredSeal | None:
        """The seal, or None when there is none. An unreachable store raises ``TransientError``."""
        ...

    def write(self, identity: SealIdentity, seal: StoredSeal) -> str:
        """Store a new seal and return its location; ``SealExistsError`` if one is already there."""
        ...


def _os_error(exc: OSError, store: str, doing: str) -> CheckError:
    reason = f"{exc.strerror or exc}{': ' + str(exc.filename) if exc.filename else ''}"
    if exc.errno in (errno.EROFS, errno.EACCES, errno.EPERM):
        return CheckError(f"seal store {store} is not writable ({doing}): {reason}")
    if exc.errno in _TRANSIENT_ERRNOS:
        return TransientError(f"seal store {store} is unavailable ({doing}): {reason}")
    return CheckError(f"seal store {store}: {doing} failed: {reason}")


class FolderSealStore:
    """Seals in a local (or mounted) folder. The root must exist unless ``create`` is set: a
    missing root (an unmounted volume) is an error, never an empty store that invites re-sealing."""

    def __init__(self, root: Path | str, *, create: bool = False) -> None:
        self.root = Path(root)
        self.uri = str(self.root)
        if create:
            try:
                self.root.mkdir(parents=True, exist_ok=True)
            except OSError as exc:
                raise _os_error(exc, self.uri, "creating its folder") from exc

    def _check_root(self) -> None:
        if not self.root.is_dir():
            raise TransientError(f"seal store folder {self.root} does not exist "
                                 "(not mounted, or never created)")

    def location(self, identity: SealIdentity) -> str:  # noqa: D102 - see SealStore
        return str(self.root / seal_relative_dir(identity))

    def bundle_location(self, identity: SealIdentity) -> str:  # noqa: D102 - see SealStore
        # Relative to the store's root (GUARD_SEAL_STORE): the host's own path stays off the version.
        return f"{FOLDER_PUBLIC_SCHEME}{seal_relative_dir(identity)}/{BUNDLE_FILE}"

    def read(self, identity: SealIdentity) -> StoredSeal | None:  # noqa: D102 - see SealStore
        self._check_root()
        folder = self.root / seal_relative_dir(identity)
        try:
            attestation = (folder / ATTESTATION_FILE).read_bytes()
        except FileNotFoundError:
            return None
        except OSError as exc:
            raise _os_error(exc, self.uri, "reading a seal") from exc
        try:
            bundle = (folder / BUNDLE_FILE).read_bytes()
        except FileNotFoundError:
            bundle = b""  # reported as an unreadable bundle by the verifier
        except OSError as exc:
            raise _os_error(exc, self.uri, "reading a seal") from exc
        return StoredSeal(bundle, attestation)

    def write(self, identity: SealIdentity, seal: StoredSeal) -> str:  # noqa: D102 - see SealStore
        self._check_root()
        final = self.root / seal_relative_dir(identity)
        if (final / ATTESTATION_FILE).exists():
            raise SealExistsError(f"{identity.describe()} already has a signed seal at {final}: "
                                  "seals are written once and never replaced")
        staging = None
        try:
            final.parent.mkdir(parents=True, exist_ok=True)
            staging = Path(tempfile.mkdtemp(prefix=".staging-", dir=final.parent))
            for name, data in ((BUNDLE_FILE, seal.bundle), (ATTESTATION_FILE, seal.attestation)):
                with open(staging / name, "wb") as f:
                    f.write(data)
                    f.flush()
                    os.fsync(f.fileno())
            staging.chmod(0o755)
            # One rename makes both files appear together; it fails if the folder is not empty,
            # so two writers racing cannot both win.
            os.rename(staging, final)
            staging = None
        except OSError as exc:
            if exc.errno in (errno.EEXIST, errno.ENOTEMPTY):
                raise SealExistsError(f"{identity.describe()} already has a signed seal at {final}: "
                                      "seals are written once and never replaced") from None
            raise _os_error(exc, self.uri, "writing a seal") from exc
        finally:
            if staging is not None:
                shutil.rmtree(staging, ignore_errors=True)
        return str(final)


def _artifact_error(exc: BaseException, store: str, doing: str) -> CheckError:
    if isinstance(exc, CheckError):
        return exc
    text = (str(exc).strip().splitlines() or [type(exc).__name__])[0][:300]
    names = {c.__name__ for c in type(exc).__mro__}
    if names & _UNREACHABLE or dependency_unavailable(exc):
        return TransientError(f"seal store {store} is unreachable ({doing}): {text}")
    if "AccessDenied" in text or "Forbidden" in text or "403" in text:
        return CheckError(f"seal store {store} refuses access with these credentials ({doing}): {text}")
    return CheckError(f"seal store {store}: {doing} failed: {text}")


class ArtifactSealStore:
    """Seals under an artifact URI MLflow can write (``s3://…`` and the others MLflow supports).

    Credentials and endpoints are MLflow's and boto3's own (``MLFLOW_S3_ENDPOINT_URL``, ``AWS_*``).
    """

    def __init__(self, uri: str) -> None:
        from mlflow.store.artifact.artifact_repository_registry import get_artifact_repository

        self.uri = uri.rstrip("/")
        self._shown = redact(self.uri) or self.uri
        try:
            self._repo = get_artifact_repository(self.uri)
        except Exception as exc:  # noqa: BLE001 - an unknown scheme or a bad URI
            raise _artifact_error(exc, self._shown, "opening it") from exc

    def location(self, identity: SealIdentity) -> str:  # noqa: D102 - see SealStore
        return f"{self._shown}/{seal_relative_dir(identity)}"

    def bundle_location(self, identity: SealIdentity) -> str:  # noqa: D102 - see SealStore
        return f"{self.location(identity)}/{BUNDLE_FILE}"

    def _names(self, rel: str) -> set[str]:
        try:
            return {Path(f.path).name for f in self._repo.list_artifacts(rel) if not f.is_dir}
        except Exception as exc:  # noqa: BLE001 - classified below
            raise _artifact_error(exc, self._shown, "listing a seal") from exc

    def read(self, identity: SealIdentity) -> StoredSeal | None:  # noqa: D102 - see SealStore
        rel = seal_relative_dir(identity)
        names = self._names(rel)
        if ATTESTATION_FILE not in names:
            return None
        with tempfile.TemporaryDirectory(prefix="guard-seal-") as tmp:
            data = {}
            for name in (BUNDLE_FILE, ATTESTATION_FILE):
                if name not in names:
                    data[name] = b""
                    continue
                try:
                    local = self._repo.download_artifacts(f"{rel}/{name}", tmp)
                    data[name] = Path(local).read_bytes()
                except Exception as exc:  # noqa: BLE001 - classified below
                    raise _artifact_error(exc, self._shown, "reading a seal") from exc
        return StoredSeal(data[BUNDLE_FILE], data[ATTESTATION_FILE])

    def write(self, identity: SealIdentity, seal: StoredSeal) -> str:  # noqa: D102 - see SealStore
        rel = seal_relative_dir(identity)
        if ATTESTATION_FILE in self._names(rel):
            raise SealExistsError(f"{identity.describe()} already has a signed seal at "
                                  f"{self.location(identity)}: seals are written once and never replaced")
        with tempfile.TemporaryDirectory(prefix="guard-seal-") as tmp:
            # The attestation goes last: until it is there, the version has no seal.
            for name, content in ((BUNDLE_FILE, seal.bundle), (ATTESTATION_FILE, seal.attestation)):
                local = Path(tmp) / name
                local.write_bytes(content)
                try:
                    self._repo.log_artifact(str(local), rel)
                except Exception as exc:  # noqa: BLE001 - classified below
                    raise _artifact_error(exc, self._shown, "writing a seal") from exc
        return self.location(identity)


def open_seal_store(location: str | Path, *, create: bool = False) -> SealStore:
    """The seal store at ``location``: a folder path, a ``file://`` URI, a SQL database URI
    (``sqlite:///…``, ``postgresql://…``), or another artifact URI.

    ``create`` makes a missing folder root (the default store under the data folder); without it a
    missing folder is an error when the store is used.
    """
    text = str(location)
    parts = urllib.parse.urlsplit(text)
    if is_local_folder(location):
        path = urllib.parse.unquote(parts.path) if parts.scheme == "file" else text
        return FolderSealStore(path, create=create)
    if is_sql_uri(text):
        from core.seal.sql_store import SqlSealStore

        return SqlSealStore(text)
    return ArtifactSealStore(text)
