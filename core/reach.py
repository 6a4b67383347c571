"""Is a tracking server there? One cheap HTTP probe, shared by the core's checks and the listener's readiness.

No MLflow import: the listener's web process uses it too.
"""

from __future__ import annotations

import urllib.error
import urllib.request
from dataclasses import dataclass


@dataclass(frozen=True)
class Answer:
    """What one GET got: the HTTP status and the start of the body, or why there was no answer."""

    code: int | None
    body: str = ""
    reason: str | None = None


def get(url: str, timeout: float) -> Answer:
    """GET ``url`` once; a refused connection, a timeout or a name that does not resolve give no code."""
    try:
        with urllib.request.urlopen(urllib.request.Request(url, method="GET"),  # noqa: S310 - configured
                                    timeout=timeout) as resp:
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
