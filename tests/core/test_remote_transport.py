"""The artifact transport sends what MLflow would send: TLS verified against the configured
certificate, basic auth from ``MLFLOW_TRACKING_USERNAME`` / ``PASSWORD``; failures are ERROR."""

from __future__ import annotations

import pytest

from core.compare.fetch import FetchRequest, read_trees
from core.compare.versions import compare_model_versions
from core.errors import CheckError
from tests.core.conftest import DEEP, Store
from tests.core.test_remote_mutations import config
from tests.support.procs import MlflowServer
from tests.support.recording_proxy import RecordingProxy


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
        with pytest.raises(CheckError) as refused:
            compare_model_versions(config(proxy_store, "flip", host=gate.url), skip_reg=True)
        assert [p for p in gate.refused if p != "/health"]
        assert "s3cr3t-pw" not in str(refused.value) and "wrong" not in str(refused.value)
    finally:
        gate.stop()
