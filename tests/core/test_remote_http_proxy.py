"""The artifact transport honours the HTTP(S) proxy variables as MLflow (``requests``) honours them.

A real forward proxy (:mod:`tests.support.forward_proxy`, its own process) records what it forwards:
with ``HTTP_PROXY`` the artifact files go through it over kept-alive connections, ``NO_PROXY`` sends
them straight to the server, ``HTTPS_PROXY`` tunnels TLS to an ``https`` server with ``CONNECT``,
credentials in the proxy's URL are sent to it, ``ALL_PROXY`` may name a SOCKS proxy, and a proxy that
is down or refuses is an ERROR with the reason and without any credential.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from core.compare.fetch import FetchRequest, read_trees
from core.compare.versions import compare_model_versions
from core.errors import CheckError
from tests.core.conftest import DEEP, Store
from tests.core.test_remote_mutations import config
from tests.support.forward_proxy import ForwardProxy
from tests.support.procs import free_port

PROXY_VARS = ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "NO_PROXY")
FILES = "/api/2.0/mlflow-artifacts/artifacts/"  # a file's GET; a listing is ".../artifacts?path=…"


@pytest.fixture
def proxy_env(monkeypatch: pytest.MonkeyPatch) -> pytest.MonkeyPatch:
    """No proxy variable from the machine: each test sets the ones it is about."""
    for name in PROXY_VARS:
        monkeypatch.delenv(name, raising=False)
        monkeypatch.delenv(name.lower(), raising=False)
    return monkeypatch


@pytest.fixture
def forward_proxy(tmp_path: Path) -> Iterator[ForwardProxy]:
    proxy = ForwardProxy(tmp_path / "proxy").start()
    yield proxy
    proxy.stop()


@pytest.fixture
def gated_proxy(tmp_path: Path) -> Iterator[ForwardProxy]:
    """A forward proxy that forwards only requests carrying its credentials (407 otherwise)."""
    proxy = ForwardProxy(tmp_path / "gated", auth=("proxy-user", "pr0xy-s3cret")).start()
    yield proxy
    proxy.stop()


def use(monkeypatch: pytest.MonkeyPatch, name: str, value: str) -> None:
    """Set a proxy variable in both spellings, as ``requests`` and ``urllib`` read both."""
    monkeypatch.setenv(name, value)
    monkeypatch.setenv(name.lower(), value)


def tree_url(st: Store, case: str, host: str) -> str:
    """The artifact API URL of the case's tree, on ``host``."""
    return f"{host}{FILES}{st.uris[case].split(':', 1)[1].lstrip('/')}"


def file_url(st: Store, case: str, host: str, rel: str) -> str:
    """The artifact API URL of the file ``rel`` of the case's tree, on ``host``."""
    return f"{tree_url(st, case, host)}/{rel}"


def verdicts(st: Store, host: str) -> None:
    """Identical versions PASS; the flipped byte in the deep nested file FAILS, naming that file."""
    assert compare_model_versions(config(st, "identical", host=host), skip_reg=True).status == "PASSED"
    res = compare_model_versions(config(st, "flip", host=host), skip_reg=True)
    assert res.status == "FAILED", res.summary
    assert [d.path for d in res.run_differences] == [DEEP]


def errors_both_ways(st: Store) -> list[CheckError]:
    """The CheckError of a whole check, and of the artifact transport alone reading one tree's URL."""
    with pytest.raises(CheckError) as check:
        compare_model_versions(config(st, "flip"), skip_reg=True)
    with pytest.raises(CheckError) as transfer, read_trees([FetchRequest(tree_url(st, "base", st.url))]):
        pass
    return [check.value, transfer.value]


@pytest.mark.parametrize("form", ["url", "host:port"])
def test_http_proxy_carries_the_artifact_files(proxy_store: Store, forward_proxy: ForwardProxy,
                                               proxy_env: pytest.MonkeyPatch, form: str):
    # requests takes a proxy without a scheme as http://: so must the transport.
    use(proxy_env, "HTTP_PROXY", forward_proxy.url if form == "url" else f"127.0.0.1:{forward_proxy.port}")
    verdicts(proxy_store, proxy_store.url)
    seen = forward_proxy.requests()
    targets = {target for _, method, target in seen if method == "GET"}
    assert f"{proxy_store.url}/health" in targets  # the reachability probe goes the same way
    for case in ("base", "identical", "flip"):
        assert file_url(proxy_store, case, proxy_store.url, DEEP) in targets
    # Kept alive through the proxy: fewer connections than file requests.
    file_gets = [(port, target) for port, method, target in seen if method == "GET" and FILES in target]
    assert len({port for port, _ in file_gets}) < len(file_gets)


def test_no_proxy_sends_the_files_straight_to_the_server(proxy_store: Store, forward_proxy: ForwardProxy,
                                                         proxy_env: pytest.MonkeyPatch):
    use(proxy_env, "HTTP_PROXY", forward_proxy.url)
    use(proxy_env, "NO_PROXY", "localhost,127.0.0.1")
    verdicts(proxy_store, proxy_store.url)
    assert forward_proxy.requests() == []  # the files, and MLflow's own calls, went straight there


def test_https_proxy_tunnels_to_the_tls_server(proxy_store: Store, forward_proxy: ForwardProxy, https_server,
                                               certs, proxy_env: pytest.MonkeyPatch):
    use(proxy_env, "HTTPS_PROXY", forward_proxy.url)
    proxy_env.setenv("MLFLOW_TRACKING_SERVER_CERT_PATH", str(certs["server"][0]))
    tunnel = ("CONNECT", f"127.0.0.1:{https_server.port}")
    # The artifact transport alone first: its own connections are tunnels to the TLS server.
    with read_trees([FetchRequest(tree_url(proxy_store, "base", https_server.url))]) as (tree,):
        assert tree.scan.bytes_read > 3 << 20  # the weight shard and the rest
    assert {(method, target) for _, method, target in forward_proxy.requests()} == {tunnel}
    verdicts(proxy_store, https_server.url)
    assert {(method, target) for _, method, target in forward_proxy.requests()} == {tunnel}


def test_a_proxy_that_is_down_is_an_error_without_credentials(proxy_store: Store,
                                                              proxy_env: pytest.MonkeyPatch):
    closed = free_port()
    use(proxy_env, "HTTP_PROXY", f"http://proxy-user:pr0xy-s3cret@127.0.0.1:{closed}")
    proxy_env.setenv("MLFLOW_TRACKING_USERNAME", "guard")
    proxy_env.setenv("MLFLOW_TRACKING_PASSWORD", "tr4cking-s3cret")
    # The check, and the artifact transport itself given the tree's URL: an error naming the proxy.
    for error in errors_both_ways(proxy_store):
        text = str(error)
        assert "proxy" in text.lower() and str(closed) in text, text
        assert "s3cret" not in text and "proxy-user" not in text, text


def test_proxy_credentials_from_the_proxy_url(proxy_store: Store, gated_proxy: ForwardProxy, https_server,
                                              certs, proxy_env: pytest.MonkeyPatch):
    with_credentials = gated_proxy.url.replace("http://", "http://proxy-user:pr0xy-s3cret@")
    use(proxy_env, "HTTP_PROXY", with_credentials)
    use(proxy_env, "HTTPS_PROXY", with_credentials)
    proxy_env.setenv("MLFLOW_TRACKING_SERVER_CERT_PATH", str(certs["server"][0]))
    for host in (proxy_store.url, https_server.url):
        verdicts(proxy_store, host)
    seen = {(method, target) for _, method, target in gated_proxy.requests()}
    assert ("GET", file_url(proxy_store, "flip", proxy_store.url, DEEP)) in seen  # forwarded: sent with them
    assert ("CONNECT", f"127.0.0.1:{https_server.port}") in seen
    # The wrong password: the proxy refuses, and the error says so without either password.
    use(proxy_env, "HTTP_PROXY", gated_proxy.url.replace("http://", "http://proxy-user:wr0ng-s3cret@"))
    for error in errors_both_ways(proxy_store):
        assert "407" in str(error) and "s3cret" not in str(error), str(error)


def test_a_socks_proxy_in_all_proxy(proxy_store: Store, forward_proxy: ForwardProxy,
                                    proxy_env: pytest.MonkeyPatch):
    # requests (so MLflow) takes SOCKS proxies (with PySocks): so must the transport.
    use(proxy_env, "ALL_PROXY", f"socks5h://127.0.0.1:{forward_proxy.port}")
    server = proxy_store.url.removeprefix("http://")
    # The artifact transport alone first: its own connections are SOCKS tunnels to the server.
    with read_trees([FetchRequest(tree_url(proxy_store, "base", proxy_store.url))]) as (tree,):
        assert tree.scan.bytes_read > 3 << 20  # the weight shard and the rest
    assert {(method, target) for _, method, target in forward_proxy.requests()} == {("SOCKS5", server)}
    verdicts(proxy_store, proxy_store.url)
