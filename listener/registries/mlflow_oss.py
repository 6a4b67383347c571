"""Open-source MLflow registry: verdict as ``validation.*`` tags plus a marked description section."""

from __future__ import annotations

from typing import Any
from urllib.parse import quote

from core.errors import CheckError
from core.seal import Manifest
from listener.registries.base import classify_exception
from listener.verdict import (
    TAG_CHECKED_AT,
    TAG_MANIFEST,
    TAG_REPORT,
    TAG_SEAL,
    TAG_STATUS,
    TAG_SUMMARY,
    Verdict,
    render_tags,
    update_description,
)

# The seal goes first (so a version is sealed as early as possible), the status last (so whoever sees a
# fresh status also sees the report and summary that belong to it).
_TAG_ORDER = (TAG_MANIFEST, TAG_SEAL, TAG_REPORT, TAG_SUMMARY, TAG_CHECKED_AT, TAG_STATUS)


class MlflowOssAdapter:
    """Reads and writes model versions through ``MlflowClient`` on the configured tracking/registry URI."""

    registry = "mlflow"

    def __init__(self, settings: Any, client: Any = None) -> None:
        self.settings = settings
        if client is None:
            from core.registry import make_client

            client = make_client(settings.tracking_uri, settings.registry_uri)
        self.client = client

    def read_version(self, model: str, version: str) -> Any:
        """The ModelVersion entity as the registry has it now."""
        try:
            return self.client.get_model_version(model, str(version))
        except Exception as exc:  # noqa: BLE001 - mapped to our error classes
            raise classify_exception(exc, f"reading {model} version {version}") from exc

    def load_seal(self, model: str, version: str) -> Manifest | None:
        """The manifest stored in the ``validation.manifest`` tag, or None."""
        return self.seal_of(self.read_version(model, version))

    def seal_of(self, mv: Any) -> Manifest | None:
        """The seal carried by an already-read version (saves a registry round trip)."""
        model, version = mv.name, mv.version
        raw = (getattr(mv, "tags", None) or {}).get(TAG_MANIFEST)
        if not raw:
            return None
        try:
            return Manifest.from_json(raw)
        except Exception as exc:  # noqa: BLE001 - a damaged seal is a permanent problem of the version
            raise CheckError(f"the {TAG_MANIFEST} tag of {model} version {version} is not a valid manifest")\
                from exc

    def version_url(self, model: str, version: str) -> str | None:
        """Link to the version in the MLflow UI, when a UI base URL is known."""
        base = getattr(self.settings, "ui_base_url", None)
        if not base:
            return None
        return f"{base.rstrip('/')}/#/models/{quote(model, safe='')}/versions/{quote(str(version), safe='')}"

    def publish(self, verdict: Verdict) -> None:
        """Write the changed ``validation.*`` tags and the description section; the status tag last.

        Idempotent, so a retried publish is harmless. The status goes last so that whoever sees a new
        ``validation.status`` also sees the summary, report and description section that belong to it.
        """
        tags = render_tags(verdict)
        model, version = verdict.model, str(verdict.version)
        try:
            existing = dict(getattr(self.client.get_model_version(model, version), "tags", None) or {})
            ordered = sorted(tags, key=lambda k: _TAG_ORDER.index(k) if k in _TAG_ORDER else -1)
            for key in ordered[:-1]:
                if existing.get(key) != tags[key]:
                    self.client.set_model_version_tag(model, version, key, tags[key])
            # Re-read right before writing so an edit the user made meanwhile is kept.
            current = self.client.get_model_version(model, version).description or ""
            updated = update_description(current, verdict)
            if updated != current:
                self.client.update_model_version(model, version, description=updated)
            last = ordered[-1]
            if existing.get(last) != tags[last]:
                self.client.set_model_version_tag(model, version, last, tags[last])
        except Exception as exc:  # noqa: BLE001 - mapped to our error classes
            raise classify_exception(exc, f"publishing to {model} version {version}") from exc
