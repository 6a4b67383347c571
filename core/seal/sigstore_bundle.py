"""Sigstore bundles holding a DSSE envelope, signed and verified with the guard's EC keys.

Both halves of a signed seal use this one container, in the form model-signing writes for its
``key`` method (bundle media type v0.3, ``publicKey.hint`` = key id, no transparency log): the
model-signing bundle itself, and the identity attestation beside it. Signing and verification go
through model-signing's own EC signer and verifier (version 1.1.1, pinned), so the two halves
are checked by exactly the code a third party runs.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Sequence
from dataclasses import dataclass

from cryptography import exceptions as crypto_exceptions
from cryptography.hazmat.primitives.asymmetric import ec
from model_signing._signing import sign_ec_key, sign_sigstore_pb
from model_signing._signing import signing as ms_signing
from sigstore_models import intoto as intoto_pb
from sigstore_models.bundle import v1 as bundle_pb

from core.errors import SealCorrupt, SealInvalid
from core.seal.keys import SigningKey, TrustedKey

IN_TOTO_PAYLOAD_TYPE = ms_signing._IN_TOTO_JSON_PAYLOAD_TYPE
IN_TOTO_STATEMENT_TYPE = ms_signing._IN_TOTO_STATEMENT_TYPE
BUNDLE_MEDIA_TYPE = sign_sigstore_pb._BUNDLE_MEDIA_TYPE


class _LoadedKeySigner(sign_ec_key.Signer):
    """model-signing's EC signer for a key already in memory (its constructor reads a file)."""

    def __init__(self, key: SigningKey) -> None:  # noqa: D107 - see class docstring
        self._private_key = key.private_key


class _LoadedKeyVerifier(sign_ec_key.Verifier):
    """model-signing's EC verifier for a public key already in memory."""

    def __init__(self, key: TrustedKey) -> None:  # noqa: D107 - see class docstring
        self._public_key = key.public_key


def sign_model_signing_payload(payload: ms_signing.Payload, key: SigningKey) -> bytes:
    """A model-signing payload signed by model-signing's EC signer: the bundle's JSON bytes."""
    return _LoadedKeySigner(key).sign(payload).bundle.to_json().encode("utf-8")


def sign_statement(raw_statement: bytes, key: SigningKey) -> bytes:
    """DSSE-sign an in-toto statement (raw JSON bytes) into a bundle, the way model-signing signs its own.

    Same pre-authentication encoding, signature algorithm and verification material as
    :func:`sign_model_signing_payload`; only the statement is ours.
    """
    signer = _LoadedKeySigner(key)
    algorithm = ec.ECDSA(sign_ec_key.get_ec_key_hash(key.public_key))
    sig = key.private_key.sign(sign_sigstore_pb.pae(raw_statement), algorithm)
    envelope = intoto_pb.Envelope(payload=base64.b64encode(raw_statement), payload_type=IN_TOTO_PAYLOAD_TYPE,
                                  signatures=[intoto_pb.Signature(sig=base64.b64encode(sig), keyid="")])
    bundle = bundle_pb.Bundle(media_type=BUNDLE_MEDIA_TYPE,
                              verification_material=signer._get_verification_material(),
                              dsse_envelope=envelope)
    return bundle.to_json().encode("utf-8")


@dataclass(frozen=True)
class VerifiedEnvelope:
    """A bundle whose signature verified: the trusted key that made it, and the signed statement."""

    key: TrustedKey
    payload: bytes
    statement: dict


def parse_bundle(data: bytes, what: str) -> bundle_pb.Bundle:
    """Parse a bundle's JSON; anything unreadable (truncated, not JSON, wrong shape) is SealCorrupt."""
    if not data:
        raise SealCorrupt(f"{what} is empty")
    try:
        bundle = bundle_pb.Bundle.from_json(data)
    except Exception as exc:  # noqa: BLE001 - pydantic and json errors alike mean "cannot be read"
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
        raise SealCorrupt(f"{what} cannot be read ({len(data)} bytes; truncated or not a Sigstore bundle): "
                          f"{first[:200]}") from None
    if bundle.dsse_envelope is None:
        raise SealCorrupt(f"{what} holds no DSSE envelope")
    return bundle


def _trusted_key_for(bundle: bundle_pb.Bundle, trusted: Sequence[TrustedKey], what: str) -> TrustedKey:
    material = bundle.verification_material
    hint = material.public_key.hint if material is not None and material.public_key is not None else None
    if not hint:
        raise SealInvalid(f"{what} does not name the key that signed it (no publicKey.hint)")
    for key in trusted:
        if key.key_id == hint:
            return key
    known = ", ".join(k.key_id[:16] for k in trusted) or "none"
    raise SealInvalid(f"{what} is signed by a key that is not trusted "
                      f"(key id {hint[:16]}…; trusted: {known})")


def verify_bundle_signature(bundle: bundle_pb.Bundle, trusted: Sequence[TrustedKey],
                            what: str) -> VerifiedEnvelope:
    """Check the bundle's DSSE signature with the trusted key it names; return the signed statement.

    Raises :class:`SealInvalid` for an untrusted key, a signature that does not verify, or a signed
    payload that is not an in-toto statement.
    """
    if bundle.media_type != BUNDLE_MEDIA_TYPE:
        raise SealInvalid(f"{what} has media type {bundle.media_type!r}, expected {BUNDLE_MEDIA_TYPE!r}")
    envelope = bundle.dsse_envelope
    if envelope is None or not envelope.signatures:
        raise SealInvalid(f"{what} carries no signature")
    key = _trusted_key_for(bundle, trusted, what)
    try:
        verifier = _LoadedKeyVerifier(key)
        payload_type, payload = verifier._verify_signed_content(sign_sigstore_pb.Signature(bundle))
    except (crypto_exceptions.InvalidSignature, ValueError) as exc:
        raise SealInvalid(f"{what}: the signature does not verify with trusted key {key.key_id[:16]}… "
                          f"({key.source}){': ' + str(exc) if str(exc) else ''}") from None
    if payload_type != IN_TOTO_PAYLOAD_TYPE:
        raise SealInvalid(f"{what}: signed payload type is {payload_type!r}, not an in-toto statement")
    try:
        statement = json.loads(payload)
    except ValueError as exc:
        raise SealInvalid(f"{what}: the signed payload is not JSON: {exc}") from None
    if not isinstance(statement, dict) or statement.get("_type") != IN_TOTO_STATEMENT_TYPE:
        raise SealInvalid(f"{what}: the signed payload is not an in-toto v1 statement")
    return VerifiedEnvelope(key, bytes(payload), statement)
