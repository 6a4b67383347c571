"""The shape every registry adapter has, reading a version once it is registered, and what adapters reading
through ``MlflowClient`` share."""

from __future__ import annotations

import time
from typing import Any, Protocol

from mlflow import MlflowClient

from core.errors import CheckError, TransientError
from core.registry.error_mapping import translate
from listener.config import Settings
from listener.registries import version_url
from listener.verdict import Verdict
from listener.verdict_tags import PER_VERDICT_TAGS, ordered_tags
from listener.verdict_text import update_description


class RegistryAdapter(Protocol):
    """One registry (open-source MLflow, Databricks) as the worker uses it."""

    registry: str
    client: MlflowClient  # what the core reads the version's files through

    def read_version(self, model: str, version: str) -> Any:
        """The model version as the registry has it now (``.status``, ``.tags``, ``.description``).

        Raises ``core.errors.NotFoundError`` for an unknown model/version and ``TransientError`` when the
        registry cannot be reached.
        """
        ...

    def version_url(self, model: str, version: str) -> str | None:
        """Link to the version in the registry's UI, when one is known."""
        ...

    def publish(self, verdict: Verdict, current: Any = None) -> None:
        """Write ``verdict`` onto the version; ``current`` is the version as read for this job.

        ``TransientError`` when retrying may help.
        """
        ...


READY = "READY"
PENDING = "PENDING_REGISTRATION"
FAILED_REGISTRATION = "FAILED_REGISTRATION"


def version_status(mv: Any) -> str:
    """Normalised registration status of a ModelVersion-like object (MLflow string or SDK enum)."""
    status = getattr(mv, "status", None)
    if status is None:
        return READY
    status = getattr(status, "value", status)
    return str(status).rsplit(".", 1)[-1].upper()


def read_when_ready(adapter: RegistryAdapter, model: str, version: str, timeout_s: float,
                    poll_s: float = 0.5) -> Any:
    """Read the version; while it is still registering, read it again until it is READY.

    FAILED_REGISTRATION raises ``CheckError``; still pending after ``timeout_s`` raises ``TransientError``
    (the job is retried later rather than failed). A version that is READY is read exactly once.
    """
    deadline = time.monotonic() + timeout_s
    delay = poll_s
    while True:
        mv = adapter.read_version(model, version)
        status = version_status(mv)
        if status == READY:
            return mv
        if status == FAILED_REGISTRATION:
            raise CheckError(f"{model} version {version} failed to register (status FAILED_REGISTRATION)")
        if status != PENDING:
            raise CheckError(f"{model} version {version} has an unknown status {status!r}")
        if time.monotonic() >= deadline:
            raise TransientError(
                f"{model} version {version} still PENDING_REGISTRATION after {timeout_s:.0f} s")
        time.sleep(min(delay, max(0.0, deadline - time.monotonic())))
        delay = min(delay * 1.5, 5.0)


class MlflowClientAdapter:
    """What every registry read through ``MlflowClient`` shares: reading a version.

    Subclasses add publishing (and, where the registry has its own error types, ``_classify``).
    """

    registry = ""

    def __init__(self, settings: Settings, client: MlflowClient | None = None) -> None:
        self.settings = settings
        if client is None:
            from core.registry.access import make_client

            client = make_client(settings.tracking_uri, settings.registry_uri)
        self.client = client

    def _classify(self, exc: BaseException, what: str) -> CheckError:
        return translate(exc, what)

    def read_version(self, model: str, version: str) -> Any:
        """The model version as the registry has it now."""
        try:
            return self.client.get_model_version(model, str(version))
        except Exception as exc:  # noqa: BLE001 - mapped to our error classes
            raise self._classify(exc, f"reading {model} version {version}") from exc

    def version_url(self, model: str, version: str) -> str | None:
        """Link to the version in the registry's UI (``GUARD_UI_URL`` or the registry's own)."""
        return version_url(self.settings, self.registry, model, version)

    def current(self, verdict: Verdict, current: Any) -> Any:
        """``current`` or, when a caller publishes without having read the version, a fresh read."""
        return current if current is not None else self.read_version(verdict.model, str(verdict.version))


def write_tags_and_description(client: MlflowClient, current: Any, verdict: Verdict,
                               tags: dict[str, str]) -> None:
    """Write the changed ``validation.*`` tags and the description section; the status tag last.

    ``current`` is the version as read for this job: tags that already hold their value are not written
    again, so a retried publish is cheap and harmless. The user's text around the section is kept as
    ``current`` has it.
    """
    model, version = verdict.model, str(verdict.version)
    existing = dict(getattr(current, "tags", None) or {})
    order = ordered_tags(tags)
    for key in order[:-1]:
        if existing.get(key) != tags[key]:
            client.set_model_version_tag(model, version, key, tags[key])
    for key in PER_VERDICT_TAGS:
        if key in existing and key not in tags:  # an earlier verdict's, not true of this one
            client.delete_model_version_tag(model, version, key)
    description = getattr(current, "description", None) or ""
    updated = update_description(description, verdict)
    if updated != description:
        client.update_model_version(model, version, description=updated)
    last = order[-1]
    if existing.get(last) != tags[last]:
        client.set_model_version_tag(model, version, last, tags[last])
