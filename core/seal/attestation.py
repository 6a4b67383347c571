"""The identity attestation of a signed seal: which model version the signed files belong to.

model-signing's predicate names the files and their digests but not the model version they
belong to, so on its own a bundle of version 2 would verify version 3's files just as well if
someone copied version 2's files and seal over. The attestation closes that: an in-toto v1
statement, DSSE-signed with the same key into the same kind of Sigstore bundle, whose subject is
the core tree digest and whose predicate binds

- the version's identity: registry, model name, version;
- where it came from: run id and source;
- what was sealed: the tree digest, the complete core manifest (sizes, folders, symbolic links:
  everything the per-file comparison needs) and the SHA-256 of the model-signing bundle's signed
  statement, so the attestation names exactly one bundle;
- when: ``sealed_at`` (ISO-8601 UTC);
- how, when it was not at registration: ``note`` (for example ``sealed on first sight (backfill)``: the
  files were trusted as found, long after the version was created). Absent from registration-time seals.
"""

from __future__ import annotations

import json
import re
import urllib.parse
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from core.errors import CheckError, SealInvalid
from core.seal.keys import SigningKey, TrustedKey
from core.seal.manifest import Manifest
from core.seal.sigstore_bundle import (
    IN_TOTO_STATEMENT_TYPE,
    parse_bundle,
    sign_statement,
    verify_bundle_signature,
)

PREDICATE_TYPE = "https://mlflow-version-guard/seal-attestation/v1"
ATTESTATION_WHAT = "the identity attestation"
_HEX64 = re.compile(r"[0-9a-f]{64}")


def _normalized_url(uri: str) -> str:
    parts = urllib.parse.urlsplit(uri)
    host = (parts.hostname or "").lower()
    netloc = f"{host}:{parts.port}" if parts.port else host
    return urllib.parse.urlunsplit((parts.scheme.lower(), netloc, parts.path.rstrip("/"), "", ""))


def registry_identity(registry_uri: str, *, workspace_host: str | None = None) -> str:
    """A stable, credential-free name for a registry, from the URI used to reach it.

    User information, query and fragment are dropped, scheme and host lower-cased, a trailing
    slash removed: ``https://user:tok@Mlflow.example.com/`` -> ``https://mlflow.example.com``.
    A Databricks registry (``databricks``, ``databricks-uc``, ``databricks://profile``) is named
    by its kind and its workspace, ``workspace_host`` (the resolved ``DATABRICKS_HOST``), which is
    then required: ``databricks-uc+https://dbc-1.cloud.databricks.com``. The worker and
    ``check-model-version`` must derive it from the same registry, or the seal is not found.
    """
    uri = (registry_uri or "").strip()
    if not uri:
        raise CheckError("no registry URI: a signed seal is looked up by registry, model and version")
    scheme = urllib.parse.urlsplit(uri).scheme.lower() if "://" in uri else uri.lower()
    if scheme in ("databricks", "databricks-uc"):
        if not workspace_host:
            raise CheckError(f"registry {scheme}: the Databricks workspace host is needed to name its seals")
        host = workspace_host if "://" in workspace_host else f"https://{workspace_host}"
        return f"{scheme}+{_normalized_url(host)}"
    if not urllib.parse.urlsplit(uri).netloc:
        return uri.rstrip("/")
    return _normalized_url(uri)


@dataclass(frozen=True)
class SealIdentity:
    """Which model version a seal belongs to: ``registry`` (see :func:`registry_identity`), model, version."""

    registry: str
    model: str
    version: str

    def __post_init__(self) -> None:
        version = str(self.version).strip()
        # "03" and "3" are the same version number to a registry: one seal, one path.
        object.__setattr__(self, "version", str(int(version)) if version.isdigit() else version)
        for name in ("registry", "model", "version"):
            if not isinstance(getattr(self, name), str) or not getattr(self, name):
                raise CheckError(f"a seal identity needs a non-empty {name}")

    def describe(self) -> str:
        """``model 'm' version 3 (registry R)``, for messages."""
        return f"model '{self.model}' version {self.version} (registry {self.registry})"


@dataclass(frozen=True)
class Attestation:
    """What the identity attestation states (see the module docstring)."""

    identity: SealIdentity
    run_id: str | None
    source: str | None
    tree_digest: str
    sealed_at: str
    bundle_payload_sha256: str
    bundle_root_digest: str
    manifest: Manifest
    note: str | None = None

    def statement(self) -> dict[str, Any]:
        """The in-toto v1 statement that gets signed."""
        return {
            "_type": IN_TOTO_STATEMENT_TYPE,
            "subject": [{"name": f"{self.identity.model}/{self.identity.version}",
                         "digest": {"sha256": self.tree_digest}}],
            "predicateType": PREDICATE_TYPE,
            "predicate": {
                "registry": self.identity.registry, "model": self.identity.model,
                "version": self.identity.version, "run_id": self.run_id, "source": self.source,
                "tree_digest": self.tree_digest, "sealed_at": self.sealed_at,
                "model_signing_bundle": {"payload_sha256": self.bundle_payload_sha256,
                                         "root_digest": self.bundle_root_digest},
                "manifest": self.manifest.to_dict(compact=True),
                **({"note": self.note} if self.note else {}),
            },
        }


def sign_attestation(attestation: Attestation, key: SigningKey) -> bytes:
    """The attestation as a Sigstore bundle (JSON bytes), DSSE-signed with ``key``."""
    if attestation.manifest.tree_digest != attestation.tree_digest:
        raise CheckError("attestation tree digest does not match its manifest")
    raw = json.dumps(attestation.statement(), sort_keys=True, separators=(",", ":")).encode("utf-8")
    return sign_statement(raw, key)


@dataclass(frozen=True)
class VerifiedAttestation:
    """An attestation whose signature verified with a trusted key."""

    key: TrustedKey
    attestation: Attestation


def _str(predicate: dict[str, Any], name: str, optional: bool = False) -> str | None:
    value = predicate.get(name)
    if value is None and optional:
        return None
    if not isinstance(value, str) or not value:
        raise SealInvalid(f"{ATTESTATION_WHAT}: field {name!r} is missing or not a string")
    return value


def _hex(value: Any, name: str) -> str:
    if not isinstance(value, str) or not _HEX64.fullmatch(value):
        raise SealInvalid(f"{ATTESTATION_WHAT}: {name} is not a hex SHA-256")
    return value


def attestation_from_statement(statement: dict[str, Any]) -> Attestation:
    """Read an already signature-checked statement; any inconsistency is :class:`SealInvalid`."""
    if statement.get("predicateType") != PREDICATE_TYPE:
        raise SealInvalid(f"{ATTESTATION_WHAT}: predicate type {statement.get('predicateType')!r}, "
                          f"expected {PREDICATE_TYPE!r}")
    predicate = statement.get("predicate")
    subjects = statement.get("subject")
    if not isinstance(predicate, dict) or not isinstance(subjects, list) or len(subjects) != 1:
        raise SealInvalid(f"{ATTESTATION_WHAT}: expected one subject and a predicate object")
    tree = _hex(predicate.get("tree_digest"), "tree_digest")
    subject = subjects[0] if isinstance(subjects[0], dict) else {}
    subject_digest = (subject.get("digest") or {}).get("sha256")
    if subject_digest != tree:
        raise SealInvalid(f"{ATTESTATION_WHAT}: its subject digest differs from its tree_digest")
    bundle = predicate.get("model_signing_bundle")
    if not isinstance(bundle, dict):
        raise SealInvalid(f"{ATTESTATION_WHAT}: no model_signing_bundle reference")
    try:
        manifest = Manifest.from_dict(predicate.get("manifest"))
    except (ValueError, KeyError, TypeError, IndexError) as exc:
        raise SealInvalid(f"{ATTESTATION_WHAT}: its manifest is not valid: {exc}") from None
    if manifest.truncated or manifest.tree_digest != tree:
        raise SealInvalid(f"{ATTESTATION_WHAT}: its manifest does not hash to its tree_digest")
    try:
        identity = SealIdentity(_str(predicate, "registry"), _str(predicate, "model"),
                                _str(predicate, "version"))
    except CheckError as exc:
        raise SealInvalid(f"{ATTESTATION_WHAT}: {exc}") from None
    return Attestation(
        identity=identity, run_id=_str(predicate, "run_id", optional=True),
        source=_str(predicate, "source", optional=True), tree_digest=tree,
        sealed_at=_str(predicate, "sealed_at"),
        bundle_payload_sha256=_hex(bundle.get("payload_sha256"), "model_signing_bundle.payload_sha256"),
        bundle_root_digest=_hex(bundle.get("root_digest"), "model_signing_bundle.root_digest"),
        manifest=manifest, note=_str(predicate, "note", optional=True))


def verify_attestation(data: bytes, trusted: Sequence[TrustedKey]) -> VerifiedAttestation:
    """Verify the attestation bundle's signature with a trusted key and read what it states.

    :class:`~core.errors.SealCorrupt` when it cannot be read, :class:`~core.errors.SealInvalid`
    when the key is not trusted, the signature does not verify or the statement is inconsistent.
    Whether it names the expected version is the caller's check (:mod:`core.seal.signed`).
    """
    envelope = verify_bundle_signature(parse_bundle(data, ATTESTATION_WHAT), trusted, ATTESTATION_WHAT)
    return VerifiedAttestation(envelope.key, attestation_from_statement(envelope.statement))
