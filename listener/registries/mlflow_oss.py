"""Open-source MLflow registry: verdict as ``validation.*`` tags plus a marked description section."""

from __future__ import annotations

from urllib.parse import quote

from listener.registries.base import MlflowClientAdapter, classify_exception
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


class MlflowOssAdapter(MlflowClientAdapter):
    """Reads and writes model versions through ``MlflowClient`` on the configured tracking/registry URI."""

    registry = "mlflow"

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
