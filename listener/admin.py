"""Register, list, delete and test the registry webhooks that call the listener.

Open-source MLflow (3.3+, server with a SQL backend store) through ``MlflowClient``'s webhook API, and the
Databricks workspace model registry through ``databricks-sdk`` (``WorkspaceClient().model_registry``).

    guard-webhooks register --registry mlflow --url https://guard.example.com
    guard-webhooks list --registry databricks
    guard-webhooks test --registry mlflow WEBHOOK_ID
    guard-webhooks delete --registry mlflow WEBHOOK_ID
    guard-webhooks notify-test          # a test alert to every GUARD_NOTIFY URL, and how each went

(or ``python -m listener.admin ...``). The signing secret comes from ``GUARD_MLFLOW_SECRET`` /
``GUARD_DATABRICKS_SECRET`` (the first item of a comma-separated rotation list) or from a hidden prompt; it
is sent to the registry only and never printed or logged. Registration is idempotent: a webhook with the
same name (MLflow) or the same URL is updated in place instead of being created twice.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Iterable
from urllib.parse import urlsplit, urlunsplit

import click

from listener.config import ROUTES, SECRET_VARIABLES, Settings
from listener.registries.webhook_registration import (
    DATABRICKS_DEFAULT_EVENTS,
    DEFAULT_NAME,
    MLFLOW_DEFAULT_EVENTS,
    WebhookInfo,
    databricks_client,
    databricks_info,
    ensure_databricks_webhook,
    ensure_mlflow_webhook,
    mlflow_client,
    mlflow_info,
    mlflow_webhooks,
)

# `test` sends a tag event by default: the listener verifies the signature and answers 200 "ignored",
# so a test proves reachability and the shared secret without queueing a check of an example model.
MLFLOW_TEST_EVENT = "model_version_tag.set"
# Databricks would otherwise pick one of the webhook's own events, which may queue a check or gate a
# request of an example model: a comment event is always ignored by the listener (see the event table).
DATABRICKS_TEST_EVENT = "COMMENT_CREATED"


class AdminError(click.ClickException):
    """A webhook operation failed; the message is for the operator and never contains a secret."""


def _ignored_event_of(workspace: object, webhook_id: str) -> str:
    """An event the webhook subscribes to that the listener always ignores (Databricks tests only those)."""
    from listener.protocol.events import IGNORED

    for hook in workspace.model_registry.list_webhooks():  # type: ignore[attr-defined]
        if hook.id == webhook_id:
            events = [getattr(e, "value", e) for e in hook.events or []]
            if DATABRICKS_TEST_EVENT in events:
                return DATABRICKS_TEST_EVENT
            ignored = [e for e in events if e in IGNORED]
            if ignored:
                return ignored[0]
            raise AdminError(f"webhook {webhook_id} subscribes to no event the listener ignores "
                             f"({', '.join(events)}): pass --event to choose one (a real event queues a "
                             "check of the workspace's example model)")
    raise AdminError(f"no webhook {webhook_id}")


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
                mlflow_client(tracking_uri), url=target, secret=secret, name=name,
                events=events or MLFLOW_DEFAULT_EVENTS, description=description, status=status)
            info = mlflow_info(webhook)
        else:
            info, created = ensure_databricks_webhook(
                databricks_client(profile), url=target, secret=secret,
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
            infos = [mlflow_info(w) for w in mlflow_webhooks(mlflow_client(tracking_uri))]
        else:
            infos = [databricks_info(w)
                     for w in databricks_client(profile).model_registry.list_webhooks(model_name=model_name)]
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
            mlflow_client(tracking_uri).delete_webhook(webhook_id)
        else:
            databricks_client(profile).model_registry.delete_webhook(webhook_id)
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
              help=f"Event to send (default {MLFLOW_TEST_EVENT} / {DATABRICKS_TEST_EVENT}: checks the "
                   "signature only, never queues a check).")
def test(registry: str, tracking_uri: str | None, profile: str | None, webhook_id: str,
         event: str | None) -> None:
    """Ask the registry to send a test delivery to the listener and show the listener's answer."""
    try:
        if registry == "mlflow":
            result = mlflow_client(tracking_uri).test_webhook(webhook_id, event=event or MLFLOW_TEST_EVENT)
            ok, code, body = bool(result.success), result.response_status, result.response_body
            error = result.error_message
        else:
            from databricks.sdk.service.ml import RegistryWebhookEvent

            w = databricks_client(profile)
            response = w.model_registry.test_registry_webhook(
                webhook_id, event=RegistryWebhookEvent(event or _ignored_event_of(w, webhook_id)))
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


@main.command(name="notify-test")
@json_option
def notify_test(as_json: bool) -> None:
    """Send a test alert to every URL in GUARD_NOTIFY and report how each went."""
    from listener.alerts.message import AlertMessage
    from listener.alerts.send import send

    try:
        settings = Settings.from_env()
    except ValueError as exc:
        raise AdminError(str(exc)) from exc
    if not settings.notify_urls:
        raise AdminError("GUARD_NOTIFY is not set: no alert URL to test")
    message = AlertMessage("Model version guard: test alert",
                           "This is a test of the model version guard's alerts (guard-webhooks notify-test). "
                           "Verdicts that alert: " + ", ".join(settings.notify_on) + ".", "info")
    results = send(settings.notify_urls, message)
    if as_json:
        click.echo(json.dumps([{"url": r.target, "ok": r.ok, "error": r.error} for r in results], indent=2))
    else:
        for r in results:
            click.echo(f"{'OK' if r.ok else 'FAILED'}: {r.target}{'' if r.ok else ': ' + str(r.error)}")
    if not all(r.ok for r in results):
        raise SystemExit(1)


if __name__ == "__main__":
    main()
