"""Is a tracking server there? One cheap HTTP probe, shared by the core's checks and the listener's readiness.

:func:`check_reachable` is the core's question before a check (is it there, and is it MLflow?);
:func:`probe` the listener's readiness. No MLflow import: the listener's web process uses it too.
"""

from __future__ import annotations

import functools
import ssl
import urllib.error
import urllib.request
from dataclasses import dataclass

from core.errors import CheckError, TransientError, redact

PROBE_TIMEOUT_S = 5.0


@dataclass(frozen=True)
class Answer:
    """What one GET got: the HTTP status and the start of the body, or why there was no answer."""

    code: int | None
    body: str = ""
    reason: str | None = None


def get(url: str, timeout: float, context: ssl.SSLContext | None = None,
        proxies: dict[str, str] | None = None) -> Answer:
    """GET ``url`` once; a refused connection, a timeout or a name that does not resolve give no code.

    ``context`` verifies an ``https`` server (default: Python's, with the system's CA certificates).
    ``proxies`` (scheme → proxy URL; empty: none) replaces the proxies urllib found in the environment.
    """
    request = urllib.request.Request(url, method="GET")
    if proxies is None:
        opener = functools.partial(urllib.request.urlopen, context=context)
    else:
        opener = urllib.request.build_opener(urllib.request.ProxyHandler(proxies),
                                             urllib.request.HTTPSHandler(context=context)).open
    try:
        with opener(request, timeout=timeout) as resp:
            return Answer(resp.status, resp.read(64).decode("utf-8", "replace").strip())
    except urllib.error.HTTPError as exc:
        return Answer(exc.code)
    except (urllib.error.URLError, OSError, ValueError) as exc:
        reason = getattr(exc, "reason", exc)
        if isinstance(reason, TimeoutError) or "timed out" in str(reason).lower():
            return Answer(None, reason=f"unreachable: no answer within {timeout:g} s")
        return Answer(None, reason=f"unreachable: {reason}")


def probe(url: str, timeout: float, healthy_below: int = 600) -> str | None:
    """GET ``url``: None when it answers with a status below ``healthy_below``, else why not.

    ``healthy_below=600`` counts any HTTP answer as "there" (a proxy may well say 401 or 404 to a bare
    URL); 300 asks for a 2xx. A refused connection, a timeout or a name that does not resolve always fail.
    """
    answer = get(url, timeout)
    if answer.code is None:
        return answer.reason
    return None if answer.code < healthy_below else f"answered {answer.code}"


def check_reachable(tracking_uri: str | None, timeout: float = PROBE_TIMEOUT_S) -> None:
    """Raise quickly when an HTTP tracking server does not answer, or is not an MLflow server.

    A refused connection, a timeout or a name that does not resolve raise :class:`TransientError`.
    MLflow servers answer ``GET /health`` with ``OK``; a server that answers it with something else
    (a 404, a JSON error page: another service on that port) raises :class:`CheckError` saying it is
    not an MLflow tracking server. Authentication or server errors (401, 403, 5xx) count as
    reachable: a proxy may well guard ``/health``, and the API call that follows says what is wrong.
    Non-HTTP URIs (``databricks://…``, ``sqlite://…``, paths) and no URI at all are not probed. The
    probe goes through the HTTP(S) proxy MLflow would use, and a failure names it (without credentials).
    """
    uri = tracking_uri
    if not uri or not uri.lower().startswith(("http://", "https://")):
        return
    from core.remote.http_transport import proxy_for, ssl_context_for

    context = None
    if uri.lower().startswith("https://"):
        # Verified as MLflow verifies it (its CA bundle, or none when told to skip verification).
        context = ssl_context_for(uri)
    # Through the proxy MLflow's requests would take, resolved now: urllib's shared opener keeps the
    # proxies of its first use in the process, and reads neither ALL_PROXY nor NO_PROXY's address ranges.
    proxy = proxy_for(uri)
    if proxy and not proxy.lower().startswith(("http://", "https://")):
        return  # a SOCKS proxy, which urllib cannot speak: MLflow's own first call tells
    scheme = uri.split(":", 1)[0].lower()
    answer = get(uri.rstrip("/") + "/health", timeout, context, {scheme: proxy} if proxy else {})
    if answer.code is None:
        via = f" (through the proxy {redact(proxy)})" if proxy else ""
        raise TransientError(f"tracking server {redact(uri)}{via} is {answer.reason}")
    if answer.code in (404, 405) or (200 <= answer.code < 300 and answer.body != "OK"):
        raise CheckError(_not_mlflow(uri, f"GET /health answered {answer.code} {answer.body[:40]!r}"))


def _not_mlflow(uri: str, why: str) -> str:
    return (f"{redact(uri)} is not an MLflow tracking server ({why}; an MLflow server answers 'OK'): "
            "check the tracking URI and its port")
