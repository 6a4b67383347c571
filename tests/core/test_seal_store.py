"""The seal store: layout by identity, write-once, folder and S3 (a real S3 API), and every failure mode."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import boto3
import pytest

from core.errors import CheckError, SealExistsError, TransientError
from core.seal.attestation import SealIdentity, registry_identity
from core.seal.digest import make_seal
from core.seal.signed import CORRUPT, VERIFIED, create_signed_seal, verify_signed_seal
from core.seal.store import (
    ATTESTATION_FILE,
    BUNDLE_FILE,
    ArtifactSealStore,
    FolderSealStore,
    StoredSeal,
    encode_component,
    open_seal_store,
    seal_relative_dir,
)
from tests.core.signing_support import make_key, write_model
from tests.support.procs import MotoS3Server

IDENTITY = SealIdentity("http://mlflow.example.com", "churn", "3")


def test_names_are_encoded_so_no_identity_climbs_out_or_collides():
    for name in ("..", ".", ".hidden", "a/../../etc", "a\\b", "名前 model", "x" * 400, "~x", "a%2Fb"):
        enc = encode_component(name)
        assert "/" not in enc and "\\" not in enc and not enc.startswith(".") and len(enc) <= 150
    names = ["a/b", "a%2Fb", "a b", "A b", "x" * 400, "x" * 401, "..", "%2E%2E"]
    assert len({encode_component(n) for n in names}) == len(names)
    assert encode_component("churn-model_v2.1") == "churn-model_v2.1"  # readable when it can be
    rel = seal_relative_dir(SealIdentity("https://dbc-1.cloud.databricks.com", "main.ml.churn", "12"))
    assert rel == "v1/https%3A%2F%2Fdbc-1.cloud.databricks.com/main.ml.churn/12"


def test_registry_identity_is_stable_and_free_of_credentials():
    assert registry_identity("https://user:tok3n@MLflow.Example.com:8443/") == "https://mlflow.example.com:8443"
    assert registry_identity("http://127.0.0.1:5000?x=1") == "http://127.0.0.1:5000"
    for uri in ("databricks-uc", "databricks-uc://prod"):
        assert registry_identity(uri, workspace_host="DBC-1.cloud.databricks.com/") == \
            "databricks-uc+https://dbc-1.cloud.databricks.com"
    assert registry_identity("databricks", workspace_host="https://adb-2.azuredatabricks.net") == \
        "databricks+https://adb-2.azuredatabricks.net"
    with pytest.raises(CheckError, match="workspace host"):
        registry_identity("databricks")
    assert SealIdentity("r", "m", "03") == SealIdentity("r", "m", "3")
    with pytest.raises(CheckError):
        registry_identity("")


def test_folder_store_writes_once_and_keeps_the_first_seal(tmp_path: Path):
    store = open_seal_store(tmp_path / "seals", create=True)
    assert isinstance(store, FolderSealStore)
    assert store.read(IDENTITY) is None
    first = StoredSeal(b"bundle-1", b"attestation-1")
    where = store.write(IDENTITY, first)
    assert Path(where) == tmp_path / "seals" / seal_relative_dir(IDENTITY)
    with pytest.raises(SealExistsError, match="never replaced"):
        store.write(IDENTITY, StoredSeal(b"bundle-2", b"attestation-2"))
    assert store.read(IDENTITY) == first
    assert sorted(p.name for p in Path(where).iterdir()) == [ATTESTATION_FILE, BUNDLE_FILE]
    assert not [p for p in Path(where).parent.iterdir() if p.name.startswith(".staging")]


def test_file_uri_is_a_folder_store(tmp_path: Path):
    store = open_seal_store(f"file://{tmp_path}/seals", create=True)
    assert isinstance(store, FolderSealStore) and store.root == tmp_path / "seals"


def test_missing_store_folder_is_an_error_not_an_empty_store(tmp_path: Path):
    store = open_seal_store(tmp_path / "not-mounted")
    with pytest.raises(TransientError, match="does not exist"):
        store.read(IDENTITY)
    with pytest.raises(TransientError, match="does not exist"):
        store.write(IDENTITY, StoredSeal(b"b", b"a"))
    assert not (tmp_path / "not-mounted").exists()


def _immutable(path: Path) -> bool:
    # Root ignores permission bits; an immutable folder refuses writes even to root.
    done = subprocess.run(["chattr", "+i", str(path)], capture_output=True)
    return done.returncode == 0


def test_read_only_store_folder_is_an_error_and_sealing_never_happens(tmp_path: Path):
    root = tmp_path / "seals"
    root.mkdir()
    if shutil.which("chattr") is None or not _immutable(root):
        pytest.skip("this file system cannot make a folder read-only (chattr +i)")
    try:
        store = open_seal_store(root)
        model = write_model(tmp_path / "m")
        pair = make_key(tmp_path)
        with pytest.raises(CheckError, match="not writable") as err:
            create_signed_seal(store, IDENTITY, make_seal(model), pair.key, run_id="r", source="s")
        assert not isinstance(err.value, SealExistsError)
        assert store.read(IDENTITY) is None
    finally:
        subprocess.run(["chattr", "-i", str(root)], check=True)


@pytest.fixture(scope="module")
def moto(tmp_path_factory: pytest.TempPathFactory):
    server = MotoS3Server(tmp_path_factory.mktemp("moto")).start()
    yield server
    server.stop()


@pytest.fixture
def s3_env(moto: MotoS3Server, monkeypatch: pytest.MonkeyPatch) -> MotoS3Server:
    for key, value in moto.client_env.items():
        monkeypatch.setenv(key, value)
    monkeypatch.setenv("AWS_MAX_ATTEMPTS", "2")
    return moto


def _bucket(moto: MotoS3Server, name: str) -> str:
    boto3.client("s3", endpoint_url=moto.endpoint_url, region_name="us-east-1").create_bucket(Bucket=name)
    return name


def test_s3_store_round_trip_write_once_and_verification(s3_env: MotoS3Server, tmp_path: Path):
    bucket = _bucket(s3_env, "seals-ok")
    store = open_seal_store(f"s3://{bucket}/guard")
    assert isinstance(store, ArtifactSealStore)
    model = write_model(tmp_path / "m")
    pair = make_key(tmp_path)
    assert store.read(IDENTITY) is None
    record = create_signed_seal(store, IDENTITY, make_seal(model), pair.key, run_id="r", source="s")
    assert record.bundle_location == f"s3://{bucket}/guard/{seal_relative_dir(IDENTITY)}/{BUNDLE_FILE}"
    keys = sorted(o["Key"] for o in boto3.client("s3", endpoint_url=s3_env.endpoint_url)
                  .list_objects_v2(Bucket=bucket)["Contents"])
    assert keys == [f"guard/{seal_relative_dir(IDENTITY)}/{n}" for n in (ATTESTATION_FILE, BUNDLE_FILE)]
    out = verify_signed_seal(store, IDENTITY, make_seal(model), pair.trusted)
    assert out.kind == VERIFIED and out.location.startswith(f"s3://{bucket}/guard/")
    with pytest.raises(SealExistsError):
        create_signed_seal(store, IDENTITY, make_seal(model), pair.key, run_id="r", source="s")


def test_truncated_bundle_in_s3_is_corrupt_with_its_reason(s3_env: MotoS3Server, tmp_path: Path):
    bucket = _bucket(s3_env, "seals-corrupt")
    store = open_seal_store(f"s3://{bucket}")
    model = write_model(tmp_path / "m")
    pair = make_key(tmp_path)
    create_signed_seal(store, IDENTITY, make_seal(model), pair.key, run_id="r", source="s")
    s3 = boto3.client("s3", endpoint_url=s3_env.endpoint_url)
    key = f"{seal_relative_dir(IDENTITY)}/{BUNDLE_FILE}"
    body = s3.get_object(Bucket=bucket, Key=key)["Body"].read()
    s3.put_object(Bucket=bucket, Key=key, Body=body[:300])
    out = verify_signed_seal(store, IDENTITY, make_seal(model), pair.trusted)
    assert (out.kind, out.status) == (CORRUPT, "ERROR") and "truncated" in out.reason


def test_s3_bucket_that_does_not_exist_is_a_clear_error(s3_env: MotoS3Server, tmp_path: Path):
    store = open_seal_store("s3://no-such-bucket/seals")
    with pytest.raises(CheckError, match="no-such-bucket|NoSuchBucket|does not exist") as err:
        store.read(IDENTITY)
    assert "seal store" in str(err.value)
    with pytest.raises(CheckError):
        store.write(IDENTITY, StoredSeal(b"b", b"a"))


def test_unreachable_s3_store_is_transient_never_a_pass(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    server = MotoS3Server(tmp_path / "moto-gone").start()
    for key, value in server.client_env.items():
        monkeypatch.setenv(key, value)
    monkeypatch.setenv("AWS_MAX_ATTEMPTS", "2")
    _bucket(server, "seals-gone")
    store = open_seal_store("s3://seals-gone")
    model = write_model(tmp_path / "m")
    pair = make_key(tmp_path)
    create_signed_seal(store, IDENTITY, make_seal(model), pair.key, run_id="r", source="s")
    server.stop()
    with pytest.raises(TransientError, match="unreachable"):
        verify_signed_seal(store, IDENTITY, make_seal(model), pair.trusted)
    with pytest.raises(TransientError, match="unreachable"):
        create_signed_seal(store, SealIdentity(IDENTITY.registry, "churn", "4"), make_seal(model), pair.key,
                           run_id="r", source="s")


def test_read_only_s3_store_refuses_the_seal_with_a_clear_error(tmp_path: Path,
                                                                monkeypatch: pytest.MonkeyPatch):
    server = MotoS3Server(tmp_path / "moto-iam")
    # moto enforces IAM after the first four requests: bucket, user, policy, access key.
    server.env["INITIAL_NO_AUTH_ACTION_COUNT"] = "4"
    server.start()
    try:
        admin = {"endpoint_url": server.endpoint_url, "region_name": "us-east-1",
                 "aws_access_key_id": "testing", "aws_secret_access_key": "testing"}
        boto3.client("s3", **admin).create_bucket(Bucket="seals-read-only")
        iam = boto3.client("iam", **admin)
        iam.create_user(UserName="reader")
        allow_read = {"Effect": "Allow", "Action": ["s3:GetObject", "s3:ListBucket"], "Resource": "*"}
        iam.put_user_policy(UserName="reader", PolicyName="read-only",
                            PolicyDocument=json.dumps({"Version": "2012-10-17", "Statement": [allow_read]}))
        key = iam.create_access_key(UserName="reader")["AccessKey"]
        for name, value in server.client_env.items():
            monkeypatch.setenv(name, value)
        monkeypatch.setenv("AWS_ACCESS_KEY_ID", key["AccessKeyId"])
        monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", key["SecretAccessKey"])
        monkeypatch.setenv("AWS_MAX_ATTEMPTS", "2")
        # boto3's default session keeps the first credentials it resolved; start a fresh one.
        monkeypatch.setattr(boto3, "DEFAULT_SESSION", None)
        store = open_seal_store("s3://seals-read-only/guard")
        model = write_model(tmp_path / "m")
        pair = make_key(tmp_path)
        with pytest.raises(CheckError, match="refuses access") as err:
            create_signed_seal(store, IDENTITY, make_seal(model), pair.key, run_id="r", source="s")
        assert key["SecretAccessKey"] not in str(err.value)
        out = verify_signed_seal(store, IDENTITY, make_seal(model), pair.trusted)
        assert out.status is None  # nothing was sealed, so nothing can pass against it
    finally:
        server.stop()
