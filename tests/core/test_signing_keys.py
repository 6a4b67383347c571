"""Seal keys: generated with mode 0600, loaded without ever echoing key material, several trusted at once."""

from __future__ import annotations

import stat
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from core.errors import CheckError
from core.seal.keys import (
    ensure_signing_key,
    generate_key_pair,
    key_id,
    load_public_keys,
    load_signing_key,
    load_trusted_keys,
    trusted_from_signing_key,
)


def test_generated_private_key_is_0600_and_never_overwritten(tmp_path: Path):
    key = generate_key_pair(tmp_path / "keys" / "guard.pem")
    private, public = tmp_path / "keys" / "guard.pem", tmp_path / "keys" / "guard.pub.pem"
    assert stat.S_IMODE(private.stat().st_mode) == 0o600
    assert stat.S_IMODE(public.stat().st_mode) == 0o644
    assert public.read_bytes() == key.public_pem()
    assert load_signing_key(private).key_id == key.key_id == load_trusted_keys([public])[0].key_id
    before = private.read_bytes()
    with pytest.raises(CheckError, match="already exists"):
        generate_key_pair(private)
    assert private.read_bytes() == before


def test_key_material_never_appears_in_reprs_or_errors(tmp_path: Path):
    key = generate_key_pair(tmp_path / "guard.pem")
    pem = (tmp_path / "guard.pem").read_text()
    body = "".join(pem.splitlines()[1:-1])
    for text in (repr(key), str(key)):
        assert body[:40] not in text and "PRIVATE" not in text
    assert key.key_id[:16] in repr(key)

    secret = "-----BEGIN EC PRIVATE KEY-----\nTOPSECRETMATERIAL0123456789\n-----END EC PRIVATE KEY-----\n"
    bad = tmp_path / "bad.pem"
    bad.write_text(secret)
    with pytest.raises(CheckError) as err:
        load_signing_key(bad)
    assert "TOPSECRET" not in str(err.value) and str(bad) in str(err.value)
    # The library's exception is not chained into ours, so no traceback can carry the file's content.
    assert err.value.__cause__ is None and err.value.__suppress_context__
    with pytest.raises(CheckError, match="cannot read"):
        load_signing_key(tmp_path / "missing.pem")


def test_only_curves_model_signing_supports_are_accepted(tmp_path: Path):
    rsa_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    path = tmp_path / "rsa.pem"
    path.write_bytes(rsa_key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
    with pytest.raises(CheckError, match="not an elliptic-curve key"):
        load_signing_key(path)
    k1 = ec.generate_private_key(ec.SECP256K1())
    pub = k1.public_key().public_bytes(serialization.Encoding.PEM,
                                       serialization.PublicFormat.SubjectPublicKeyInfo)
    with pytest.raises(CheckError, match="unsupported curve"):
        load_public_keys(pub, "k1.pem")
    for curve in ("secp384r1", "secp521r1"):
        assert generate_key_pair(tmp_path / f"{curve}.pem", curve=curve).key_id


def test_several_trusted_keys_for_rotation_one_file_or_many(tmp_path: Path):
    old = generate_key_pair(tmp_path / "old.pem")
    new = generate_key_pair(tmp_path / "new.pem")
    both = tmp_path / "both.pem"
    both.write_bytes(old.public_pem() + new.public_pem())
    ids = {k.key_id for k in load_trusted_keys([both])}
    assert ids == {old.key_id, new.key_id}
    ids = [k.key_id for k in load_trusted_keys([tmp_path / "old.pub.pem", tmp_path / "new.pub.pem"])]
    assert ids == [old.key_id, new.key_id]
    assert trusted_from_signing_key(new).key_id == key_id(new.public_key)
    with pytest.raises(CheckError, match="no trusted public key"):
        load_trusted_keys([])
    (tmp_path / "empty.pem").write_text("nothing here")
    with pytest.raises(CheckError, match="no PEM public key"):
        load_trusted_keys([tmp_path / "empty.pem"])


def test_ensure_signing_key_generates_once_then_loads(tmp_path: Path):
    first = ensure_signing_key(tmp_path / "data" / "seal-key.pem")
    assert stat.S_IMODE((tmp_path / "data" / "seal-key.pem").stat().st_mode) == 0o600
    assert ensure_signing_key(tmp_path / "data" / "seal-key.pem").key_id == first.key_id
