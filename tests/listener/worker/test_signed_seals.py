"""Signed seals through the real worker path: a real mlflow server, the guard's key, its seal store."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest
from mlflow import MlflowClient

from core.seal.keys import load_trusted_keys
from core.seal.store import ATTESTATION_FILE, BUNDLE_FILE, FOLDER_PUBLIC_SCHEME
from listener.config import Settings
from listener.protocol import ValidationRequest
from listener.store import get_store
from listener.web import create_app
from listener.worker.job import process_job
from tests.core.signing_support import make_key, model_signing_verify
from tests.listener.worker.helpers import local_model_path, register_model

SECRET = "signed-seal-test-secret"
NESTED = Path("data") / "deep" / "nested" / "layer.bin"
CLI = str(Path(sys.executable).parent / "check-model-version")


def _request(model: str, version: str, action: str = "seal_and_check", alias: str | None = None) -> dict:
    trigger = "model_version.created" if action == "seal_and_check" else "model_version_alias.created"
    return ValidationRequest(registry="mlflow", model=model, version=version, trigger=trigger, action=action,
                             to_stage=None, alias=alias, gate=False, delivery_key=uuid.uuid4().hex,
                             received_at=time.time()).to_dict()


def _alias(model: str, version: str) -> dict:
    return _request(model, version, action="check", alias="champion")


@pytest.fixture()
def key(tmp_path: Path):
    return make_key(tmp_path / "keys")


@pytest.fixture()
def settings(mlflow_server, tmp_path: Path, key) -> Settings:
    # A seal folder (GUARD_SEAL_STORE), so these tests can reach into the seal's files.
    (tmp_path / "guard" / "seals").mkdir(parents=True)
    return Settings(tracking_uri=mlflow_server.url, data_dir=tmp_path / "guard", mlflow_secrets=[SECRET],
                    signing_key=key.key, max_retries=0, seal_store_uri=str(tmp_path / "guard" / "seals"))


def _bundle(settings: Settings, tags: dict[str, str]) -> Path:
    """The bundle a ``validation.seal_bundle`` tag names (relative to the seal folder, not a host path)."""
    location = tags["validation.seal_bundle"]
    assert location.startswith(FOLDER_PUBLIC_SCHEME) and str(settings.data_dir) not in location
    return Path(settings.seal_store_uri) / location.removeprefix(FOLDER_PUBLIC_SCHEME)


@pytest.fixture()
def client(mlflow_server) -> MlflowClient:
    return MlflowClient(tracking_uri=mlflow_server.url)


def _sealed(client: MlflowClient, settings: Settings, tmp_path: Path) -> tuple[str, str, Path]:
    name, version = register_model(client, tmp_path)
    assert process_job(_request(name, version), settings)["status"] == "PASSED"
    bundle = _bundle(settings, client.get_model_version(name, version).tags)
    return name, version, bundle.parent


def _verdict(settings: Settings, req: dict) -> dict:
    return get_store(settings.store_url).get(req["delivery_key"])


def test_new_version_gets_a_signed_seal_that_model_signing_verifies(settings, client, tmp_path, key):
    name, version, folder = _sealed(client, settings, tmp_path)
    mv = client.get_model_version(name, version)
    assert "validation.manifest" not in mv.tags
    assert folder.is_relative_to(settings.data_dir / "seals")
    assert (folder / ATTESTATION_FILE).is_file()
    report = get_store(settings.store_url).latest_for_version("mlflow", name, version)["report"]
    assert report["sealed_now"] is True and report["seal_detail"]["kind"] == "verified"
    assert mv.tags["validation.seal"] == report["seal_detail"]["sealed_tree_digest"]
    # A third party needs only the served model, the bundle and the public key.
    served = local_model_path(client, name, version)
    done = model_signing_verify(served, folder / BUNDLE_FILE, key.public_path)
    assert done.returncode == 0, done.stderr + done.stdout
    # A second check verifies against the seal; the seal is never rewritten.
    before = (folder / ATTESTATION_FILE).read_bytes()
    assert process_job(_alias(name, version), settings)["status"] == "PASSED"
    assert (folder / ATTESTATION_FILE).read_bytes() == before


def test_tampered_nested_file_with_rewritten_seal_tags_fails(settings, client, tmp_path):
    name, version, folder = _sealed(client, settings, tmp_path)
    before = (folder / ATTESTATION_FILE).read_bytes()
    target = local_model_path(client, name, version) / NESTED
    target.write_bytes(b"tampered weights")
    from core.seal.digest import make_seal

    forged = make_seal(local_model_path(client, name, version)).tree_digest
    client.set_model_version_tag(name, version, "validation.seal", forged)
    req = _alias(name, version)
    assert process_job(req, settings)["status"] == "FAILED"
    mv = client.get_model_version(name, version)
    assert mv.tags["validation.status"] == "FAILED"
    assert str(NESTED) in mv.tags["validation.summary"]
    assert _verdict(settings, req)["report"]["seal_detail"]["tag_digest_matches"] is False
    assert (folder / ATTESTATION_FILE).read_bytes() == before


def test_deleted_seal_tags_and_a_new_event_never_reseal(settings, client, tmp_path):
    name, version, folder = _sealed(client, settings, tmp_path)
    before = (folder / ATTESTATION_FILE).read_bytes()
    (local_model_path(client, name, version) / NESTED).write_bytes(b"tampered")
    for tag in ("validation.seal", "validation.seal_bundle"):
        client.delete_model_version_tag(name, version, tag)
    # The store is looked up by identity: the seal is still found, and the files do not match it.
    assert process_job(_request(name, version), settings)["status"] == "FAILED"
    assert (folder / ATTESTATION_FILE).read_bytes() == before
    # The seal gone from the store while the tags remain: FAILED "missing", and nothing is sealed anew.
    shutil.rmtree(folder)
    client.set_model_version_tag(name, version, "validation.seal_bundle", str(folder / BUNDLE_FILE))
    req = _alias(name, version)
    assert process_job(req, settings)["status"] == "FAILED"
    assert "not re-sealing" in client.get_model_version(name, version).tags["validation.summary"]
    assert not folder.exists()


def test_another_versions_signed_files_and_seal_fail_on_identity(settings, client, tmp_path):
    name, v1, folder1 = _sealed(client, settings, tmp_path)
    _, v2 = register_model(client, tmp_path, name=name, files={"MLmodel": "other\n", "w.bin": "x" * 10})
    assert process_job(_request(name, v2), settings)["status"] == "PASSED"
    folder2 = _bundle(settings, client.get_model_version(name, v2).tags).parent
    # Swap in version 1's files and its signed seal under version 2.
    files2 = local_model_path(client, name, v2)
    shutil.rmtree(files2)
    shutil.copytree(local_model_path(client, name, v1), files2)
    for f in (BUNDLE_FILE, ATTESTATION_FILE):
        shutil.copyfile(folder1 / f, folder2 / f)
    assert process_job(_alias(name, v2), settings)["status"] == "FAILED"
    assert "another version" in client.get_model_version(name, v2).tags["validation.summary"]


def test_untrusted_key_fails_and_rotation_passes(settings, client, tmp_path, key):
    name, version, _ = _sealed(client, settings, tmp_path)
    new = make_key(tmp_path / "keys", "new")
    untrusted = Settings(**{**settings.__dict__, "signing_key": new.key, "trusted_keys": new.trusted})
    assert process_job(_alias(name, version), untrusted)["status"] == "FAILED"
    assert "not valid" in client.get_model_version(name, version).tags["validation.summary"]
    rotated = Settings(**{**settings.__dict__, "signing_key": new.key,
                          "trusted_keys": load_trusted_keys([new.public_path, key.public_path])})
    assert process_job(_alias(name, version), rotated)["status"] == "PASSED"


def test_corrupt_or_truncated_bundle_is_an_error_with_reason(settings, client, tmp_path):
    name, version, folder = _sealed(client, settings, tmp_path)
    bundle = folder / BUNDLE_FILE
    good = bundle.read_bytes()
    for damaged in (good[: len(good) // 2], b"{not json"):
        bundle.write_bytes(damaged)
        req = _alias(name, version)
        assert process_job(req, settings)["status"] == "ERROR"
        row = _verdict(settings, req)
        assert row["status"] == "ERROR" and "cannot be read" in client.get_model_version(
            name, version).tags["validation.summary"]
    bundle.write_bytes(good)  # nothing lost: the seal verifies again once the bundle is back
    assert process_job(_alias(name, version), settings)["status"] == "PASSED"


def test_unreachable_seal_store_is_an_error_never_a_pass(settings, client, tmp_path):
    name, version = register_model(client, tmp_path)
    gone = Settings(**{**settings.__dict__, "seal_store_uri": str(tmp_path / "unmounted" / "seals")})
    req = _request(name, version)
    assert process_job(req, gone)["status"] == "ERROR"
    assert "does not exist" in _verdict(gone, req)["summary"]
    assert "validation.seal" not in client.get_model_version(name, version).tags
    # Nothing lost: with the store back, the version is sealed as it would have been.
    assert process_job(_request(name, version), settings)["status"] == "PASSED"


def test_without_a_signing_key_the_verdict_says_the_seal_is_unsigned(mlflow_server, client, tmp_path):
    plain = Settings(tracking_uri=mlflow_server.url, data_dir=tmp_path / "plain", mlflow_secrets=[SECRET])
    name, version = register_model(client, tmp_path)
    assert process_job(_request(name, version), plain)["status"] == "PASSED"
    tags = client.get_model_version(name, version).tags
    assert "unsigned" in tags["validation.summary"] and "validation.manifest" in tags
    assert "validation.seal_bundle" not in tags


def test_seal_key_endpoint_serves_the_public_key(settings, key, tmp_path):
    app = create_app(settings)
    answer = app.test_client().get("/seal-key.pem")
    assert answer.status_code == 200 and answer.content_type == "application/x-pem-file"
    assert answer.data == key.public_path.read_bytes() and b"PRIVATE" not in answer.data
    none = create_app(Settings(data_dir=tmp_path / "nokey")).test_client().get("/seal-key.pem")
    assert none.status_code == 404 and "GUARD_SIGNING_KEY" in none.get_json()["reason"]


def _cli(mlflow_server, name: str, version: str, *extra: str) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k not in ("MLFLOW_TRACKING_URI", "MLFLOW_REGISTRY_URI")}
    return subprocess.run([CLI, "--model", name, "--version-or-stage", version, "--tracking-uri",
                           mlflow_server.url, *extra], env=env, capture_output=True, text=True, timeout=300)


def test_check_model_version_verifies_the_signed_seal(mlflow_server, settings, client, tmp_path, key):
    name, version, _ = _sealed(client, settings, tmp_path)
    store = ["--seal-store", str(settings.data_dir / "seals"), "--public-key", str(key.public_path)]
    ok = _cli(mlflow_server, name, version, *store)
    assert ok.returncode == 0, ok.stdout + ok.stderr
    assert "signed seal verified" in ok.stdout
    unsealed_name, unsealed = register_model(client, tmp_path)
    none = _cli(mlflow_server, unsealed_name, unsealed, *store)
    assert none.returncode == 1 and "no signed seal" in none.stdout
    (local_model_path(client, name, version) / NESTED).write_bytes(b"tampered")
    bad = _cli(mlflow_server, name, version, *store)
    assert bad.returncode == 1 and str(NESTED) in bad.stdout
    other = make_key(tmp_path / "keys", "stranger")
    wrong = _cli(mlflow_server, name, version, "--seal-store", str(settings.data_dir / "seals"),
                 "--public-key", str(other.public_path))
    assert wrong.returncode == 1 and "not valid" in wrong.stdout


def test_seal_store_that_refuses_writes_is_an_error_and_nothing_is_lost(settings, client, tmp_path):
    name, version = register_model(client, tmp_path)
    root = tmp_path / "refusing"
    root.mkdir()
    (root / "v1").write_text("a file where the seal folders must go")  # the store can be used for nothing
    refusing = Settings(**{**settings.__dict__, "seal_store_uri": str(root)})
    req = _request(name, version)
    assert process_job(req, refusing)["status"] == "ERROR"
    assert f"seal store {root}" in _verdict(refusing, req)["summary"]
    assert "validation.seal" not in client.get_model_version(name, version).tags
    (root / "v1").unlink()
    assert process_job(_request(name, version), refusing)["status"] == "PASSED"
    assert _bundle(refusing, client.get_model_version(name, version).tags).is_relative_to(root)
