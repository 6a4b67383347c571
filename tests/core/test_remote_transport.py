"""The artifact transport sends what MLflow would send: TLS verified against the configured
certificate, basic auth from ``MLFLOW_TRACKING_USERNAME`` / ``PASSWORD``; failures are ERROR."""

from __future__ import annotations

import datetime
import ipaddress
import ssl
from pathlib import Path

import pytest

from core.compare.fetch import FetchRequest, read_trees
from core.compare.versions import compare_model_versions
from core.errors import CheckError
from tests.core.conftest import DEEP, Store
from tests.core.test_remote_mutations import config
from tests.support.cutting_proxy import CuttingProxy
from tests.support.procs import MlflowServer
from tests.support.recording_proxy import RecordingProxy


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
    folder = tmp_path_factory.mktemp("certs")
    return {"server": _self_signed(folder, "server"), "other": _self_signed(folder, "other")}


@pytest.fixture
def https_server(mlflow_server_http: MlflowServer, certs) -> CuttingProxy:
    """The artifact-serving tracking server behind a TLS front end with the self-signed certificate."""
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(*certs["server"])
    proxy = CuttingProxy(mlflow_server_http.port, cut_after=1 << 62, cuts=0, tls=ctx).start()
    yield proxy
    proxy.stop()


def test_tls_with_the_server_certificate_from_mlflow_settings(proxy_store: Store, https_server, certs,
                                                              monkeypatch):
    monkeypatch.setenv("MLFLOW_TRACKING_SERVER_CERT_PATH", str(certs["server"][0]))
    for case, status in (("identical", "PASSED"), ("flip", "FAILED")):
        res = compare_model_versions(config(proxy_store, case, host=https_server.url), skip_reg=True)
        assert res.status == status, res.summary
    assert [d.path for d in res.run_differences] == [DEEP]
    assert https_server.connections >= 1


def test_tls_with_the_wrong_certificate_is_an_error(proxy_store: Store, https_server, certs, monkeypatch):
    monkeypatch.setenv("MLFLOW_TRACKING_SERVER_CERT_PATH", str(certs["other"][0]))
    # The check stops with an error naming the certificate (the CLI reports it as ERROR), never a difference.
    with pytest.raises(CheckError, match="CERTIFICATE_VERIFY_FAILED"):
        compare_model_versions(config(proxy_store, "flip", host=https_server.url), skip_reg=True)
    # The artifact transport itself, given the file's URL: a certificate error, not a retried outage.
    path = proxy_store.uris["base"].split(":", 1)[1].lstrip("/")
    url = f"{https_server.url}/api/2.0/mlflow-artifacts/artifacts/{path}"
    with pytest.raises(CheckError, match="TLS"), read_trees([FetchRequest(url)]):
        pass


def test_tls_unverified_when_mlflow_is_told_to_skip_verification(proxy_store: Store, https_server,
                                                                  monkeypatch):
    monkeypatch.setenv("MLFLOW_TRACKING_INSECURE_TLS", "true")
    res = compare_model_versions(config(proxy_store, "flip", host=https_server.url), skip_reg=True)
    assert res.status == "FAILED" and [d.path for d in res.run_differences] == [DEEP], res.summary


def test_basic_auth_from_mlflow_credentials(proxy_store: Store, mlflow_server_http: MlflowServer,
                                            monkeypatch):
    gate = RecordingProxy(mlflow_server_http.url, basic_auth=("guard", "s3cr3t-pw")).start()
    try:
        monkeypatch.setenv("MLFLOW_TRACKING_USERNAME", "guard")
        monkeypatch.setenv("MLFLOW_TRACKING_PASSWORD", "s3cr3t-pw")
        res = compare_model_versions(config(proxy_store, "flip", host=gate.url), skip_reg=True)
        assert res.status == "FAILED" and [d.path for d in res.run_differences] == [DEEP], res.summary
        # Only the reachability probe goes without credentials (it takes a 401 as "the server is there").
        assert set(gate.refused) <= {"/health"}
        file_gets = [p for m, p in gate.requests if m == "GET" and "/mlflow-artifacts/artifacts/" in p]
        assert file_gets  # the files themselves went through the gate, with the credentials
        monkeypatch.setenv("MLFLOW_TRACKING_PASSWORD", "wrong")
        with pytest.raises(CheckError, match="401") as refused:
            compare_model_versions(config(proxy_store, "flip", host=gate.url), skip_reg=True)
        assert [p for p in gate.refused if p != "/health"]
        assert "s3cr3t-pw" not in str(refused.value) and "wrong" not in str(refused.value)
    finally:
        gate.stop()
