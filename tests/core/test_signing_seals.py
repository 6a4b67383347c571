"""Signed seals against an adversary who can rewrite model files and tags: tamper, swap, forge, rotate."""

from __future__ import annotations

import base64
import json
import shutil
from pathlib import Path

import pytest

from core.errors import SealExistsError
from core.seal.attestation import SealIdentity
from core.seal.digest import make_seal
from core.seal.manifest import Manifest
from core.seal.signed import (
    CORRUPT,
    INVALID,
    LEGACY_MISMATCH,
    LEGACY_VERIFIED,
    MISMATCH,
    MISSING,
    UNSEALED,
    VERIFIED,
    create_signed_seal,
    verify_or_seal,
    verify_signed_seal,
)
from core.seal.store import ATTESTATION_FILE, BUNDLE_FILE, StoredSeal, open_seal_store
from core.tags import TAG_MANIFEST, TAG_SEAL, TAG_SEAL_BUNDLE
from tests.core.signing_support import FILES, bundle_in_folder, make_key, model_signing_verify, write_model

REGISTRY = "http://mlflow.example.com"
NESTED = "data/deep/nested/weights.bin"


def _identity(version: str, model: str = "churn") -> SealIdentity:
    return SealIdentity(REGISTRY, model, version)


@pytest.fixture
def env(tmp_path: Path):
    class Env:
        store = open_seal_store(tmp_path / "seals", create=True)
        pair = make_key(tmp_path / "keys")
        root = tmp_path

        def model(self, name: str, files: dict[str, bytes] | None = None) -> Path:
            return write_model(self.root / "models" / name, files)

        def seal(self, version: str, model: Path, key=None) -> dict[str, str]:
            record = create_signed_seal(self.store, _identity(version), make_seal(model),
                                        key or self.pair.key, run_id=f"run-{version}",
                                        source=f"models:/m-{version}")
            return record.tags()

    return Env()


def test_sealed_files_unchanged_pass_and_the_outcome_says_why(env):
    model = env.model("v1")
    tags = env.seal("1", model)
    out = verify_signed_seal(env.store, _identity("1"), make_seal(model), env.pair.trusted, tags=tags)
    assert (out.kind, out.status, out.signed) == (VERIFIED, "PASSED", True)
    assert out.key_id == env.pair.key.key_id
    assert out.attestation.run_id == "run-1" and out.attestation.source == "models:/m-1"
    assert "signed seal verified" in out.reason
    assert out.to_dict(tags)["tag_digest_matches"] is True
    assert tags[TAG_SEAL] == make_seal(model).tree_digest
    assert tags[TAG_SEAL_BUNDLE].endswith("/1/model.sig")
    assert bundle_in_folder(env.store.root, tags[TAG_SEAL_BUNDLE]).is_file()


def test_tampered_nested_file_with_rewritten_unsigned_seal_and_tags_fails(env):
    model = env.model("v1")
    env.seal("1", model)
    (model / NESTED).write_bytes(b"backdoor" + (model / NESTED).read_bytes()[8:])
    # The adversary also rewrites every tag to match the tampered files.
    forged = make_seal(model)
    tags = {TAG_SEAL: forged.tree_digest, TAG_MANIFEST: forged.to_compact_json()}
    out = verify_signed_seal(env.store, _identity("1"), forged, env.pair.trusted, tags=tags,
                             legacy_seal=Manifest.from_json(tags["validation.manifest"]))
    assert (out.kind, out.status) == (MISMATCH, "FAILED")
    assert [(d.path, d.kind) for d in out.differences] == [(NESTED, "changed")]
    assert set(out.differences[0].detail) >= {"sha256_sealed", "sha256_current", "size_sealed",
                                              "size_current"}
    report = out.to_dict(tags)
    assert report["tag_digest_matches"] is False and report["status"] == "FAILED"
    assert report["differences"][0]["path"] == NESTED


def test_another_versions_signed_files_and_seal_swapped_in_fail_on_identity(env):
    v1 = env.model("v1")
    v2 = env.model("v2", {**FILES, "model.pkl": b"retrained weights"})
    env.seal("1", v1)
    env.seal("2", v2)
    # Adversary: copy version 1's files over version 2's, and version 1's seal over version 2's.
    v2_seal = Path(env.store.location(_identity("2")))
    for name in (BUNDLE_FILE, ATTESTATION_FILE):
        shutil.copyfile(Path(env.store.location(_identity("1"))) / name, v2_seal / name)
    out = verify_signed_seal(env.store, _identity("2"), make_seal(v1), env.pair.trusted)
    assert (out.kind, out.status) == (INVALID, "FAILED")
    assert "version 1" in out.reason and "not to model 'churn' version 2" in out.reason


def test_same_version_number_of_another_model_or_registry_is_not_this_version(env):
    model = env.model("v1")
    env.seal("1", model)
    seal_dir = Path(env.store.location(_identity("1")))
    for other in (SealIdentity(REGISTRY, "fraud", "1"), SealIdentity("http://other:5000", "churn", "1")):
        target = Path(env.store.location(other))
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copytree(seal_dir, target)
        out = verify_signed_seal(env.store, other, make_seal(model), env.pair.trusted)
        assert out.kind == INVALID and "another version" in out.reason


def test_bundle_of_one_version_with_attestation_of_another_is_invalid(env):
    env.seal("1", env.model("v1"))
    v2 = env.model("v2", {**FILES, "MLmodel": b"other"})
    env.seal("2", v2)
    shutil.copyfile(Path(env.store.location(_identity("1"))) / BUNDLE_FILE,
                    Path(env.store.location(_identity("2"))) / BUNDLE_FILE)
    out = verify_signed_seal(env.store, _identity("2"), make_seal(v2), env.pair.trusted)
    assert out.kind == INVALID and "another model-signing bundle" in out.reason


def test_seal_forged_with_an_untrusted_key_fails(env, tmp_path: Path):
    model = env.model("v1")
    (model / NESTED).write_bytes(b"tampered before sealing")
    attacker = make_key(tmp_path / "attacker", "attacker")
    env.seal("1", model, key=attacker.key)  # a seal over tampered files, signed by someone else
    out = verify_signed_seal(env.store, _identity("1"), make_seal(model), env.pair.trusted)
    assert (out.kind, out.status) == (INVALID, "FAILED")
    assert "not trusted" in out.reason and attacker.key.key_id[:16] in out.reason


def test_key_rotation_old_seals_still_verify_while_the_new_key_signs(env, tmp_path: Path):
    old = env.model("v1")
    env.seal("1", old)  # signed by the old key
    new_pair = make_key(tmp_path / "keys-new", "guard-2")
    new = env.model("v2", {**FILES, "model.pkl": b"v2"})
    env.seal("2", new, key=new_pair.key)
    both = env.pair.trusted + new_pair.trusted  # GUARD_TRUSTED_KEYS=old.pub.pem,new.pub.pem
    for version, model, signer in (("1", old, env.pair), ("2", new, new_pair)):
        out = verify_signed_seal(env.store, _identity(version), make_seal(model), both)
        assert (out.kind, out.status, out.key_id) == (VERIFIED, "PASSED", signer.key.key_id)
    # Once the old key is dropped from the trusted set, its seals no longer pass.
    out = verify_signed_seal(env.store, _identity("1"), make_seal(old), new_pair.trusted)
    assert out.kind == INVALID and "not trusted" in out.reason


def test_a_seal_is_never_replaced(env):
    model = env.model("v1")
    env.seal("1", model)
    before = (Path(env.store.location(_identity("1"))) / ATTESTATION_FILE).read_bytes()
    (model / NESTED).write_bytes(b"changed")
    with pytest.raises(SealExistsError, match="never replaced"):
        env.seal("1", model)
    assert (Path(env.store.location(_identity("1"))) / ATTESTATION_FILE).read_bytes() == before
    out = verify_signed_seal(env.store, _identity("1"), make_seal(model), env.pair.trusted)
    assert out.kind == MISMATCH


@pytest.mark.parametrize(("which", "damage"), [
    *((name, damage) for name in (BUNDLE_FILE, ATTESTATION_FILE)
      for damage in ("truncate", "empty", "not-json")),
    (BUNDLE_FILE, "missing")])
def test_corrupt_or_truncated_seal_is_an_error_with_its_reason_never_a_pass(env, which: str, damage: str):
    model = env.model("v1")
    env.seal("1", model)
    path = Path(env.store.location(_identity("1"))) / which
    data = path.read_bytes()
    if damage == "truncate":
        path.write_bytes(data[: len(data) // 2])
    elif damage == "empty":
        path.write_bytes(b"")
    elif damage == "not-json":
        path.write_bytes(b"\x00\xffgarbage")
    else:
        path.unlink()
    out = verify_signed_seal(env.store, _identity("1"), make_seal(model), env.pair.trusted)
    assert (out.kind, out.status) == (CORRUPT, "ERROR")
    assert "cannot be read" in out.reason and ("bundle" in out.reason or "attestation" in out.reason)


def test_attestation_edited_to_name_another_version_no_longer_verifies(env):
    model = env.model("v1")
    env.seal("1", model)
    source = Path(env.store.location(_identity("1")))
    doc = json.loads((source / ATTESTATION_FILE).read_bytes())
    statement = json.loads(base64.b64decode(doc["dsseEnvelope"]["payload"]))
    statement["predicate"]["version"] = "2"
    doc["dsseEnvelope"]["payload"] = base64.b64encode(json.dumps(statement).encode()).decode()
    target = Path(env.store.location(_identity("2")))
    shutil.copytree(source, target)
    (target / ATTESTATION_FILE).write_text(json.dumps(doc))
    out = verify_signed_seal(env.store, _identity("2"), make_seal(model), env.pair.trusted)
    assert (out.kind, out.status) == (INVALID, "FAILED")
    assert "identity attestation" in out.reason and "signature does not verify" in out.reason


def test_signed_seal_gone_from_the_store_fails_instead_of_resealing(env):
    model = env.model("v1")
    tags = env.seal("1", model)
    shutil.rmtree(env.store.location(_identity("1")))
    out = verify_signed_seal(env.store, _identity("1"), make_seal(model), env.pair.trusted, tags=tags)
    assert (out.kind, out.status) == (MISSING, "FAILED") and "not re-sealing" in out.reason
    # Deleting the bundle tag too changes nothing while the digest tag says the version was sealed.
    out = verify_signed_seal(env.store, _identity("1"), make_seal(model), env.pair.trusted,
                             tags={TAG_SEAL: tags[TAG_SEAL]})
    assert (out.kind, out.status) == (MISSING, "FAILED") and "not re-sealing" in out.reason


def test_version_sealed_before_signed_seals_keeps_its_unsigned_seal_and_says_so(env):
    model = env.model("v1")
    legacy = Manifest.from_json(make_seal(model).to_compact_json())
    out = verify_signed_seal(env.store, _identity("1"), make_seal(model), env.pair.trusted,
                             tags={"validation.manifest": legacy.to_compact_json()}, legacy_seal=legacy)
    assert (out.kind, out.status, out.signed) == (LEGACY_VERIFIED, "PASSED", False)
    assert "unsigned" in out.reason and "validation.manifest" in out.reason
    (model / NESTED).write_bytes(b"x")
    out = verify_signed_seal(env.store, _identity("1"), make_seal(model), env.pair.trusted,
                             legacy_seal=legacy)
    assert (out.kind, out.status) == (LEGACY_MISMATCH, "FAILED")
    assert [d.path for d in out.differences] == [NESTED]


def test_never_sealed_version_is_unsealed_with_no_status(env):
    out = verify_signed_seal(env.store, _identity("7"), make_seal(env.model("v7")), env.pair.trusted)
    assert (out.kind, out.status) == (UNSEALED, None)


def test_stored_bundle_verifies_with_model_signing_cli_on_the_files(env):
    model = env.model("v1")
    tags = env.seal("1", model)
    done = model_signing_verify(model, bundle_in_folder(env.store.root, tags[TAG_SEAL_BUNDLE]),
                                env.pair.public_path)
    assert done.returncode == 0, done.stderr


def test_stored_seal_round_trips_as_bytes(env):
    model = env.model("v1")
    env.seal("1", model)
    stored = env.store.read(_identity("1"))
    assert isinstance(stored, StoredSeal) and stored.bundle and stored.attestation
    att = json.loads(stored.attestation)
    assert att["mediaType"] == json.loads(stored.bundle)["mediaType"]


def test_verify_or_seal_seals_only_an_unsealed_version_then_verifies_it(env):
    model = env.model("v5")
    ident = _identity("5")
    out, record = verify_or_seal(env.store, ident, make_seal(model), env.pair.trusted, key=env.pair.key,
                                 may_seal=False, run_id="r5", source="s5")
    assert (out.kind, record) == (UNSEALED, None) and env.store.read(ident) is None
    out, record = verify_or_seal(env.store, ident, make_seal(model), env.pair.trusted, key=env.pair.key,
                                 may_seal=True, run_id="r5", source="s5")
    assert out.kind == VERIFIED and record is not None
    assert record.tags()[TAG_SEAL] == make_seal(model).tree_digest
    # Files changed later, tags deleted: the next "seal, then check" finds the seal, never re-seals.
    (model / NESTED).write_bytes(b"changed")
    out, record = verify_or_seal(env.store, ident, make_seal(model), env.pair.trusted, key=env.pair.key,
                                 may_seal=True, run_id="r5", source="s5", tags={})
    assert (out.kind, out.status, record) == (MISMATCH, "FAILED", None)


def test_verify_or_seal_never_reseals_a_missing_or_legacy_seal(env):
    model = env.model("v6")
    tags = env.seal("6", model)
    shutil.rmtree(env.store.location(_identity("6")))
    out, record = verify_or_seal(env.store, _identity("6"), make_seal(model), env.pair.trusted,
                                 key=env.pair.key, may_seal=True, run_id="r", source="s", tags=tags)
    assert (out.kind, record) == (MISSING, None) and env.store.read(_identity("6")) is None
    legacy = make_seal(model)
    out, record = verify_or_seal(env.store, _identity("6"), make_seal(model), env.pair.trusted,
                                 key=env.pair.key, may_seal=True, run_id="r", source="s", legacy_seal=legacy)
    assert (out.kind, record) == (LEGACY_VERIFIED, None) and env.store.read(_identity("6")) is None
