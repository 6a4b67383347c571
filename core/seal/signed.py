"""Signed seals: seal a model version once, and later verify its files against that seal.

A signed seal is two files in the seal store (:mod:`core.seal.store`), both signed with the
guard's key: an OpenSSF model-signing bundle of the per-file SHA-256 digests
(:mod:`core.seal.signing`) and an identity attestation binding them to the version
(:mod:`core.seal.attestation`). Both are made from a core :class:`~core.seal.manifest.Manifest`, so a
model that is only streamed (hashed while read, never on disk) is sealed and verified the same
way as a local folder.

:func:`verify_signed_seal` answers with a :class:`SealVerification` whose ``status`` is the
seal's part of the verdict: ``PASSED`` (signature valid for a trusted key, the attestation names
this version, every file matches), ``FAILED`` (invalid seal, another version's seal, a seal
gone missing, or files that differ, listed as :class:`~core.seal.manifest.Difference`), ``ERROR`` (a
seal that cannot be read), or None when the version was never sealed. A store that cannot be
reached raises :class:`~core.errors.TransientError` and a store that refuses access raises
:class:`~core.errors.CheckError`: neither is ever a pass.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from core.errors import SealCorrupt, SealExistsError, SealInvalid
from core.seal.attestation import Attestation, SealIdentity, sign_attestation, verify_attestation
from core.seal.digest import verify_manifest
from core.seal.keys import SigningKey, TrustedKey
from core.seal.manifest import Difference, Manifest
from core.seal.signing import sign_bundle, signed_files, verify_bundle
from core.seal.store import SealStore, StoredSeal
from core.status import ERROR, FAILED, PASSED
from core.tags import TAG_MANIFEST, TAG_SEAL, TAG_SEAL_BUNDLE

# TAG_SEAL and TAG_SEAL_BUNDLE are what a signed seal leaves on the version (the tree digest and where the
# bundle is), for people and third parties: the guard never reads a seal's location from them.

LABELS = ("sealed", "current")

# Outcome kinds, and the status each contributes to the verdict.
VERIFIED, MISMATCH, INVALID, CORRUPT, MISSING = "verified", "mismatch", "invalid", "corrupt", "missing"
LEGACY_VERIFIED, LEGACY_MISMATCH, UNSEALED = "legacy_verified", "legacy_mismatch", "unsealed"
STATUS_OF = {VERIFIED: PASSED, LEGACY_VERIFIED: PASSED, MISMATCH: FAILED, LEGACY_MISMATCH: FAILED,
             INVALID: FAILED, MISSING: FAILED, CORRUPT: ERROR, UNSEALED: None}


@dataclass(frozen=True)
class SealRecord:
    """A signed seal just written: what the version's tags should now say, and where it lives."""

    identity: SealIdentity
    tree_digest: str
    location: str
    bundle_location: str
    key_id: str
    sealed_at: str

    def tags(self) -> dict[str, str]:
        """The seal tags for the version (replacing the unsigned ``validation.manifest`` tag)."""
        return {TAG_SEAL: self.tree_digest, TAG_SEAL_BUNDLE: self.bundle_location}


def _utc_now() -> str:
    return dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def create_signed_seal(store: SealStore, identity: SealIdentity, manifest: Manifest, key: SigningKey, *,
                       run_id: str | None, source: str | None, sealed_at: str | None = None,
                       note: str | None = None) -> SealRecord:
    """Sign ``manifest`` (the registry model as read now) for ``identity`` and store the seal, once.

    ``note`` says how the seal was made when it was not at registration (the attestation carries it).

    Raises :class:`~core.errors.SealExistsError` when the version already has a signed seal (it is
    never replaced), :class:`~core.errors.TransientError` / :class:`~core.errors.CheckError` when
    the store cannot be reached or written.
    """
    bundle = sign_bundle(manifest, key, identity.model)
    signed = verify_bundle(bundle, [TrustedKey(key.public_key, key.key_id, key.path)])
    attestation = Attestation(identity=identity, run_id=run_id, source=source,
                              tree_digest=manifest.tree_digest, sealed_at=sealed_at or _utc_now(),
                              bundle_payload_sha256=signed.payload_sha256,
                              bundle_root_digest=signed.root_digest, manifest=manifest, note=note)
    location = store.write(identity, StoredSeal(bundle, sign_attestation(attestation, key)))
    return SealRecord(identity, manifest.tree_digest, location, store.bundle_location(identity), key.key_id,
                      attestation.sealed_at)


@dataclass
class SealVerification:
    """How a version's files stand against its seal; ``status`` is PASSED, FAILED, ERROR or None."""

    kind: str
    reason: str
    identity: SealIdentity
    signed: bool = False
    differences: list[Difference] = field(default_factory=list)
    location: str | None = None
    key_id: str | None = None
    attestation: Attestation | None = None

    @property
    def status(self) -> str | None:
        """The seal's contribution to the verdict (None: the version has no seal yet)."""
        return STATUS_OF[self.kind]

    def to_dict(self, tags: Mapping[str, str] | None = None) -> dict[str, Any]:
        """Plain-dict form for reports (the report's ``Seal`` section).

        With the version's ``tags``, ``tag_digest_matches`` says whether its ``validation.seal`` tag
        still shows the signed seal's digest (False: the tags were rewritten; the verdict never
        depends on them).
        """
        att = self.attestation
        tag_digest = (tags or {}).get(TAG_SEAL)
        return {"tag_digest_matches": (tag_digest == att.tree_digest) if att and tag_digest else None,
                "kind": self.kind, "status": self.status, "reason": self.reason, "signed": self.signed,
                "registry": self.identity.registry, "model": self.identity.model,
                "version": self.identity.version,
                "location": self.location, "key_id": self.key_id,
                "sealed_tree_digest": att.tree_digest if att else None,
                "sealed_at": att.sealed_at if att else None, "run_id": att.run_id if att else None,
                "note": att.note if att else None,
                "differences": [d.to_dict() for d in self.differences]}


def _first(diffs: list[Difference]) -> str:
    return f"{diffs[0].kind} {diffs[0].path}"


def check_stored_seal(stored: StoredSeal, identity: SealIdentity,
                      trusted: Sequence[TrustedKey]) -> tuple[Attestation, str]:
    """Verify both signatures and that the two halves belong together and to ``identity``.

    Returns the attestation (with the sealed manifest) and the id of the key that signed it.
    Raises :class:`~core.errors.SealCorrupt` or :class:`~core.errors.SealInvalid` with the reason.
    File contents are not looked at.
    """
    bundle = verify_bundle(stored.bundle, trusted)
    verified = verify_attestation(stored.attestation, trusted)
    att = verified.attestation
    if verified.key.key_id != bundle.key.key_id:
        raise SealInvalid("the model-signing bundle and the identity attestation are signed by "
                          "different keys")
    if att.identity != identity:
        raise SealInvalid(f"the signed seal belongs to {att.identity.describe()}, not to "
                          f"{identity.describe()}: a seal of another version")
    if (att.bundle_payload_sha256, att.bundle_root_digest) != (bundle.payload_sha256, bundle.root_digest):
        raise SealInvalid("the identity attestation was made for another model-signing bundle")
    if signed_files(att.manifest) != bundle.files:
        raise SealInvalid("the model-signing bundle and the attested manifest list different files "
                          "or digests")
    return att, bundle.key.key_id


def verify_signed_seal(store: SealStore, identity: SealIdentity, current: Manifest,
                       trusted: Sequence[TrustedKey], *, tags: Mapping[str, str] | None = None,
                       legacy_seal: Manifest | None = None) -> SealVerification:
    """Verify the files as read now (``current``) against ``identity``'s seal.

    The signed seal is looked up in ``store`` by ``identity`` alone. When the store has none:
    a version whose ``tags`` carry ``validation.seal_bundle`` was sealed with a signed seal that has
    gone missing (FAILED, and it must not be re-sealed); otherwise ``legacy_seal`` (the unsigned
    ``validation.manifest`` tag of a version sealed before signed seals, parsed by the caller) is
    checked and the outcome says it is unsigned; a ``validation.seal`` tag with neither is a seal
    gone missing too; with none of these the version is ``UNSEALED``.
    """
    stored = store.read(identity)
    location = store.location(identity)
    if stored is None:
        if (tags or {}).get(TAG_SEAL_BUNDLE):
            return SealVerification(MISSING, f"{identity.describe()} was sealed with a signed seal "
                                    f"({TAG_SEAL_BUNDLE} tag) but the seal store has none at {location}: "
                                    "not re-sealing over files that may have changed", identity,
                                    location=location)
        if legacy_seal is not None:
            diffs = verify_manifest(current, legacy_seal, LABELS)
            note = f"sealed before signed seals: unsigned seal from the {TAG_MANIFEST} tag"
            if diffs:
                return SealVerification(LEGACY_MISMATCH, f"{note}: {len(diffs)} difference(s) (first: "
                                        f"{_first(diffs)})", identity, differences=diffs)
            return SealVerification(LEGACY_VERIFIED, f"{note} verified (it cannot prove the files unchanged "
                                    "against someone who can rewrite tags)", identity)
        if (tags or {}).get(TAG_SEAL):
            return SealVerification(MISSING, f"{identity.describe()} carries a {TAG_SEAL} tag but no seal is "
                                    f"in the seal store ({location}) or its tags: not re-sealing over files "
                                    "that may have changed", identity, location=location)
        return SealVerification(UNSEALED, f"{identity.describe()} has no seal yet", identity,
                                location=location)
    try:
        att, key_id = check_stored_seal(stored, identity, trusted)
    except SealCorrupt as exc:
        return SealVerification(CORRUPT, f"signed seal at {location} cannot be read: {exc}", identity,
                                signed=True, location=location)
    except SealInvalid as exc:
        return SealVerification(INVALID, f"signed seal at {location} is not valid: {exc}", identity,
                                signed=True, location=location)
    diffs = verify_manifest(current, att.manifest, LABELS)
    if diffs:
        return SealVerification(MISMATCH, f"{len(diffs)} difference(s) from the signed seal (first: "
                                f"{_first(diffs)})", identity, True, diffs, location, key_id, att)
    when = f"{att.note} at {att.sealed_at}" if att.note else f"sealed {att.sealed_at}"
    return SealVerification(VERIFIED, f"signed seal verified (key {key_id[:16]}…, {when}, "
                            f"{current.file_count} files)", identity, True, [], location, key_id, att)


def verify_or_seal(store: SealStore, identity: SealIdentity, current: Manifest, trusted: Sequence[TrustedKey],
                   *, key: SigningKey | None, may_seal: bool, run_id: str | None, source: str | None,
                   tags: Mapping[str, str] | None = None,
                   legacy_seal: Manifest | None = None,
                   note: str | None = None) -> tuple[SealVerification, SealRecord | None]:
    """Verify ``current`` against the version's seal; seal it first when it has none and ``may_seal``.

    What the worker does for "seal, then check" (``may_seal`` true: a new version whose run and
    registry models compared equal) and "check against the seal" (``may_seal`` false). Only an
    ``UNSEALED`` version is ever sealed: a seal gone missing, an unsigned legacy seal or an invalid
    one is reported, never papered over with a fresh seal. Returns the outcome and, when this call
    sealed the version, the new :class:`SealRecord` (its ``tags()`` go onto the version).
    """
    outcome = verify_signed_seal(store, identity, current, trusted, tags=tags, legacy_seal=legacy_seal)
    if outcome.kind != UNSEALED or not may_seal or key is None:
        return outcome, None
    try:
        record = create_signed_seal(store, identity, current, key, run_id=run_id, source=source, note=note)
    except SealExistsError:
        # Sealed meanwhile by another worker: verify against that seal rather than ours.
        return verify_signed_seal(store, identity, current, trusted, tags=tags), None
    # Read back through the store and the trusted keys, as any later check will.
    return verify_signed_seal(store, identity, current, trusted, tags=record.tags()), record
