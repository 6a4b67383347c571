"""OpenSSF model-signing bundles made from the per-file SHA-256 digests the core already computed.

A model streamed from a remote store is hashed while it is read and never lands on disk, so it
cannot be handed to ``model_signing sign``. It does not need to be: model-signing's ``files``
serialization is nothing but (relative path, SHA-256) pairs plus the hashing settings, and the
core's :class:`~core.seal.manifest.Manifest` holds exactly those pairs. This module builds
model-signing's own manifest and payload from them, with the settings ``model_signing sign key``
uses on a folder (SHA-256 per file, no symbolic links, git files ignored), so the bundle it
writes verifies with ``model_signing verify key`` on the files once they are on disk.

The core manifest stays the complete record (empty folders, symbolic links, special files and the
paths model-signing ignores are covered by the identity attestation, see :mod:`core.seal.attestation`);
the bundle covers every regular file a model-signing verifier looks at.
"""

from __future__ import annotations

import hashlib
import pathlib
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from model_signing import manifest as ms_manifest
from model_signing._hashing import hashing as ms_hashing
from model_signing._signing import signing as ms_signing

from core.compare.tree import IGNORED_FILES
from core.errors import CheckError, SealInvalid
from core.seal.keys import SigningKey, TrustedKey
from core.seal.manifest import Manifest
from core.seal.sigstore_bundle import parse_bundle, sign_model_signing_payload, verify_bundle_signature

# What model-signing's command line leaves out of a folder unless told otherwise (--ignore-git-paths).
GIT_PATHS = (".git", ".gitattributes", ".github", ".gitignore")
# Recorded in the bundle as ignored, so a verifier skips them too: the git files above and the
# files MLflow adds around a downloaded model (``registered_model_meta``).
BUNDLE_IGNORED_PATHS = tuple(sorted({*GIT_PATHS, *IGNORED_FILES}))
BUNDLE_WHAT = "the model-signing bundle"


def _is_ignored(path: str, ignored: Sequence[str]) -> bool:
    return any(path == p or path.startswith(p + "/") for p in ignored)


def signed_files(manifest: Manifest) -> dict[str, str]:
    """Relative path -> hex SHA-256 of every regular file the bundle covers (ignored paths left out)."""
    if manifest.truncated:
        raise CheckError("a digest-only manifest has no per-file digests to sign")
    return {p: d.sha256 for p, d in sorted(manifest.files.items())
            if not _is_ignored(p, BUNDLE_IGNORED_PATHS)}


def model_signing_manifest(manifest: Manifest, model_name: str) -> ms_manifest.Manifest:
    """model-signing's manifest for the files of ``manifest``, as ``model_signing sign key`` would hash them.

    ``model_name`` only names the bundle's subject (model-signing treats it as informative).
    """
    items = []
    for path, sha256 in signed_files(manifest).items():
        try:
            path.encode("utf-8")
        except UnicodeEncodeError:
            raise CheckError(f"cannot sign a file whose name is not UTF-8: {path!r}") from None
        digest = ms_hashing.Digest("sha256", bytes.fromhex(sha256))
        items.append(ms_manifest.FileManifestItem(path=pathlib.PurePosixPath(path), digest=digest))
    serialization = ms_manifest._FileSerialization(
        "sha256", allow_symlinks=False, ignore_paths=[pathlib.Path(p) for p in BUNDLE_IGNORED_PATHS])
    return ms_manifest.Manifest(model_name, items, serialization)


def sign_bundle(manifest: Manifest, key: SigningKey, model_name: str) -> bytes:
    """The model-signing bundle (Sigstore bundle JSON) of ``manifest``'s files, signed with ``key``."""
    payload = ms_signing.Payload(model_signing_manifest(manifest, model_name))
    return sign_model_signing_payload(payload, key)


@dataclass(frozen=True)
class VerifiedBundle:
    """A model-signing bundle whose signature verified with a trusted key."""

    key: TrustedKey
    files: dict[str, str]  # relative path -> hex SHA-256, as signed
    root_digest: str  # the statement subject's digest: SHA-256 over the per-file digests
    payload_sha256: str  # SHA-256 of the signed statement bytes; the attestation names it
    serialization: dict[str, Any]


def payload_sha256(payload: bytes) -> str:
    """Hex SHA-256 of a signed statement's bytes (how the attestation names its bundle)."""
    return hashlib.sha256(payload).hexdigest()


def verify_bundle(data: bytes, trusted: Sequence[TrustedKey]) -> VerifiedBundle:
    """Verify a model-signing bundle's signature and read its signed per-file digests.

    Uses model-signing's verifier and its payload parser (which also checks the root digest
    against the resources). Raises :class:`~core.errors.SealCorrupt` for an unreadable bundle and
    :class:`~core.errors.SealInvalid` for an untrusted key, a bad signature or a payload that is
    not a SHA-256 ``files`` serialization. File contents are not read here.
    """
    envelope = verify_bundle_signature(parse_bundle(data, BUNDLE_WHAT), trusted, BUNDLE_WHAT)
    try:
        signed = ms_signing.dsse_payload_to_manifest(envelope.statement)
    except (ValueError, KeyError, TypeError) as exc:
        raise SealInvalid(f"{BUNDLE_WHAT}: its signed payload is not a model-signing manifest: "
                          f"{exc}") from None
    serialization = dict(signed.serialization_type)
    if serialization.get("method") != "files" or serialization.get("hash_type") != "sha256":
        raise SealInvalid(f"{BUNDLE_WHAT}: unexpected serialization {serialization} (expected files, sha256)")
    files: dict[str, str] = {}
    for rd in signed.resource_descriptors():
        if rd.digest.algorithm != "sha256":
            raise SealInvalid(f"{BUNDLE_WHAT}: {rd.identifier} is hashed with {rd.digest.algorithm}, "
                              "not sha256")
        files[rd.identifier] = rd.digest.digest_hex
    root = envelope.statement["subject"][0]["digest"]["sha256"]
    return VerifiedBundle(envelope.key, files, root, payload_sha256(envelope.payload), serialization)
