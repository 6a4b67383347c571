"""Parsing configuration values: the strings :mod:`listener.config` reads from the environment, checked.

Nothing here reads the environment: each function gets the variable's name (for its error message)
and its value.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off", ""}


class ConfigError(ValueError):
    """A configuration value is unusable; the message names the variable, never a secret's value."""


def split_list(value: str | None) -> list[str]:
    """Comma list -> stripped, non-empty items (a secret list means rotation: any item is accepted)."""
    if not value:
        return []
    return [item.strip() for item in value.split(",") if item.strip()]


def parse_bool(name: str, value: str | None, default: bool) -> bool:
    """``value`` of variable ``name`` as a boolean (true/false, yes/no, on/off, 1/0), ``default`` if unset."""
    if value is None:
        return default
    lowered = value.strip().lower()
    if lowered in _TRUE:
        return True
    if lowered in _FALSE:
        return False
    raise ConfigError(f"{name} must be true or false, got {value!r}")


def parse_int(name: str, value: str | None, default: int, minimum: int) -> int:
    """``value`` of variable ``name`` as an integer of at least ``minimum``; ``default`` if unset or blank."""
    return _parse_number(name, value, default, minimum, int, "an integer")


def parse_float(name: str, value: str | None, default: float, minimum: float) -> float:
    """``value`` of variable ``name`` as a number of at least ``minimum``; ``default`` when unset or blank."""
    return _parse_number(name, value, default, minimum, float, "a number")


def _parse_number(name: str, value: str | None, default: Any, minimum: float, kind: Callable[[str], Any],
                  what: str) -> Any:
    if value is None or not value.strip():
        return default
    try:
        number = kind(value.strip())
    except ValueError as exc:
        raise ConfigError(f"{name} must be {what}, got {value!r}") from exc
    if not number >= minimum:  # also refuses NaN
        raise ConfigError(f"{name} must be at least {minimum:g}, got {value.strip()}")
    return number


def registry_kind(tracking_uri: str | None, registry_uri: str | None) -> str:
    """``databricks`` for a Databricks registry (workspace or Unity Catalog), else ``mlflow``."""
    uri = registry_uri or tracking_uri or ""
    return "databricks" if uri.startswith("databricks") else "mlflow"


def exclude_patterns(value: str | None) -> list[str]:
    """``GUARD_EXCLUDE`` (comma-separated globs) checked by :mod:`core.compare.exclude`."""
    from core.compare.exclude import validate_patterns

    try:
        return validate_patterns(split_list(value))
    except ValueError as exc:
        raise ConfigError(f"GUARD_EXCLUDE: {exc}") from exc


def seal_keys(signing_key: str | None, trusted_keys: str | None) -> dict[str, Any]:
    """The values of ``GUARD_SIGNING_KEY`` (a PEM path) and ``GUARD_TRUSTED_KEYS`` (comma-separated PEM
    paths), loaded: ``signing_key`` / ``trusted_keys`` entries for :class:`listener.config.Settings`.

    Errors name the variable and the file, never a key's content.
    """
    from core.errors import CheckError
    from core.seal.keys import load_signing_key, load_trusted_keys

    values: dict[str, Any] = {}
    try:
        if signing_key:
            values["signing_key"] = load_signing_key(signing_key)
        trusted = split_list(trusted_keys)
        if trusted:
            values["trusted_keys"] = load_trusted_keys(trusted)
    except CheckError as exc:
        name = "GUARD_TRUSTED_KEYS" if "trusted" in str(exc) else "GUARD_SIGNING_KEY"
        raise ConfigError(f"{name}: {exc}") from None
    return values


def parse_since(name: str, value: str | None) -> float | None:
    """``all`` -> 0.0 (everything), an ISO date or date-time -> epoch seconds (UTC unless it says
    otherwise), unset or blank -> None."""
    import datetime as dt

    text = (value or "").strip()
    if not text:
        return None
    if text.lower() == "all":
        return 0.0
    try:
        when = dt.datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError as exc:
        raise ConfigError(f"{name} must be an ISO date (2026-01-31, 2026-01-31T12:00:00Z) or 'all', "
                          f"got {value!r}") from exc
    if when.tzinfo is None:
        when = when.replace(tzinfo=dt.timezone.utc)
    return when.timestamp()


# Apprise URLs may hold commas of their own (mailto://…?to=a@x,b@y): a comma separates two URLs only
# where the next item starts with a scheme.
_URL_SPLIT = re.compile(r"\s+|,\s*(?=[A-Za-z][A-Za-z0-9+.-]*://)")


def notify_urls(value: str | None) -> list[str]:
    """The apprise URLs of ``GUARD_NOTIFY``: separated by white space or commas."""
    return [item.strip().rstrip(",") for item in _URL_SPLIT.split(value or "") if item and item.strip(", ")]


NOTIFY_STATUSES = ("passed", "failed", "error")


def notify_on(name: str, value: str | None) -> list[str]:
    """The verdicts that alert (``GUARD_NOTIFY_ON``), upper-case; default FAILED and ERROR."""
    items = [item.lower() for item in split_list(value)] or ["failed", "error"]
    unknown = sorted(set(items) - set(NOTIFY_STATUSES))
    if unknown:
        raise ConfigError(f"{name} accepts {', '.join(NOTIFY_STATUSES)}; got {unknown}")
    return sorted({item.upper() for item in items})
