"""Send one alert to apprise URLs, one URL at a time, and say how each went (nothing is raised)."""

from __future__ import annotations

import logging
from dataclasses import dataclass

import apprise

from listener.alerts.message import AlertMessage

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class SendResult:
    """How sending to one URL went; ``target`` is the URL as apprise shows it, credentials hidden."""

    index: int
    target: str
    ok: bool
    error: str | None = None


def _target(url: str, service: object | None) -> str:
    if service is not None:
        # Without apprise's default query options (method, retry, ...): short, and never a token.
        return str(service.url(privacy=True)).split("?", 1)[0]  # type: ignore[attr-defined]
    return url.split("://", 1)[0] + "://…"


def send(urls: list[str], message: AlertMessage, only: set[int] | None = None) -> list[SendResult]:
    """Send ``message`` to each URL (``only``: the indexes still owed it); one result per URL tried."""
    results: list[SendResult] = []
    for index, url in enumerate(urls):
        if only is not None and index not in only:
            continue
        notifier = apprise.Apprise()
        with apprise.LogCapture(level=logging.WARNING, fmt="%(message)s") as captured:
            added = notifier.add(url)
            service = next(iter(notifier), None) if added else None
            ok = bool(added) and bool(notifier.notify(title=message.title, body=message.body,
                                                      notify_type=message.notify_type))
            detail = captured.getvalue().strip().splitlines() if not ok else []
        target = _target(url, service)
        # apprise's own log lines name the service and the HTTP answer, with credentials already hidden.
        error = None if ok else ("not a supported notification URL" if not added
                                 else (detail[-1] if detail else "the service refused the message"))
        results.append(SendResult(index, target, ok, error))
    return results
