"""model-signing bundles made from the core's digests verify with model-signing itself, outside our code."""

from __future__ import annotations

import base64
import hashlib
import json
import subprocess
from pathlib import Path

import model_signing
import pytest

from core.errors import SealCorrupt, SealInvalid
from core.seal.digest import make_seal
from core.seal.manifest import FileDigest, Manifest
from core.seal.signing import BUNDLE_IGNORED_PATHS, sign_bundle, verify_bundle
from tests.core.signing_support import FILES, MODEL_SIGNING_CLI, make_key, model_signing_verify, write_model


def _statement(bundle: bytes) -> dict:
    return json.loads(base64.b64decode(json.loads(bundle)["dsseEnvelope"]["payload"]))


def test_bundle_from_digests_has_the_payload_model_signing_sign_key_makes(tmp_path: Path):
    model = write_model(tmp_path / "churn")
    (model / "registered_model_meta").write_text("model_name: churn\n")
    pair = make_key(tmp_path)
    ours = _statement(sign_bundle(make_seal(model), pair.key, "churn"))

    cli_sig = tmp_path / "cli.sig"
    subprocess.run([MODEL_SIGNING_CLI, "sign", "key", str(model), "--private_key", pair.key.path,
                    "--signature", str(cli_sig), "--ignore-paths", str(model / "registered_model_meta")],
                   check=True, capture_output=True, timeout=120)
    theirs = _statement(cli_sig.read_bytes())

    assert ours["subject"] == theirs["subject"]  # same root digest over the same files
    assert ours["predicate"]["resources"] == theirs["predicate"]["resources"]
    assert sorted(r["name"] for r in ours["predicate"]["resources"]) == sorted(FILES)
    ser_ours, ser_theirs = ours["predicate"]["serialization"], theirs["predicate"]["serialization"]
    assert sorted(ser_ours.pop("ignore_paths")) == sorted(ser_theirs.pop("ignore_paths")) == list(
        BUNDLE_IGNORED_PATHS)
    assert ser_ours == ser_theirs == {"method": "files", "hash_type": "sha256", "allow_symlinks": False}


def test_a_model_only_ever_streamed_is_signed_and_verifies_once_on_disk(tmp_path: Path):
    # Digests computed from bytes as they stream past, no file anywhere: what a remote check has.
    digests = {rel: FileDigest(len(data), hashlib.sha256(data).hexdigest()) for rel, data in FILES.items()}
    pair = make_key(tmp_path)
    bundle = tmp_path / "model.sig"
    bundle.write_bytes(sign_bundle(Manifest.build(digests), pair.key, "churn"))

    # Later a third party downloads the model (MLflow adds registered_model_meta) and verifies it.
    model = write_model(tmp_path / "download")
    (model / "registered_model_meta").write_text("model_name: churn\nmodel_version: '3'\n")
    verifier = model_signing.verifying.Config().use_elliptic_key_verifier(public_key=pair.public_path)
    verifier.verify(model, bundle)  # model-signing's own Python verifier
    done = model_signing_verify(model, bundle, pair.public_path)
    assert done.returncode == 0, done.stderr
    assert "Verification succeeded" in done.stdout

    deep = model / "data" / "deep" / "nested" / "weights.bin"
    deep.write_bytes(deep.read_bytes()[:-1] + b"\xff")
    done = model_signing_verify(model, bundle, pair.public_path)
    assert done.returncode == 1
    assert "data/deep/nested/weights.bin" in done.stderr
    with pytest.raises(ValueError, match="weights.bin"):
        model_signing.verifying.Config().use_elliptic_key_verifier(public_key=pair.public_path).verify(
            model, bundle)


def test_git_files_are_left_out_of_the_bundle_as_model_signing_does(tmp_path: Path):
    model = write_model(tmp_path / "m")
    (model / ".gitignore").write_text("*.tmp\n")
    (model / ".git").mkdir()
    (model / ".git" / "HEAD").write_text("ref: refs/heads/main\n")
    pair = make_key(tmp_path)
    sig = tmp_path / "model.sig"
    sig.write_bytes(sign_bundle(make_seal(model), pair.key, "m"))
    assert verify_bundle(sig.read_bytes(), pair.trusted).files.keys() == FILES.keys()
    assert model_signing_verify(model, sig, pair.public_path).returncode == 0


def test_verify_bundle_reads_the_signed_digests(tmp_path: Path):
    model = write_model(tmp_path / "m")
    manifest = make_seal(model)
    pair = make_key(tmp_path)
    verified = verify_bundle(sign_bundle(manifest, pair.key, "m"), pair.trusted)
    assert verified.key.key_id == pair.key.key_id
    assert verified.files == {p: d.sha256 for p, d in manifest.files.items()}


def test_untrusted_key_and_altered_payload_are_invalid(tmp_path: Path):
    manifest = make_seal(write_model(tmp_path / "m"))
    pair, other = make_key(tmp_path, "a"), make_key(tmp_path, "b")
    bundle = sign_bundle(manifest, pair.key, "m")
    with pytest.raises(SealInvalid, match="not trusted"):
        verify_bundle(bundle, other.trusted)

    doc = json.loads(bundle)
    statement = _statement(bundle)
    statement["predicate"]["resources"][0]["digest"] = "00" * 32
    doc["dsseEnvelope"]["payload"] = base64.b64encode(json.dumps(statement).encode()).decode()
    with pytest.raises(SealInvalid, match="signature does not verify"):
        verify_bundle(json.dumps(doc).encode(), pair.trusted)


@pytest.mark.parametrize("cut", [0, 1, 100, -10])
def test_truncated_bundle_is_corrupt_with_its_reason(tmp_path: Path, cut: int):
    pair = make_key(tmp_path)
    bundle = sign_bundle(make_seal(write_model(tmp_path / "m")), pair.key, "m")
    with pytest.raises(SealCorrupt, match="empty|cannot be read"):
        verify_bundle(bundle[:cut], pair.trusted)
