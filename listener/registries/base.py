"""The shape every registry adapter has: read a version, load its seal, publish a verdict."""

from __future__ import annotations

from typing import Any, Protocol, runtime_checkable

from core.errors import CheckError
from core.seal import Manifest
from listener.verdict import TAG_MANIFEST, Verdict


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


class MlflowClientAdapter:
    """What every registry read through ``MlflowClient`` shares: reading a version and its seal.

    Subclasses add publishing (and, where the registry has its own error types, ``_classify``).
    """

    registry = ""

    def __init__(self, settings: Any, client: Any = None) -> None:
        self.settings = settings
        if client is None:
            from core.registry import make_client

            client = make_client(settings.tracking_uri, settings.registry_uri)
        self.client = client

    def _classify(self, exc: BaseException, what: str) -> CheckError:
        return classify_exception(exc, what)

    def read_version(self, model: str, version: str) -> Any:
        """The model version as the registry has it now."""
        try:
            return self.client.get_model_version(model, str(version))
        except Exception as exc:  # noqa: BLE001 - mapped to our error classes
            raise self._classify(exc, f"reading {model} version {version}") from exc

    def load_seal(self, model: str, version: str) -> Manifest | None:
        """The manifest stored in the ``validation.manifest`` tag, or None."""
        return self.seal_of(self.read_version(model, version))

    def seal_of(self, mv: Any) -> Manifest | None:
        """The seal carried by an already-read version (saves a registry round trip)."""
        raw = (getattr(mv, "tags", None) or {}).get(TAG_MANIFEST)
        if not raw:
            return None
        try:
            return Manifest.from_json(raw)
        except Exception as exc:  # noqa: BLE001 - a damaged seal is a permanent problem of the version
            raise CheckError(f"the {TAG_MANIFEST} tag of {mv.name} version {mv.version} is not a valid "
                             "manifest") from exc
