"""The shape every registry adapter has, and what adapters reading through ``MlflowClient`` share."""

from __future__ import annotations

from typing import Any, Protocol

from mlflow import MlflowClient

from core.error_mapping import translate
from core.errors import CheckError
from listener.config import Settings
from listener.registries import version_url
from listener.verdict import Verdict
from listener.verdict_tags import ordered_tags
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


class MlflowClientAdapter:
    """What every registry read through ``MlflowClient`` shares: reading a version.

    Subclasses add publishing (and, where the registry has its own error types, ``_classify``).
    """

    registry = ""

    def __init__(self, settings: Settings, client: MlflowClient | None = None) -> None:
        self.settings = settings
        if client is None:
            from core.registry import make_client

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
    description = getattr(current, "description", None) or ""
    updated = update_description(description, verdict)
    if updated != description:
        client.update_model_version(model, version, description=updated)
    last = order[-1]
    if existing.get(last) != tags[last]:
        client.set_model_version_tag(model, version, last, tags[last])
