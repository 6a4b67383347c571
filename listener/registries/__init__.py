"""Registry adapters: one small class per registry, all with the shape of :class:`RegistryAdapter`."""

from __future__ import annotations

from typing import TYPE_CHECKING
from urllib.parse import quote

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


def version_url(settings: Settings, registry: str, model: str, version: str) -> str | None:
    """Link to a version in its registry's UI (``GUARD_UI_URL``; Databricks: else ``DATABRICKS_HOST``).

    Both UIs route in the URL fragment: MLflow ``#/models/…``, Databricks ``#mlflow/models/…`` (the form
    MLflow itself prints for a workspace). A Unity Catalog model (``catalog.schema.model``) links to
    Catalog Explorer: ``/explore/data/models/<catalog>/<schema>/<model>/version/<v>``. None when no
    http(s) base is known.
    """
    base = settings.ui_base_url or (settings.databricks_host if registry == "databricks" else None)
    if base and registry == "databricks" and "://" not in base:
        base = "https://" + base  # DATABRICKS_HOST may be given without its scheme
    if not base or not base.startswith(("http://", "https://")):
        return None
    if registry == "databricks" and settings.unity_catalog and model.count(".") == 2:
        # Unity Catalog models live in Catalog Explorer, not in the workspace registry's pages.
        catalog, schema, name = (quote(part, safe="") for part in model.split("."))
        return (f"{base.rstrip('/')}/explore/data/models/{catalog}/{schema}/{name}/version/"
                f"{quote(str(version), safe='')}")
    route = "#mlflow/models" if registry == "databricks" else "#/models"
    return f"{base.rstrip('/')}/{route}/{quote(model, safe='')}/versions/{quote(str(version), safe='')}"
