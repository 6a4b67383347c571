"""The registry webhooks that call the listener: create or update, list (open-source MLflow, Databricks).

Used by ``guard-webhooks`` (:mod:`listener.admin`) and the local stack. Secrets are passed to the registry
and never returned or shown.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

from listener.protocol.events import webhook_events

DEFAULT_NAME = "mlflow-version-guard"
# The events that lead to a check (the event table); subscribing to anything else would only be ignored.
MLFLOW_DEFAULT_EVENTS: tuple[str, ...] = webhook_events("mlflow")
DATABRICKS_DEFAULT_EVENTS: tuple[str, ...] = webhook_events("databricks")


@dataclass
class WebhookInfo:
    """What ``list`` shows of a webhook (never its secret)."""

    id: str
    url: str | None
    events: list[str]
    status: str | None
    name: str | None = None
    model_name: str | None = None
    description: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form."""
        data = asdict(self)
        if not data["extra"]:
            data.pop("extra")
        return data


# --------------------------------------------------------------------------------------------------- MLflow


def mlflow_client(tracking_uri: str | None):
    from mlflow import MlflowClient

    return MlflowClient(tracking_uri=tracking_uri, registry_uri=tracking_uri)


def _mlflow_events(webhook) -> list[str]:
    return [str(event) for event in webhook.events]


def mlflow_info(webhook) -> WebhookInfo:
    status = getattr(webhook.status, "value", webhook.status)
    return WebhookInfo(id=webhook.webhook_id, name=webhook.name, url=webhook.url,
                       events=_mlflow_events(webhook), status=str(status) if status is not None else None,
                       description=webhook.description)


def mlflow_webhooks(client) -> list:
    """Every webhook of an MLflow server (all pages)."""
    found: list = []
    token = None
    while True:
        page = client.list_webhooks(max_results=100, page_token=token)
        found.extend(page)
        token = page.token
        if not token:
            return found


def ensure_mlflow_webhook(client, *, url: str, secret: str | None, name: str = DEFAULT_NAME,
                          events: Sequence[str] = MLFLOW_DEFAULT_EVENTS, description: str | None = None,
                          status: str = "ACTIVE") -> tuple[Any, bool]:
    """Create the listener's webhook on an MLflow server, or bring an existing one up to date.

    A webhook with the same name or the same URL is reused (updated with ``url``, ``events``, ``secret``
    and ``status``), so starting the stack twice never delivers every event twice.
    Returns ``(webhook, created)``.
    """
    description = description or "Validates new and promoted model versions (mlflow-version-guard)."
    matches = [w for w in mlflow_webhooks(client) if w.name == name or w.url == url]
    if matches:
        # Prefer the exact name; extra matches are left alone and reported by `list`.
        matches.sort(key=lambda w: (w.name != name, w.creation_timestamp or 0))
        current = matches[0]
        updated = client.update_webhook(current.webhook_id, name=name, url=url, events=list(events),
                                        description=description, secret=secret, status=status)
        return updated, False
    created = client.create_webhook(name=name, url=url, events=list(events), description=description,
                                    secret=secret, status=status)
    return created, True


# ----------------------------------------------------------------------------------------------- Databricks


def databricks_client(profile: str | None):
    from databricks.sdk import WorkspaceClient

    return WorkspaceClient(profile=profile) if profile else WorkspaceClient()


def databricks_info(webhook) -> WebhookInfo:
    spec = webhook.http_url_spec
    events = [getattr(e, "value", str(e)) for e in (webhook.events or [])]
    status = getattr(webhook.status, "value", webhook.status)
    extra = {"job_id": webhook.job_spec.job_id} if webhook.job_spec else {}
    return WebhookInfo(id=webhook.id, url=spec.url if spec else None, events=events,
                       status=str(status) if status is not None else None, model_name=webhook.model_name,
                       description=webhook.description, extra=extra)


def ensure_databricks_webhook(
    w, *, url: str, secret: str | None, events: Sequence[str] = DATABRICKS_DEFAULT_EVENTS,
    model_name: str | None = None, authorization: str | None = None, description: str | None = None,
    status: str = "ACTIVE", ssl_verification: bool = True,
) -> tuple[WebhookInfo, bool]:
    """Create a registry webhook on a Databricks workspace, or update the one with the same URL and model.

    Returns ``(webhook, created)``.
    """
    from databricks.sdk.service.ml import HttpUrlSpec, RegistryWebhookEvent, RegistryWebhookStatus

    try:
        wanted = [RegistryWebhookEvent(e) for e in events]
    except ValueError as exc:
        raise ValueError(f"unknown Databricks registry event: {exc}") from exc
    spec = HttpUrlSpec(url=url, secret=secret, authorization=authorization,
                       enable_ssl_verification=ssl_verification)
    description = description or f"{DEFAULT_NAME}: validates new and promoted model versions"
    for existing in w.model_registry.list_webhooks(model_name=model_name):
        same_url = existing.http_url_spec is not None and existing.http_url_spec.url == url
        if same_url and (existing.model_name or None) == (model_name or None):
            w.model_registry.update_webhook(existing.id, events=wanted, http_url_spec=spec,
                                            description=description, status=RegistryWebhookStatus(status))
            existing.events = wanted
            existing.status = RegistryWebhookStatus(status)
            existing.description = description
            return databricks_info(existing), False
    response = w.model_registry.create_webhook(events=wanted, http_url_spec=spec, model_name=model_name,
                                               description=description, status=RegistryWebhookStatus(status))
    return databricks_info(response.webhook), True
