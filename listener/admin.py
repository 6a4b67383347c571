"""Register, list, delete and test the registry webhooks that call the listener.

Open-source MLflow (3.3+, server with a SQL backend store) through ``MlflowClient``'s webhook API, and the
Databricks workspace model registry through ``databricks-sdk`` (``WorkspaceClient().model_registry``).

    guard-webhooks register --registry mlflow --url https://guard.example.com
    guard-webhooks list --registry databricks
    guard-webhooks test --registry mlflow WEBHOOK_ID
    guard-webhooks delete --registry mlflow WEBHOOK_ID

(or ``python -m listener.admin ...``). The signing secret comes from ``GUARD_MLFLOW_SECRET`` /
``GUARD_DATABRICKS_SECRET`` (the first item of a comma-separated rotation list) or from a hidden prompt; it
is sent to the registry only and never printed or logged. Registration is idempotent: a webhook with the
same name (MLflow) or the same URL is updated in place instead of being created twice.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import click

from listener.config import ROUTES, SECRET_VARIABLES, Settings

DEFAULT_NAME = "mlflow-version-guard"

# The events that lead to a check (DESIGN.md, "Events -> actions"); anything else would only be ignored.
MLFLOW_DEFAULT_EVENTS: tuple[str, ...] = ("model_version.created", "model_version_alias.created")
DATABRICKS_DEFAULT_EVENTS: tuple[str, ...] = (
    "MODEL_VERSION_CREATED",
    "MODEL_VERSION_TRANSITIONED_STAGE",
    "TRANSITION_REQUEST_CREATED",
)
# `test` sends a tag event by default: the listener verifies the signature and answers 200 "ignored",
# so a test proves reachability and the shared secret without queueing a check of an example model.
MLFLOW_TEST_EVENT = "model_version_tag.set"


class AdminError(click.ClickException):
    """A webhook operation failed; the message is for the operator and never contains a secret."""


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


def listener_webhook_url(url: str, registry: str) -> str:
    """The delivery URL for ``registry``: a bare listener URL gets the registry's route appended.

    ``https://guard.example.com`` -> ``https://guard.example.com/webhooks/mlflow``; a URL that already has
    a path is taken as given (a reverse proxy may mount the listener elsewhere).
    """
    parts = urlsplit(url.strip())
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise AdminError(f"webhook URL must be http(s)://host[:port][/path], got {url!r}")
    path = parts.path
    if path in ("", "/"):
        path = f"/webhooks/{registry}"
    return urlunsplit((parts.scheme, parts.netloc, path, parts.query, ""))


def secret_from_env(registry: str, env: dict[str, str] | None = None) -> str | None:
    """The secret to register: the first item of the registry's comma-separated secret variable.

    With rotation the listener accepts every listed secret, so the first (newest) one is registered and
    older ones can be dropped from the list once every webhook uses the new one.
    """
    items = Settings.from_env(env).secrets_for(registry)
    return items[0] if items else None


def _resolve_secret(registry: str, no_secret: bool) -> str | None:
    if no_secret:
        click.echo(f"warning: registering without a secret; the listener refuses unsigned deliveries unless "
                   f"GUARD_ALLOW_UNSIGNED includes {registry}", err=True)
        return None
    secret = secret_from_env(registry)
    if secret:
        return secret
    if not sys.stdin.isatty():
        raise AdminError(f"no secret: set {SECRET_VARIABLES[registry]} (the same value the listener uses) or "
                         f"run interactively to be prompted; --no-secret registers an unsigned webhook")
    secret = click.prompt("Webhook secret (hidden)", hide_input=True, confirmation_prompt=True).strip()
    if not secret:
        raise AdminError("empty secret")
    return secret


# --------------------------------------------------------------------------------------------------- MLflow


def _mlflow_client(tracking_uri: str | None):
    from mlflow import MlflowClient

    return MlflowClient(tracking_uri=tracking_uri, registry_uri=tracking_uri)


def _mlflow_events(webhook) -> list[str]:
    return [str(event) for event in webhook.events]


def _mlflow_info(webhook) -> WebhookInfo:
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


def _databricks_client(profile: str | None):
    from databricks.sdk import WorkspaceClient

    return WorkspaceClient(profile=profile) if profile else WorkspaceClient()


def _databricks_info(webhook) -> WebhookInfo:
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
        raise AdminError(f"unknown Databricks registry event: {exc}") from exc
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
            return _databricks_info(existing), False
    response = w.model_registry.create_webhook(events=wanted, http_url_spec=spec, model_name=model_name,
                                               description=description, status=RegistryWebhookStatus(status))
    return _databricks_info(response.webhook), True


# ---------------------------------------------------------------------------------------------------- CLI


def _echo_infos(infos: Iterable[WebhookInfo], as_json: bool) -> None:
    infos = list(infos)
    if as_json:
        click.echo(json.dumps([i.to_dict() for i in infos], indent=2))
        return
    if not infos:
        click.echo("no webhooks")
        return
    for info in infos:
        label = info.name or info.model_name or "(all models)"
        click.echo(f"{info.id}  {info.status or '-':9}  {label}  {info.url}  [{', '.join(info.events)}]")


registry_option = click.option("--registry", type=click.Choice(list(ROUTES)), default="mlflow",
                               show_default=True, help="Which model registry to manage.")
tracking_option = click.option("--tracking-uri", envvar="MLFLOW_TRACKING_URI", default=None,
                               help="MLflow server (default: MLFLOW_TRACKING_URI).")
profile_option = click.option("--profile", default=None,
                              help="Databricks config profile (default: the SDK's unified authentication).")
json_option = click.option("--json", "as_json", is_flag=True, help="Print JSON.")


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
def main() -> None:
    """Manage the registry webhooks that call the mlflow-version-guard listener."""


@main.command()
@registry_option
@tracking_option
@profile_option
@click.option("--url", required=True, envvar="GUARD_LISTENER_URL",
              help="Listener URL; a bare https://host gets /webhooks/<registry> appended.")
@click.option("--event", "events", multiple=True,
              help="Event to subscribe to (repeatable); default: the events that trigger a check.")
@click.option("--name", default=DEFAULT_NAME, show_default=True, help="Webhook name (MLflow).")
@click.option("--model-name", default=None, help="Only this model's events (Databricks; default: all).")
@click.option("--description", default=None, help="Webhook description.")
@click.option("--status", type=click.Choice(["ACTIVE", "TEST_MODE", "DISABLED"]), default="ACTIVE",
              show_default=True, help="Databricks TEST_MODE fires only on `test`; MLflow: ACTIVE/DISABLED.")
@click.option("--no-secret", is_flag=True, help="Register without a signing secret (not recommended).")
@click.option("--no-ssl-verification", is_flag=True, help="Databricks: skip TLS verification.")
@json_option
def register(registry: str, tracking_uri: str | None, profile: str | None, url: str, events: tuple[str, ...],
             name: str, model_name: str | None, description: str | None, status: str, no_secret: bool,
             no_ssl_verification: bool, as_json: bool) -> None:
    """Create the listener's webhook, or update the existing one (idempotent)."""
    target = listener_webhook_url(url, registry)
    secret = _resolve_secret(registry, no_secret)
    try:
        if registry == "mlflow":
            if status == "TEST_MODE":
                raise AdminError("MLflow webhooks are ACTIVE or DISABLED")
            webhook, created = ensure_mlflow_webhook(
                _mlflow_client(tracking_uri), url=target, secret=secret, name=name,
                events=events or MLFLOW_DEFAULT_EVENTS, description=description, status=status)
            info = _mlflow_info(webhook)
        else:
            info, created = ensure_databricks_webhook(
                _databricks_client(profile), url=target, secret=secret,
                events=events or DATABRICKS_DEFAULT_EVENTS, model_name=model_name,
                authorization=Settings.from_env().databricks_authorization,
                description=description, status=status, ssl_verification=not no_ssl_verification)
    except AdminError:
        raise
    except Exception as exc:  # registry/SDK errors: one clear line, no traceback, no request echo
        raise AdminError(f"could not register the {registry} webhook: {type(exc).__name__}: {exc}") from exc
    if as_json:
        click.echo(json.dumps({"created": created, "webhook": info.to_dict()}, indent=2))
    else:
        verb = "created" if created else "updated existing"
        click.echo(f"{verb} webhook {info.id} -> {info.url} [{', '.join(info.events)}]"
                   f"{' (signed)' if secret else ' (UNSIGNED)'}")


@main.command(name="list")
@registry_option
@tracking_option
@profile_option
@click.option("--model-name", default=None, help="Databricks: only webhooks of this model.")
@json_option
def list_cmd(registry: str, tracking_uri: str | None, profile: str | None, model_name: str | None,
             as_json: bool) -> None:
    """List the registry's webhooks (secrets are never shown)."""
    try:
        if registry == "mlflow":
            infos = [_mlflow_info(w) for w in mlflow_webhooks(_mlflow_client(tracking_uri))]
        else:
            infos = [_databricks_info(w)
                     for w in _databricks_client(profile).model_registry.list_webhooks(model_name=model_name)]
    except Exception as exc:
        raise AdminError(f"could not list {registry} webhooks: {type(exc).__name__}: {exc}") from exc
    _echo_infos(infos, as_json)


@main.command()
@registry_option
@tracking_option
@profile_option
@click.argument("webhook_id")
def delete(registry: str, tracking_uri: str | None, profile: str | None, webhook_id: str) -> None:
    """Delete a webhook by id."""
    try:
        if registry == "mlflow":
            _mlflow_client(tracking_uri).delete_webhook(webhook_id)
        else:
            _databricks_client(profile).model_registry.delete_webhook(webhook_id)
    except Exception as exc:
        raise AdminError(f"could not delete {registry} webhook {webhook_id}: {type(exc).__name__}: {exc}") \
            from exc
    click.echo(f"deleted webhook {webhook_id}")


@main.command()
@registry_option
@tracking_option
@profile_option
@click.argument("webhook_id")
@click.option("--event", default=None,
              help=f"Event to send (MLflow default {MLFLOW_TEST_EVENT}: checks the signature only).")
def test(registry: str, tracking_uri: str | None, profile: str | None, webhook_id: str,
         event: str | None) -> None:
    """Ask the registry to send a test delivery to the listener and show the listener's answer."""
    try:
        if registry == "mlflow":
            result = _mlflow_client(tracking_uri).test_webhook(webhook_id, event=event or MLFLOW_TEST_EVENT)
            ok, code, body = bool(result.success), result.response_status, result.response_body
            error = result.error_message
        else:
            from databricks.sdk.service.ml import RegistryWebhookEvent

            response = _databricks_client(profile).model_registry.test_registry_webhook(
                webhook_id, event=RegistryWebhookEvent(event) if event else None)
            code, body, error = response.status_code, response.body, None
            ok = code is not None and code < 400
    except Exception as exc:
        raise AdminError(f"could not test {registry} webhook {webhook_id}: {type(exc).__name__}: {exc}") \
            from exc
    summary = f"HTTP {code}" if code is not None else "no answer"
    click.echo(f"{'OK' if ok else 'FAILED'}: {summary}{(' ' + body.strip()[:500]) if body else ''}")
    if error:
        click.echo(error, err=True)
    if not ok:
        raise SystemExit(1)


if __name__ == "__main__":
    main()
