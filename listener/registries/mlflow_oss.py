"""Open-source MLflow registry: verdict as ``validation.*`` tags plus a marked description section."""

from __future__ import annotations

from typing import Any

from listener.registries.base import MlflowClientAdapter, write_tags_and_description
from listener.verdict import Verdict
from listener.verdict_tags import render_tags


class MlflowOssAdapter(MlflowClientAdapter):
    """Reads and writes model versions through ``MlflowClient`` on the configured tracking/registry URI."""

    registry = "mlflow"

    def publish(self, verdict: Verdict, current: Any = None) -> None:
        """Write the changed ``validation.*`` tags and the description section; the status tag last.

    No report tag: MLflow's version page sorts tags by name, so ``validation.report`` would sit above
    ``validation.status`` and push it out of sight; the report is in the results store and
    ``/api/validations``.
    """
        model, version = verdict.model, str(verdict.version)
        try:
            write_tags_and_description(self.client, self.current(verdict, current), verdict,
                                       render_tags(verdict, with_report=False))
        except Exception as exc:  # noqa: BLE001 - mapped to our error classes
            raise self._classify(exc, f"publishing to {model} version {version}") from exc
