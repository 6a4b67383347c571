"""Listener settings, read from the environment (12-factor) with explicit overrides for tests and tools."""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

from listener.store.engine import StoreConfigError, default_store_url, normalise_url, redacted

DEFAULT_MAX_BODY_BYTES = 1 << 20
DEFAULT_TOLERANCE_S = 300
ROUTES = ("mlflow", "databricks")

_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off", ""}


class ConfigError(ValueError):
    """A configuration value is unusable; the message names the variable, never a secret's value."""


def _split_list(value: str | None) -> list[str]:
    """Comma list -> stripped, non-empty items (a secret list means rotation: any item is accepted)."""
    if not value:
        return []
    return [item.strip() for item in value.split(",") if item.strip()]


def _parse_bool(name: str, value: str | None, default: bool) -> bool:
    if value is None:
        return default
    lowered = value.strip().lower()
    if lowered in _TRUE:
        return True
    if lowered in _FALSE:
        return False
    raise ConfigError(f"{name} must be true or false, got {value!r}")


def _parse_int(name: str, value: str | None, default: int, minimum: int) -> int:
    if value is None or not value.strip():
        return default
    try:
        number = int(value.strip())
    except ValueError as exc:
        raise ConfigError(f"{name} must be an integer, got {value!r}") from exc
    if number < minimum:
        raise ConfigError(f"{name} must be at least {minimum}, got {number}")
    return number


def _registry_kind(tracking_uri: str | None, registry_uri: str | None) -> str:
    uri = registry_uri or tracking_uri or ""
    return "databricks" if uri.startswith("databricks") else "mlflow"


@dataclass
class Settings:
    """Everything the listener and its queue need; built by :meth:`from_env`."""

    tracking_uri: str | None = None
    registry_uri: str | None = None
    mlflow_secrets: list[str] = field(default_factory=list)
    databricks_secrets: list[str] = field(default_factory=list)
    databricks_authorization: str | None = None
    allow_unsigned_mlflow: bool = False
    allow_unsigned_databricks: bool = False
    queue_url: str = ""
    data_dir: Path = Path(".guard")
    gate_transitions: bool = False
    timestamp_tolerance_s: int = DEFAULT_TOLERANCE_S
    max_body_bytes: int = DEFAULT_MAX_BODY_BYTES
    registry_kind: str = "mlflow"
    ui_base_url: str | None = None
    # GUARD_STORE: results, journal, alias history, sweep marks (sqlite:///PATH or postgresql://…).
    store_url: str = ""

    def __post_init__(self) -> None:
        self.data_dir = Path(self.data_dir)
        if not self.queue_url:
            self.queue_url = f"sqlite:///{self.data_dir / 'queue.db'}"
        if not self.store_url:
            self.store_url = default_store_url(self.data_dir)
        try:
            self.store_url = normalise_url(self.store_url)
        except StoreConfigError as exc:
            raise ConfigError(str(exc)) from exc
        if self.registry_kind not in ("mlflow", "databricks"):
            raise ConfigError(f"registry_kind must be 'mlflow' or 'databricks', got {self.registry_kind!r}")
        if not (self.queue_url.startswith("sqlite:///") or self.queue_url.startswith("redis://")
                or self.queue_url.startswith("rediss://")):
            raise ConfigError("GUARD_QUEUE must be sqlite:///PATH or redis://HOST:PORT/DB")

    def __repr__(self) -> str:
        # Secrets never reach logs through a repr.
        shown = {f.name: getattr(self, f.name) for f in fields(self)}
        for name in ("mlflow_secrets", "databricks_secrets"):
            shown[name] = f"<{len(shown[name])} secret(s)>"
        shown["store_url"] = redacted(self.store_url)
        if shown["databricks_authorization"]:
            shown["databricks_authorization"] = "<set>"
        return "Settings(" + ", ".join(f"{k}={v!r}" for k, v in shown.items()) + ")"

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None, **overrides: Any) -> Settings:
        """Read the settings from ``env`` (default ``os.environ``); keyword overrides win over the env."""
        env = os.environ if env is None else env
        allow_unsigned = {item.lower() for item in _split_list(env.get("GUARD_ALLOW_UNSIGNED"))}
        unknown = allow_unsigned - set(ROUTES)
        if unknown:
            raise ConfigError(f"GUARD_ALLOW_UNSIGNED accepts only {', '.join(ROUTES)}; got {sorted(unknown)}")
        tracking_uri = env.get("MLFLOW_TRACKING_URI") or None
        registry_uri = env.get("MLFLOW_REGISTRY_URI") or None
        data_dir = Path(env.get("GUARD_DATA_DIR") or ".guard")
        ui_url = env.get("GUARD_UI_URL") or None
        if ui_url is None and tracking_uri and tracking_uri.startswith(("http://", "https://")):
            # The MLflow tracking server also serves its UI.
            ui_url = tracking_uri
        if ui_url is None and _registry_kind(tracking_uri, registry_uri) == "databricks":
            ui_url = env.get("DATABRICKS_HOST") or None
        values: dict[str, Any] = {
            "tracking_uri": tracking_uri,
            "registry_uri": registry_uri,
            "mlflow_secrets": _split_list(env.get("GUARD_MLFLOW_SECRET")),
            "databricks_secrets": _split_list(env.get("GUARD_DATABRICKS_SECRET")),
            "databricks_authorization": env.get("GUARD_DATABRICKS_AUTHORIZATION") or None,
            "allow_unsigned_mlflow": "mlflow" in allow_unsigned,
            "allow_unsigned_databricks": "databricks" in allow_unsigned,
            "queue_url": env.get("GUARD_QUEUE") or "",
            "data_dir": data_dir,
            "gate_transitions": _parse_bool("GUARD_GATE_TRANSITIONS", env.get("GUARD_GATE_TRANSITIONS"),
                                            False),
            "timestamp_tolerance_s": _parse_int("GUARD_TIMESTAMP_TOLERANCE",
                                                env.get("GUARD_TIMESTAMP_TOLERANCE"), DEFAULT_TOLERANCE_S, 1),
            "max_body_bytes": _parse_int("GUARD_MAX_BODY_BYTES", env.get("GUARD_MAX_BODY_BYTES"),
                                         DEFAULT_MAX_BODY_BYTES, 1),
            "registry_kind": _registry_kind(tracking_uri, registry_uri),
            "ui_base_url": ui_url,
            "store_url": env.get("GUARD_STORE") or "",
        }
        values.update(overrides)
        return cls(**values)

    def secrets_for(self, route: str) -> list[str]:
        """The accepted secrets of a webhook route (``mlflow`` or ``databricks``)."""
        return list(self.mlflow_secrets if route == "mlflow" else self.databricks_secrets)

    def allows_unsigned(self, route: str) -> bool:
        """True when ``route`` has no secret and was explicitly opened to unsigned deliveries."""
        if route == "mlflow":
            return self.allow_unsigned_mlflow and not self.mlflow_secrets
        return self.allow_unsigned_databricks and not self.databricks_secrets
