"""Keys of signed seals: the guard's elliptic-curve private key and the public keys it trusts.

The private key is read from a PEM file whose path the caller gives (``GUARD_SIGNING_KEY`` in the
listener's configuration). Its bytes never leave this module's objects: errors name the file,
never its content, and :class:`SigningKey` has no readable representation. Trusted public keys
come from one or more PEM files (``GUARD_TRUSTED_KEYS``); several keys are trusted at once so a key
can be rotated without invalidating the seals signed by the previous one.

A key is named by its *key id*: the hex SHA-256 of its PEM ``SubjectPublicKeyInfo`` encoding, the
value the OpenSSF model-signing format records as the bundle's ``publicKey.hint``.
"""

from __future__ import annotations

import hashlib
import os
import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from core.errors import CheckError

# The curves model-signing accepts (it follows Sigstore's protobuf specs).
SUPPORTED_CURVES = ("secp256r1", "secp384r1", "secp521r1")
_CURVES = {"secp256r1": ec.SECP256R1, "secp384r1": ec.SECP384R1, "secp521r1": ec.SECP521R1}
_PEM_BLOCK = re.compile(rb"-----BEGIN PUBLIC KEY-----.+?-----END PUBLIC KEY-----", re.S)


def public_key_pem(public_key: ec.EllipticCurvePublicKey) -> bytes:
    """PEM ``SubjectPublicKeyInfo`` of ``public_key`` (what ``GET /seal-key.pem`` serves)."""
    return public_key.public_bytes(serialization.Encoding.PEM,
                                   serialization.PublicFormat.SubjectPublicKeyInfo)


def key_id(public_key: ec.EllipticCurvePublicKey) -> str:
    """Hex SHA-256 of the key's PEM encoding: model-signing's ``publicKey.hint`` for this key."""
    return hashlib.sha256(public_key_pem(public_key)).hexdigest()


def _check_curve(public_key: object, where: str) -> ec.EllipticCurvePublicKey:
    if not isinstance(public_key, ec.EllipticCurvePublicKey):
        raise CheckError(f"{where}: not an elliptic-curve key (model-signing needs P-256, P-384 or P-521)")
    if public_key.curve.name not in SUPPORTED_CURVES:
        raise CheckError(f"{where}: unsupported curve {public_key.curve.name} (use P-256, P-384 or P-521)")
    return public_key


@dataclass(frozen=True, repr=False)
class SigningKey:
    """The guard's private key, loaded once. ``repr`` shows the key id only, never key material."""

    private_key: ec.EllipticCurvePrivateKey = field(compare=False)
    path: str

    @property
    def public_key(self) -> ec.EllipticCurvePublicKey:
        """The matching public key."""
        return self.private_key.public_key()

    @property
    def key_id(self) -> str:
        """See :func:`key_id`."""
        return key_id(self.public_key)

    def public_pem(self) -> bytes:
        """PEM of the public key, for ``GET /seal-key.pem`` and third-party verification."""
        return public_key_pem(self.public_key)

    def __repr__(self) -> str:
        return f"SigningKey(path={self.path!r}, key_id={self.key_id[:16]}…)"


@dataclass(frozen=True)
class TrustedKey:
    """A public key accepted when verifying seals, with where it came from."""

    public_key: ec.EllipticCurvePublicKey = field(compare=False, repr=False)
    key_id: str
    source: str


def load_signing_key(path: Path | str, password: bytes | None = None) -> SigningKey:
    """Load the guard's EC private key from the PEM file at ``path``.

    Raises :class:`CheckError` naming the file (never its content) when it is missing, unreadable,
    not a PEM private key, or not on a curve model-signing supports.
    """
    where = f"signing key {path}"
    try:
        data = Path(path).read_bytes()
    except OSError as exc:
        raise CheckError(f"{where}: cannot read it: {exc.strerror or exc}") from None
    try:
        key = serialization.load_pem_private_key(data, password)
    except (ValueError, TypeError) as exc:
        # The library's message never quotes the key, but keep ours fixed anyway.
        reason = "it needs a password" if "password" in str(exc).lower() else "not a PEM private key"
        raise CheckError(f"{where}: {reason}") from None
    if not isinstance(key, ec.EllipticCurvePrivateKey):
        raise CheckError(f"{where}: not an elliptic-curve key (model-signing needs P-256, P-384 or P-521)")
    _check_curve(key.public_key(), where)
    return SigningKey(key, str(path))


def load_public_keys(data: bytes, source: str) -> list[TrustedKey]:
    """Every PEM public key in ``data`` (one file may hold several), checked for a supported curve."""
    blocks = _PEM_BLOCK.findall(data)
    if not blocks:
        raise CheckError(f"trusted key {source}: no PEM public key in it")
    keys = []
    for block in blocks:
        try:
            pub = serialization.load_pem_public_key(block)
        except ValueError as exc:
            raise CheckError(f"trusted key {source}: not a valid PEM public key: {exc}") from None
        pub = _check_curve(pub, f"trusted key {source}")
        keys.append(TrustedKey(pub, key_id(pub), source))
    return keys


def load_trusted_keys(paths: Iterable[Path | str]) -> list[TrustedKey]:
    """The public keys in the PEM files ``paths`` (``GUARD_TRUSTED_KEYS``, already split by the caller).

    An empty list of paths is an error: verifying against no key at all would prove nothing.
    """
    keys: list[TrustedKey] = []
    for p in paths:
        try:
            data = Path(p).read_bytes()
        except OSError as exc:
            raise CheckError(f"trusted key {p}: cannot read it: {exc.strerror or exc}") from None
        keys.extend(load_public_keys(data, str(p)))
    if not keys:
        raise CheckError("no trusted public key given: a signed seal cannot be verified without one")
    return keys


def trusted_from_signing_key(key: SigningKey) -> TrustedKey:
    """The signing key's own public half as a trusted key (the usual single-key set-up)."""
    return TrustedKey(key.public_key, key.key_id, f"public half of {key.path}")


def _write_exclusive(path: Path, data: bytes, mode: int) -> None:
    # O_EXCL: never overwrite an existing key; the mode applies from creation, with no window
    # in which the private key is readable by others.
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_CLOEXEC", 0), mode)
    try:
        os.write(fd, data)
    finally:
        os.close(fd)
    os.chmod(path, mode)  # the umask may have removed bits we asked for


def generate_key_pair(private_path: Path | str, public_path: Path | str | None = None,
                      curve: str = "secp256r1") -> SigningKey:
    """Create a new EC private key at ``private_path`` (mode 0600) and its public key (mode 0644).

    ``public_path`` defaults to ``private_path`` with ``.pub.pem`` in place of its suffix. Existing
    files are never overwritten (:class:`CheckError`). Returns the new key, loaded.
    """
    if curve not in _CURVES:
        raise CheckError(f"unsupported curve {curve} (use one of {', '.join(SUPPORTED_CURVES)})")
    private_path = Path(private_path)
    public_path = Path(public_path) if public_path is not None else private_path.with_suffix(".pub.pem")
    for p in (private_path, public_path):
        if p.exists():
            raise CheckError(f"{p} already exists: not overwriting a key")
    key = ec.generate_private_key(_CURVES[curve]())
    pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                            serialization.NoEncryption())
    private_path.parent.mkdir(parents=True, exist_ok=True)
    public_path.parent.mkdir(parents=True, exist_ok=True)
    _write_exclusive(private_path, pem, 0o600)
    _write_exclusive(public_path, public_key_pem(key.public_key()), 0o644)
    return SigningKey(key, str(private_path))


def ensure_signing_key(private_path: Path | str, public_path: Path | str | None = None) -> SigningKey:
    """The key at ``private_path``, generated first (mode 0600, see :func:`generate_key_pair`) if absent.

    For a local stack that should just work; production keys are provisioned, not generated here.
    """
    if Path(private_path).exists():
        return load_signing_key(private_path)
    return generate_key_pair(private_path, public_path)
