"""The shape every registry adapter has: read a version, load its seal, publish a verdict."""

from __future__ import annotations

from typing import Any, Protocol, runtime_checkable

from core.errors import CheckError
from core.seal import Manifest
from listener.verdict import Verdict


@runtime_checkable
class RegistryAdapter(Protocol):
    """One registry (open-source MLflow, Databricks) as the worker sees it."""

    def read_version(self, model: str, version: str) -> Any:
        """The model version as the registry has it now (has ``.status``, ``.tags`` where supported).

        Raises ``core.errors.NotFoundError`` for an unknown model/version and ``TransientError`` when the
        registry cannot be reached.
        """
        ...

    def load_seal(self, model: str, version: str) -> Manifest | None:
        """The version's seal (the ``validation.manifest`` tag) or None when it has none."""
        ...

    def publish(self, verdict: Verdict) -> None:
        """Write ``verdict`` onto the version; ``TransientError`` when retrying may help."""
        ...


def classify_exception(exc: BaseException, what: str) -> CheckError:
    """Turn a client exception into ``TransientError`` / ``NotFoundError`` / ``CheckError``.

    ``what`` names the operation for the user-facing message. Connection failures, timeouts, 429 and
    5xx answers are transient; everything else is permanent (the core's classification, shared).
    """
    from core.registry import translate

    return translate(exc, what)
