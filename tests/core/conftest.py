"""Remote artifact stores for the core's streaming tests: the proxy store and S3 (moto), each with
the same model trees logged as registered versions, and the same trees kept locally to compare;
and the proxy store's server behind a TLS front end with a self-signed certificate."""

from __future__ import annotations

import datetime
import ipaddress
import os
import random
import shutil
import ssl
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from tests.support.cutting_proxy import CuttingProxy
from tests.support.procs import MlflowServer, MotoS3Server

BUCKET = "guard-artifacts"
SHARD = "data/weights/shard-00001.bin"
DEEP = "artifacts/a/b/c/deep.bin"
CASES = ("identical", "flip", "extra", "missing", "truncated")


def build_tree(root: Path, case: str = "base") -> Path:
    """The base model tree, or one mutation of it (``CASES``), written under ``root``."""
    rng = random.Random(20261201)
    files = {
        "MLmodel": b"flavors:\n  python_function: {}\n",
        "registered_model_meta": b"model_name: m\nmodel_version: 1\n",  # what MLflow adds; ignored
        "config.json": b'{"layers": 3}',
        SHARD: rng.randbytes(3 << 20),
        DEEP: rng.randbytes(64 << 10),
        "artifacts/a/vocab.txt": b"alpha\nbeta\n",
        "artifacts/a/b/notes.txt": b"nested\n",
    }
    if case == "flip":
        deep = bytearray(files[DEEP])
        deep[40000] ^= 0x01
        files[DEEP] = bytes(deep)
    elif case == "extra":
        files["artifacts/a/b/extra.txt"] = b"not in the base model\n"
    elif case == "missing":
        del files["artifacts/a/vocab.txt"]
    elif case == "truncated":
        files[SHARD] = files[SHARD][:-1000]
    if root.exists():
        shutil.rmtree(root)
    for rel, data in files.items():
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_bytes(data)
    return root


@contextmanager
def environ(values: dict[str, str]) -> Iterator[None]:
    """Set environment variables for a while (MLflow's S3 client reads them), then restore them."""
    old = {k: os.environ.get(k) for k in values}
    os.environ.update(values)
    try:
        yield
    finally:
        for k, v in old.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


@dataclass
class Store:
    """A tracking server whose versions ``base`` and each case hold the trees of :func:`build_tree`."""

    kind: str
    url: str
    local: dict[str, Path]
    uris: dict[str, str] = field(default_factory=dict)
    run_ids: dict[str, str] = field(default_factory=dict)
    env: dict[str, str] = field(default_factory=dict)

    def model(self, case: str) -> str:
        return f"{self.kind}-{case}"


def _log_trees(kind: str, url: str, trees: Path, env: dict[str, str]) -> Store:
    from mlflow import MlflowClient

    local = {case: build_tree(trees / case, case) for case in ("base", *CASES)}
    store = Store(kind, url, local, env=env)
    with environ(env):
        client = MlflowClient(url, url)
        exp = client.create_experiment(f"remote-{kind}")
        for case, path in local.items():
            run = client.create_run(exp)
            client.log_artifacts(run.info.run_id, str(path), artifact_path="tree")
            client.set_terminated(run.info.run_id)
            uri = run.info.artifact_uri.rstrip("/") + "/tree"
            client.create_registered_model(store.model(case))
            client.create_model_version(store.model(case), source=uri, run_id=run.info.run_id)
            store.uris[case], store.run_ids[case] = uri, run.info.run_id
    return store


@pytest.fixture(scope="session")
def moto(tmp_path_factory: pytest.TempPathFactory) -> Iterator[MotoS3Server]:
    """A real S3 API on loopback with the bucket the S3-backed tracking server writes to."""
    srv = MotoS3Server(tmp_path_factory.mktemp("moto")).start()
    try:
        import boto3

        boto3.client("s3", endpoint_url=srv.endpoint_url, aws_access_key_id="testing",
                     aws_secret_access_key="testing", region_name="us-east-1").create_bucket(Bucket=BUCKET)
        yield srv
    finally:
        srv.stop()


@pytest.fixture(scope="session")
def s3_store(moto: MotoS3Server, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Store]:
    """``mlflow server --default-artifact-root s3://…`` on moto, with the trees logged."""
    root = tmp_path_factory.mktemp("mlflow-s3")
    srv = MlflowServer(root, artifact_root=f"s3://{BUCKET}/mlflow", env=moto.client_env).start()
    try:
        yield _log_trees("s3", srv.url, root / "trees", moto.client_env)
    finally:
        srv.stop()


@pytest.fixture(scope="session")
def proxy_store(mlflow_server_http: MlflowServer, tmp_path_factory: pytest.TempPathFactory) -> Store:
    """The ``--serve-artifacts`` tracking server (artifacts over HTTP only), with the trees logged."""
    return _log_trees("proxy", mlflow_server_http.url, tmp_path_factory.mktemp("proxy-trees"), {})


@pytest.fixture(params=["proxy", "s3"])
def store(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> Store:
    """Each remote store in turn, with its client environment set for the test."""
    st: Store = request.getfixturevalue(f"{request.param}_store")
    for k, v in st.env.items():
        monkeypatch.setenv(k, v)
    return st


def _self_signed(folder: Path, name: str) -> tuple[Path, Path]:
    """A self-signed certificate for 127.0.0.1 and its key, as PEM files."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
    now = datetime.datetime.now(datetime.timezone.utc)
    cert = (x509.CertificateBuilder().subject_name(subject).issuer_name(subject).public_key(key.public_key())
            .serial_number(x509.random_serial_number()).not_valid_before(now - datetime.timedelta(hours=1))
            .not_valid_after(now + datetime.timedelta(days=1))
            .add_extension(x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
                           critical=False)
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .sign(key, hashes.SHA256()))
    cert_path, key_path = folder / f"{name}.pem", folder / f"{name}.key"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
    return cert_path, key_path


@pytest.fixture(scope="module")
def certs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, tuple[Path, Path]]:
    """The TLS front end's certificate and key (``server``), and another certificate (``other``)."""
    folder = tmp_path_factory.mktemp("certs")
    return {"server": _self_signed(folder, "server"), "other": _self_signed(folder, "other")}


@pytest.fixture
def https_server(mlflow_server_http: MlflowServer, certs) -> Iterator[CuttingProxy]:
    """The artifact-serving tracking server behind a TLS front end with the self-signed certificate."""
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(*certs["server"])
    proxy = CuttingProxy(mlflow_server_http.port, cut_after=1 << 62, cuts=0, tls=ctx).start()
    yield proxy
    proxy.stop()
