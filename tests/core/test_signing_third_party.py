"""A third party verifies a served model with the commands of docs/signed-seals.md alone (MLflow download,
model_signing)."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

from mlflow import MlflowClient

from core.seal.attestation import SealIdentity, registry_identity
from core.seal.digest import make_seal
from core.seal.signed import create_signed_seal
from core.seal.store import open_seal_store
from core.tags import TAG_SEAL_BUNDLE
from tests.core.signing_support import FILES, bundle_in_folder, make_key, write_model

BIN = Path(sys.executable).parent
NESTED = "data/deep/nested/weights.bin"


def _register(client: MlflowClient, name: str, files_root: Path) -> str:
    exp = client.create_experiment(f"{name}-exp")
    run = client.create_run(exp)
    client.log_artifacts(run.info.run_id, str(files_root), "model")
    client.set_terminated(run.info.run_id)
    client.create_registered_model(name)
    mv = client.create_model_version(name, f"{run.info.artifact_uri}/model", run_id=run.info.run_id)
    return str(mv.version)


def _third_party(workdir: Path, tracking_uri: str, model_uri: str, bundle: Path,
                 key_pem: bytes) -> subprocess.CompletedProcess:
    """The documented steps, each a plain command: fetch key and bundle, download the model, verify."""
    workdir.mkdir(parents=True)
    (workdir / "seal-key.pem").write_bytes(key_pem)  # curl -o seal-key.pem https://GUARD/seal-key.pem
    shutil.copyfile(bundle, workdir / "model.sig")  # the file named by the validation.seal_bundle tag
    env = {**os.environ, "MLFLOW_TRACKING_URI": tracking_uri, "PATH": f"{BIN}:{os.environ['PATH']}"}
    subprocess.run(["mlflow", "artifacts", "download", "--artifact-uri", model_uri, "--dst-path", "./model"],
                   cwd=workdir, env=env, check=True, capture_output=True, timeout=180)
    return subprocess.run(["model_signing", "verify", "key", "./model", "--signature", "model.sig",
                           "--public_key", "seal-key.pem"], cwd=workdir, env=env, capture_output=True,
                          text=True, timeout=120)


def test_served_model_verifies_with_model_signing_alone_and_a_tampered_one_does_not(
        mlflow_server_http, tmp_path: Path):
    client = MlflowClient(mlflow_server_http.url)
    name = "third-party-churn"
    version = _register(client, name, write_model(tmp_path / "trained"))
    pair = make_key(tmp_path / "keys")
    store = open_seal_store(tmp_path / "seals", create=True)
    identity = SealIdentity(registry_identity(mlflow_server_http.url), name, version)
    record = create_signed_seal(store, identity, make_seal(tmp_path / "trained"), pair.key, run_id=None,
                                source=f"models:/{name}/{version}")
    for key, value in record.tags().items():
        client.set_model_version_tag(name, version, key, value)
    bundle = bundle_in_folder(store.root, client.get_model_version(name, version).tags[TAG_SEAL_BUNDLE])

    done = _third_party(tmp_path / "auditor", mlflow_server_http.url, f"models:/{name}/{version}", bundle,
                        pair.key.public_pem())
    assert done.returncode == 0, done.stderr
    assert "Verification succeeded" in done.stdout
    assert (tmp_path / "auditor" / "model" / NESTED).read_bytes() == FILES[NESTED]

    # Someone with write access to the artifact store changes one nested file of the served model.
    served = next(mlflow_server_http.artifacts.rglob(NESTED))
    served.write_bytes(b"tampered" + served.read_bytes()[8:])
    done = _third_party(tmp_path / "auditor-2", mlflow_server_http.url, f"models:/{name}/{version}", bundle,
                        pair.key.public_pem())
    assert done.returncode == 1
    assert "Verification failed" in done.stderr and NESTED in done.stderr
