"""Registry adapters: one small class per registry, all with the shape of :class:`RegistryAdapter`."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from listener.config import Settings
    from listener.registries.base import RegistryAdapter

REGISTRIES = ("mlflow", "databricks")


def get_adapter(registry: str, settings: Settings) -> RegistryAdapter:
    """The adapter for ``registry`` ("mlflow" or "databricks"), talking to the CONFIGURED registry only."""
    if registry == "mlflow":
        from listener.registries.mlflow_oss import MlflowOssAdapter

        return MlflowOssAdapter(settings)
    if registry == "databricks":
        # Imported lazily: the Databricks SDK is only needed where that registry is used.
        from listener.registries.databricks import DatabricksAdapter

        return DatabricksAdapter(settings)
    raise ValueError(f"unknown registry {registry!r}; expected one of {', '.join(REGISTRIES)}")
