"""What an operator must know about the webhook routes (unsigned, off, no secret), logged once per process."""

from __future__ import annotations

import logging
from typing import Any

from listener.config import ROUTES, SECRET_VARIABLES, Settings

# (data folder, message) pairs already logged by this process. gunicorn's master logs them before it forks
# its workers (deploy/gunicorn.conf.py), so every worker inherits them and none repeats them.
_announced: set[tuple[str, str]] = set()


def route_notices(settings: Settings) -> list[tuple[int, str]]:
    """What an operator must know about the webhook routes: (logging level, message) pairs."""
    notices: list[tuple[int, str]] = []
    for route in ROUTES:
        if settings.secrets_for(route):
            continue
        if settings.allows_unsigned(route):
            notices.append((logging.WARNING, f"POST /webhooks/{route} accepts UNSIGNED deliveries "
                            "(GUARD_ALLOW_UNSIGNED): anyone who can reach it can trigger validations; "
                            "configure a secret instead"))
        elif route != settings.registry_kind:
            notices.append((logging.INFO, f"POST /webhooks/{route} is off: no {SECRET_VARIABLES[route]} is "
                            f"configured, so its deliveries are refused with 401 (this listener serves the "
                            f"{settings.registry_kind} registry)"))
        else:
            notices.append((logging.WARNING, f"POST /webhooks/{route} has no secret configured "
                            f"({SECRET_VARIABLES[route]}): every delivery will be refused with 401"))
    return notices


def announce_routes(settings: Settings, logger: Any) -> None:
    """Log :func:`route_notices` once per process and data folder (``logger``: anything with ``log``)."""
    for level, message in route_notices(settings):
        key = (str(settings.data_dir), message)
        if key not in _announced:
            _announced.add(key)
            logger.log(level, message)
