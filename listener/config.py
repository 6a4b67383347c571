"""Listener settings, read from the environment (12-factor) with explicit overrides for tests and tools."""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

from core.seal.locations import is_local_folder
from listener.config_parsing import (
    ConfigError,
    exclude_patterns,
    notify_on,
    notify_urls,
    parse_bool,
    parse_float,
    parse_int,
    parse_since,
    registry_kind,
    seal_keys,
    split_list,
)
from listener.registry_route import is_unity_catalog_uri, route_problem
from listener.store.engine import StoreConfigError, default_store_url, normalise_url, redacted

DEFAULT_MAX_BODY_BYTES = 1 << 20
DEFAULT_TOLERANCE_S = 300
DEFAULT_READY_TIMEOUT_S = 120.0
# Retry policy: transient failures wait 2, 4, 8, ... seconds (capped), then the verdict is ERROR.
DEFAULT_MAX_RETRIES = 6
DEFAULT_RETRY_BASE_S = 2.0
DEFAULT_RETRY_MAX_S = 60.0
# Databricks guarantees model version tag values up to 5000 bytes; larger ones may be refused.
DEFAULT_DATABRICKS_TAG_LIMIT = 5000
# The SDK retries 429/503 and connection errors itself for up to 300 s by default; a queued job retries
# on its own schedule, so each SDK call gives up sooner unless configured otherwise.
DEFAULT_DATABRICKS_RETRY_TIMEOUT_S = 30
DEFAULT_DATABRICKS_HTTP_TIMEOUT_S = 30
# The sweep catches up on missed events every 5 minutes and re-checks aliased versions every 6 hours.
DEFAULT_SWEEP_INTERVAL_S = 300.0
DEFAULT_REVERIFY_INTERVAL_S = 21600.0
# A failed alert is tried again 6 times, after 10, 20, 40, 60, 60, 60 s (capped by GUARD_RETRY_MAX_S).
DEFAULT_NOTIFY_RETRIES = 6
DEFAULT_NOTIFY_RETRY_BASE_S = 10.0
# GUARD_REVERIFY: which versions are re-checked besides those holding a protected alias: none more
# ("protected"), any aliased version ("all"), or every version in the Production stage ("production-stage":
# the Databricks workspace registry, which has stages and no aliases).
REVERIFY_SCOPES = ("protected", "all", "production-stage")
# The webhook routes, named after the registry that calls them (``POST /webhooks/<route>``).
ROUTES = ("mlflow", "databricks")
SECRET_VARIABLES = {"mlflow": "GUARD_MLFLOW_SECRET", "databricks": "GUARD_DATABRICKS_SECRET"}


def shared_state_problem(store_url: str, seal_store_uri: str | None) -> str | None:
    """Why this combination cannot run on several hosts, or None.

    A shared (PostgreSQL) store means several hosts may check the same versions: a seal kept in one
    host's folder is missing on the others, which then fail an untouched version, or seal tampered files
    whose tags were deleted.
    """
    if store_url.startswith("sqlite") or not seal_store_uri or not is_local_folder(seal_store_uri):
        return None
    return (f"GUARD_STORE is a shared PostgreSQL database but GUARD_SEAL_STORE is a folder of this host "
            f"({seal_store_uri}): the other hosts would not find the seals made here. Unset GUARD_SEAL_STORE "
            "(seals are then kept in GUARD_STORE) or set it to storage every host reaches (s3://…, "
            "postgresql://…). See docs/shared-state.md.")


def _load_policy(path: str) -> Any:
    """The policy file at ``path``, validated; a broken one is a :class:`ConfigError` with its one line."""
    from core.policy.loader import PolicyError, load_policy

    try:
        return load_policy(path)
    except PolicyError as exc:
        raise ConfigError(f"GUARD_POLICY: {exc}") from None


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
    databricks_host: str | None = None
    ready_timeout_s: float = DEFAULT_READY_TIMEOUT_S
    max_retries: int = DEFAULT_MAX_RETRIES
    retry_base_s: float = DEFAULT_RETRY_BASE_S
    retry_max_s: float = DEFAULT_RETRY_MAX_S
    databricks_tag_limit: int = DEFAULT_DATABRICKS_TAG_LIMIT
    databricks_retry_timeout_s: int = DEFAULT_DATABRICKS_RETRY_TIMEOUT_S
    databricks_http_timeout_s: int = DEFAULT_DATABRICKS_HTTP_TIMEOUT_S
    # The job entry point's event when not given on its command line (job runners pass it this way).
    event_message: str | None = None
    # prometheus-client's multiprocess folder: set, /metrics adds up every process writing into it.
    metrics_dir: str | None = None
    # GUARD_EXCLUDE: comma-separated globs (core/compare/exclude.py) left out of every check, as excluded.
    exclude: list[str] = field(default_factory=list)
    # GUARD_TRANSFER_CONCURRENCY: concurrent transfers when streaming remote models (None: per store kind).
    transfer_concurrency: int | None = None
    # GUARD_STORE: results, journal, alias history, sweep marks (sqlite:///PATH or postgresql://…).
    store_url: str = ""
    # GUARD_SIGNING_KEY (loaded once, here): the key signed seals are made with; None = never sign.
    signing_key: Any = field(default=None, repr=False)
    # GUARD_TRUSTED_KEYS: the public keys a seal may be signed with (default: the signing key's own).
    trusted_keys: list[Any] = field(default_factory=list, repr=False)
    # GUARD_SEAL_STORE: where signed seals live (default: the store's database, GUARD_STORE).
    seal_store_uri: str | None = None
    # GUARD_PROTECTED_ALIASES: aliases moved back off a version whose verdict is FAILED or ERROR (off: empty).
    protected_aliases: list[str] = field(default_factory=list)
    # GUARD_SWEEP_INTERVAL / GUARD_REVERIFY_INTERVAL (seconds); GUARD_REVERIFY: one of REVERIFY_SCOPES.
    sweep_interval_s: float = DEFAULT_SWEEP_INTERVAL_S
    reverify_interval_s: float = DEFAULT_REVERIFY_INTERVAL_S
    reverify_scope: str = "protected"
    # GUARD_SWEEP_SINCE: where a new deployment's catch-up starts, epoch seconds (0.0 = ``all``; None = the
    # moment the guard first started against the registry, recorded in the store).
    sweep_since: float | None = None
    # GUARD_NOTIFY: apprise URLs alerted about verdicts; GUARD_NOTIFY_ON: which verdicts (upper-case).
    notify_urls: list[str] = field(default_factory=list, repr=False)
    notify_on: list[str] = field(default_factory=lambda: ["ERROR", "FAILED"])
    # GUARD_NOTIFY_RETRIES / GUARD_NOTIFY_RETRY_BASE_S: a failed alert is tried again this many times,
    # waiting base, 2 x base, 4 x base, ... seconds (capped at GUARD_RETRY_MAX_S).
    notify_retries: int = DEFAULT_NOTIFY_RETRIES
    notify_retry_base_s: float = DEFAULT_NOTIFY_RETRY_BASE_S
    # GUARD_POLICY: the policy file's path; ``policy`` is the file loaded and validated at start (None: none).
    policy_path: str | None = None
    policy: Any = field(default=None, repr=False)

    def __post_init__(self) -> None:
        self.data_dir = Path(self.data_dir)
        if self.policy is None and self.policy_path:
            self.policy = _load_policy(self.policy_path)
        if not self.trusted_keys and self.signing_key is not None:
            from core.seal.keys import trusted_from_signing_key

            self.trusted_keys = [trusted_from_signing_key(self.signing_key)]
        if not self.queue_url:
            self.queue_url = f"sqlite:///{self.data_dir / 'queue.db'}"
        if not self.store_url:
            self.store_url = default_store_url(self.data_dir)
        try:
            self.store_url = normalise_url(self.store_url)
        except StoreConfigError as exc:
            raise ConfigError(str(exc)) from exc
        refusal = shared_state_problem(self.store_url, self.seal_store_uri)
        if refusal:
            raise ConfigError(refusal)
        if self.reverify_scope not in REVERIFY_SCOPES:
            raise ConfigError(f"GUARD_REVERIFY must be one of {', '.join(REVERIFY_SCOPES)}, "
                              f"got {self.reverify_scope!r}")
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
        shown["signing_key"] = "<set>" if self.signing_key is not None else None
        shown["trusted_keys"] = f"<{len(self.trusted_keys)} key(s)>"
        shown["notify_urls"] = f"<{len(self.notify_urls)} URL(s)>"
        shown["policy"] = "<loaded>" if self.policy is not None else None
        if shown["databricks_authorization"]:
            shown["databricks_authorization"] = "<set>"
        return "Settings(" + ", ".join(f"{k}={v!r}" for k, v in shown.items()) + ")"

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None, **overrides: Any) -> Settings:
        """Read the settings from ``env`` (default ``os.environ``); keyword overrides win over the env."""
        env = os.environ if env is None else env

        def integer(name: str, default: int, minimum: int = 1) -> int:
            return parse_int(name, env.get(name), default, minimum)

        def number(name: str, default: float) -> float:
            return parse_float(name, env.get(name), default, 0)

        allow_unsigned = {item.lower() for item in split_list(env.get("GUARD_ALLOW_UNSIGNED"))}
        unknown = allow_unsigned - set(ROUTES)
        if unknown:
            raise ConfigError(f"GUARD_ALLOW_UNSIGNED accepts only {', '.join(ROUTES)}; got {sorted(unknown)}")
        tracking_uri = env.get("MLFLOW_TRACKING_URI") or None
        registry_uri = env.get("MLFLOW_REGISTRY_URI") or None
        problem = route_problem(tracking_uri, registry_uri)
        if problem:
            raise ConfigError(problem)
        data_dir = Path(env.get("GUARD_DATA_DIR") or ".guard")
        ui_url = env.get("GUARD_UI_URL") or None
        if ui_url is None and tracking_uri and tracking_uri.startswith(("http://", "https://")):
            # The MLflow tracking server also serves its UI.
            ui_url = tracking_uri
        databricks_host = env.get("DATABRICKS_HOST") or None
        if ui_url is None and registry_kind(tracking_uri, registry_uri) == "databricks":
            ui_url = databricks_host
        values: dict[str, Any] = {
            "tracking_uri": tracking_uri,
            "registry_uri": registry_uri,
            "mlflow_secrets": split_list(env.get("GUARD_MLFLOW_SECRET")),
            "databricks_secrets": split_list(env.get("GUARD_DATABRICKS_SECRET")),
            "databricks_authorization": env.get("GUARD_DATABRICKS_AUTHORIZATION") or None,
            "allow_unsigned_mlflow": "mlflow" in allow_unsigned,
            "allow_unsigned_databricks": "databricks" in allow_unsigned,
            "queue_url": env.get("GUARD_QUEUE") or "",
            "data_dir": data_dir,
            "gate_transitions": parse_bool("GUARD_GATE_TRANSITIONS", env.get("GUARD_GATE_TRANSITIONS"),
                                            False),
            "timestamp_tolerance_s": parse_int("GUARD_TIMESTAMP_TOLERANCE",
                                                env.get("GUARD_TIMESTAMP_TOLERANCE"), DEFAULT_TOLERANCE_S, 1),
            "max_body_bytes": parse_int("GUARD_MAX_BODY_BYTES", env.get("GUARD_MAX_BODY_BYTES"),
                                         DEFAULT_MAX_BODY_BYTES, 1),
            "registry_kind": registry_kind(tracking_uri, registry_uri),
            "ui_base_url": ui_url,
            "databricks_host": databricks_host,
            "ready_timeout_s": number("GUARD_READY_TIMEOUT", DEFAULT_READY_TIMEOUT_S),
            "max_retries": integer("GUARD_MAX_RETRIES", DEFAULT_MAX_RETRIES, 0),
            "retry_base_s": number("GUARD_RETRY_BASE_S", DEFAULT_RETRY_BASE_S),
            "retry_max_s": number("GUARD_RETRY_MAX_S", DEFAULT_RETRY_MAX_S),
            "databricks_tag_limit": integer("GUARD_DATABRICKS_TAG_LIMIT", DEFAULT_DATABRICKS_TAG_LIMIT),
            "databricks_retry_timeout_s": integer("GUARD_DATABRICKS_RETRY_TIMEOUT",
                                                  DEFAULT_DATABRICKS_RETRY_TIMEOUT_S),
            "databricks_http_timeout_s": integer("GUARD_DATABRICKS_HTTP_TIMEOUT",
                                                 DEFAULT_DATABRICKS_HTTP_TIMEOUT_S),
            "event_message": env.get("GUARD_EVENT_MESSAGE") or env.get("EVENT_MESSAGE") or None,
            "metrics_dir": env.get("PROMETHEUS_MULTIPROC_DIR") or None,
            "exclude": exclude_patterns(env.get("GUARD_EXCLUDE")),
            "transfer_concurrency": (integer("GUARD_TRANSFER_CONCURRENCY", 1)
                                     if (env.get("GUARD_TRANSFER_CONCURRENCY") or "").strip() else None),
            "store_url": env.get("GUARD_STORE") or "",
            "seal_store_uri": env.get("GUARD_SEAL_STORE") or None,
            "protected_aliases": split_list(env.get("GUARD_PROTECTED_ALIASES")),
            "sweep_interval_s": parse_float("GUARD_SWEEP_INTERVAL", env.get("GUARD_SWEEP_INTERVAL"),
                                             DEFAULT_SWEEP_INTERVAL_S, 1),
            "reverify_interval_s": parse_float("GUARD_REVERIFY_INTERVAL", env.get("GUARD_REVERIFY_INTERVAL"),
                                                DEFAULT_REVERIFY_INTERVAL_S, 1),
            "reverify_scope": (env.get("GUARD_REVERIFY") or "protected").strip().lower(),
            "sweep_since": parse_since("GUARD_SWEEP_SINCE", env.get("GUARD_SWEEP_SINCE")),
            "notify_urls": notify_urls(env.get("GUARD_NOTIFY")),
            "notify_on": notify_on("GUARD_NOTIFY_ON", env.get("GUARD_NOTIFY_ON")),
            "notify_retries": integer("GUARD_NOTIFY_RETRIES", DEFAULT_NOTIFY_RETRIES, 0),
            "notify_retry_base_s": parse_float("GUARD_NOTIFY_RETRY_BASE_S",
                                               env.get("GUARD_NOTIFY_RETRY_BASE_S"),
                                               DEFAULT_NOTIFY_RETRY_BASE_S, 0.01),
            "policy_path": (env.get("GUARD_POLICY") or "").strip() or None,
        }
        if "signing_key" not in overrides and "trusted_keys" not in overrides:
            values.update(seal_keys(env.get("GUARD_SIGNING_KEY"), env.get("GUARD_TRUSTED_KEYS")))
        values.update(overrides)
        return cls(**values)

    @property
    def unity_catalog(self) -> bool:
        """True when the registry served is Databricks Unity Catalog (``databricks-uc``)."""
        return is_unity_catalog_uri(self.registry_uri)

    def open_seal_store(self) -> Any:
        """The seal store: ``GUARD_SEAL_STORE``, else the store's own database (``GUARD_STORE``), so hosts
        that share the store share the seals."""
        from core.seal.store import open_seal_store

        return open_seal_store(self.seal_store_uri or self.store_url)

    def secrets_for(self, route: str) -> list[str]:
        """The accepted secrets of a webhook route (``mlflow`` or ``databricks``)."""
        return list(self.mlflow_secrets if route == "mlflow" else self.databricks_secrets)

    def retry_delay(self, attempt: int) -> float:
        """Seconds to wait before retry number ``attempt`` (1-based): exponential, capped."""
        return float(min(self.retry_max_s, self.retry_base_s * (2 ** max(0, attempt - 1))))

    def notify_retry_delay(self, attempt: int) -> float:
        """Seconds to wait before sending a failed alert again (retry ``attempt``, 1-based)."""
        return float(min(self.retry_max_s, self.notify_retry_base_s * (2 ** max(0, attempt - 1))))

    def allows_unsigned(self, route: str) -> bool:
        """True when ``route`` has no secret and was explicitly opened to unsigned deliveries."""
        if route == "mlflow":
            return self.allow_unsigned_mlflow and not self.mlflow_secrets
        return self.allow_unsigned_databricks and not self.databricks_secrets
