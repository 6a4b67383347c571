"""One pooled keep-alive HTTP transport per tracking server, set up as MLflow sets up its requests.

MLflow's ``http_request`` builds its headers, credentials, proxy and TLS settings again on every
call, and ``requests`` then scans the environment (proxies, ``.netrc``, CA bundle) and merges
settings per request. For thousands of small artifact files that per-call work cost more CPU than
the transfers (profiled: about half of the transfer threads' Python time). Here it is done once per
server: :func:`settings_for` reads what MLflow would send (``get_default_host_creds``: basic auth
from ``MLFLOW_TRACKING_USERNAME`` / ``PASSWORD``, a bearer token, auth plugins; the request-header
providers; ``MLFLOW_TRACKING_INSECURE_TLS``, ``MLFLOW_TRACKING_SERVER_CERT_PATH``,
``MLFLOW_TRACKING_CLIENT_CERT_PATH``; and, as ``requests`` reads them, ``REQUESTS_CA_BUNDLE`` /
``CURL_CA_BUNDLE`` and ``HTTP(S)_PROXY`` / ``ALL_PROXY`` / ``NO_PROXY``), and :class:`HttpTransport`
sends every request of every tree on that server through one pool of keep-alive connections: plain
``http.client`` ones for a server reached directly (:mod:`core.remote.keepalive`, the lean path),
urllib3's ``ProxyManager`` through a proxy (its ``SOCKSProxyManager`` through a SOCKS one). Retries
are the caller's (:class:`core.remote.source.RetryPolicy`): the pools retry nothing, so a broken
transfer is seen and restarted from a known byte.
"""

from __future__ import annotations

import base64
import http.client
import os
import ssl
import threading
import urllib.parse
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from core.errors import CheckError, redact
from core.remote.keepalive import KeepAlivePool
from core.remote.source import BrokenTransfer, RetryPolicy

_RETRY_STATUS = frozenset({408, 425, 429, 500, 502, 503, 504})


@dataclass(frozen=True)
class HttpSettings:
    """What MLflow would send to one server: headers, TLS verification, client certificate, proxy."""

    headers: tuple[tuple[str, str], ...]
    verify: bool | str  # True: the default CA bundle; False: no verification; str: a CA bundle path
    client_cert: str | None = None
    proxy: str | None = None
    auth_plugin: str | None = None  # an MLflow auth plugin name (signs each request itself)
    aws_sigv4: bool = False


def settings_for(api: str) -> HttpSettings:
    """The request settings MLflow uses for the tracking server at ``api`` (resolved once)."""
    from mlflow.tracking.request_header.registry import resolve_request_headers
    from mlflow.utils.credentials import get_default_host_creds

    creds = get_default_host_creds(api)
    headers = dict(resolve_request_headers())
    if creds.username and creds.password and creds.auth not in ("kubernetes", "kubernetes-namespaced"):
        token = base64.standard_b64encode(f"{creds.username}:{creds.password}".encode()).decode()
        headers["Authorization"] = f"Basic {token}"
    elif creds.token:
        headers["Authorization"] = f"Bearer {creds.token}"
    verify: bool | str = creds.server_cert_path or not creds.ignore_tls_verification
    if verify is True:
        # requests (MLflow's client) takes these from the environment when verification is on.
        verify = os.environ.get("REQUESTS_CA_BUNDLE") or os.environ.get("CURL_CA_BUNDLE") or True
    return HttpSettings(tuple(headers.items()), verify, creds.client_cert_path, proxy_for(api),
                        creds.auth or None, bool(creds.aws_sigv4))


def proxy_for(url: str) -> str | None:
    """The proxy MLflow's ``requests`` would take for ``url`` (credentials included), or None for none.

    As ``requests`` reads them, now: ``HTTP(S)_PROXY`` / ``ALL_PROXY`` in either case, and ``NO_PROXY``
    with its host suffixes and address ranges. A proxy given without a scheme (``proxy.corp:3128``) is
    ``http://`` as ``requests`` takes it (urllib3 refuses it as it is).
    """
    import requests.utils

    proxies = requests.utils.get_environ_proxies(url)
    proxy = requests.utils.select_proxy(url, proxies) if proxies else None
    return requests.utils.prepend_scheme_if_needed(proxy, "http") if proxy else None


def ssl_context_for(api: str) -> ssl.SSLContext:
    """An :class:`ssl.SSLContext` verifying the server at ``api`` as MLflow's requests would."""
    return _ssl_context(settings_for(api))


def _ssl_context(settings: HttpSettings) -> ssl.SSLContext:
    if settings.verify is False:
        ctx = ssl.create_default_context()
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
    else:
        ca = settings.verify if isinstance(settings.verify, str) else _default_ca()
        folder = ca is not None and os.path.isdir(ca)  # a CA folder (c_rehash'ed), as requests accepts
        ctx = ssl.create_default_context(cafile=None if folder else ca, capath=ca if folder else None)
    if settings.client_cert:
        ctx.load_cert_chain(settings.client_cert)
    return ctx


class HttpTransport:
    """GETs to one server through one keep-alive urllib3 pool, with the settings of :func:`settings_for`."""

    def __init__(self, api: str, settings: HttpSettings, maxsize: int = 32) -> None:
        self.api = api.rstrip("/")
        self.settings = settings
        self._headers = dict(settings.headers)
        parsed = urllib.parse.urlsplit(self.api)
        self._base_path = parsed.path.rstrip("/")
        self._lean: KeepAlivePool | None = None
        self._manager: Any = None
        if not settings.proxy:
            # Direct connections: the lean http.client path (core.remote.keepalive), TLS set up once.
            context = _ssl_context(settings) if parsed.scheme == "https" else None
            self._lean = KeepAlivePool(parsed.hostname or "", parsed.port, context, maxsize)
            return
        tls: dict[str, Any] = {}
        if parsed.scheme == "https":
            if settings.verify is False:
                tls["cert_reqs"] = "CERT_NONE"
            else:
                tls["cert_reqs"] = "CERT_REQUIRED"
                ca = settings.verify if isinstance(settings.verify, str) else _default_ca()
                tls["ca_cert_dir" if ca is not None and os.path.isdir(ca) else "ca_certs"] = ca
            if settings.client_cert:
                tls["cert_file"] = settings.client_cert
        self._manager = _proxy_manager(settings.proxy, maxsize, tls)

    def get(self, path: str, retry: RetryPolicy, *, query: Mapping[str, str] | None = None,
            headers: Mapping[str, str] | None = None, what: str = "") -> Any:
        """GET ``path`` (below the server's URL, quoted here) as a streaming response (status, headers).

        Connection failures and 408/429/5xx answers are :class:`BrokenTransfer` (retried by the
        caller); TLS failures and other 4xx answers are :class:`CheckError`. The caller reads the
        body and then calls :func:`release`.
        """
        import urllib3

        target = self._base_path + urllib.parse.quote(path, safe="/~@!$&'()*+,;=:")
        if query:
            target += "?" + urllib.parse.urlencode(query)
        hdrs = {**self._headers, **headers} if headers else self._headers
        if self.settings.auth_plugin or self.settings.aws_sigv4:
            hdrs = _signed_headers(self.settings, "GET", self.api + target[len(self._base_path):], hdrs)
        try:
            if self._lean is not None:
                resp: Any = self._lean.get(target, hdrs, retry.connect_timeout_s, retry.read_timeout_s)
            else:
                timeout = urllib3.Timeout(connect=retry.connect_timeout_s, read=retry.read_timeout_s)
                url = f"{urllib.parse.urlsplit(self.api)._replace(path='', query='').geturl()}{target}"
                resp = self._manager.urlopen("GET", url, headers=hdrs, preload_content=False, redirect=False,
                                             timeout=timeout, retries=False)
        except (urllib3.exceptions.HTTPError, http.client.HTTPException, OSError) as exc:
            if _tls_failure(exc):
                # A certificate that does not verify will not verify on the next try either.
                text = f"TLS with {redact(self.api)} failed{_for(what)}: {_first_line(exc)}"
                raise CheckError(text) from exc
            raise BrokenTransfer(f"{type(exc).__name__}{_for(what)}: {_first_line(exc)}") from exc
        if self._lean is not None and resp.headers.get("Content-Encoding", "identity") != "identity":
            # http.client asked for the bytes as stored and does not decode: never hash an encoding.
            release(resp, broken=True)
            raise CheckError(f"{redact(self.api)} answered with an encoded body{_for(what)}")
        if resp.status in _RETRY_STATUS:
            release(resp, broken=True)
            raise BrokenTransfer(f"HTTP {resp.status} from {redact(self.api)}{_for(what)}")
        return resp


def read_into(resp: Any, view: memoryview) -> int:
    """Read a response's body into ``view`` until it is full or the body ends; bytes read.

    The body is read by the ``http.client`` response (under urllib3's, through a proxy) straight into
    the caller's buffer (urllib3's own ``read`` allocates and copies every chunk); a body with a
    Content-Encoding goes through the response's ``read``. The caller checks the length.
    """
    fp = getattr(resp, "_fp", None)
    encoded = (getattr(resp, "headers", None) or {}).get("Content-Encoding")
    direct = fp is not None and hasattr(fp, "readinto") and not encoded
    got, size = 0, len(view)
    while got < size:
        if direct:
            n = fp.readinto(view[got:])
        else:
            chunk = resp.read(min(size - got, 1 << 20))
            n = len(chunk)
            view[got:got + n] = chunk
        if not n:
            break
        got += n
    return got


def release(resp: Any, *, broken: bool = False) -> None:
    """Hand the connection back to the pool; one whose body was not read to its end is closed first."""
    fp = getattr(resp, "_fp", None)
    if broken or (fp is not None and not fp.isclosed()):  # unread bytes would start the next answer
        resp.close()
    resp.release_conn()


_TRANSPORTS: dict[tuple[str, HttpSettings], HttpTransport] = {}
_LOCK = threading.Lock()


def transport_for(api: str, maxsize: int = 32) -> HttpTransport:
    """The shared transport of the server at ``api`` with today's MLflow settings for it.

    Trees on the same server (both sides of a comparison, run and registry models) share one pool
    of keep-alive connections; changed credentials or TLS settings give a new transport.
    """
    settings = settings_for(api)
    key = (api.rstrip("/"), settings)
    with _LOCK:
        found = _TRANSPORTS.get(key)
        if found is None:
            found = _TRANSPORTS[key] = HttpTransport(api, settings, maxsize)
        return found


def _proxy_manager(proxy: str, maxsize: int, tls: dict[str, Any]) -> Any:
    """A urllib3 pool manager through ``proxy``: an HTTP(S) proxy, or a SOCKS one as ``requests`` takes it."""
    import requests.utils
    import urllib3

    if urllib.parse.urlsplit(proxy).scheme.lower().startswith("socks"):
        try:
            from urllib3.contrib.socks import SOCKSProxyManager
        except ImportError as exc:  # requests (so MLflow) cannot use it either
            raise CheckError(f"the proxy {redact(proxy)} is a SOCKS proxy: it needs PySocks") from exc
        return SOCKSProxyManager(proxy, maxsize=maxsize, block=False, retries=False, **tls)
    user, password = requests.utils.get_auth_from_url(proxy)
    proxy_headers = urllib3.util.make_headers(proxy_basic_auth=f"{user}:{password}") if user else None
    return urllib3.ProxyManager(proxy, proxy_headers=proxy_headers, maxsize=maxsize, block=False,
                                retries=False, **tls)


def _signed_headers(settings: HttpSettings, method: str, url: str,
                    headers: Mapping[str, str]) -> dict[str, str]:
    """Headers after MLflow's auth plugin (or SigV4) has signed this one request, as MLflow applies it."""
    import requests

    if settings.aws_sigv4:
        from requests_auth_aws_sigv4 import AWSSigV4

        auth: Any = AWSSigV4("execute-api")
    else:
        from mlflow.tracking.request_auth.registry import fetch_auth

        auth = fetch_auth(settings.auth_plugin)
    prepared = auth(requests.Request(method, url, headers=dict(headers)).prepare())
    return dict(prepared.headers)


def _default_ca() -> str | None:
    try:
        import certifi
    except ImportError:  # pragma: no cover - requests depends on it
        return None
    return certifi.where()


def _tls_failure(exc: BaseException) -> bool:
    """A TLS set-up failure (certificate, protocol), not a connection cut in the middle of TLS."""
    import urllib3

    if isinstance(exc, (ssl.SSLEOFError, ssl.SSLZeroReturnError, ssl.SSLSyscallError)):
        return False
    return (isinstance(exc, (urllib3.exceptions.SSLError, ssl.SSLError))
            or "CERTIFICATE_VERIFY_FAILED" in str(exc))


def _for(what: str) -> str:
    return f" ({what})" if what else ""


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    return text if len(text) <= 300 else text[:300] + "…"
