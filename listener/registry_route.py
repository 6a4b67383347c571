"""Which registry a listener or job serves, and whether its MLflow URIs agree with it.

A Databricks workspace has two registries: the workspace model registry (``databricks``) and Unity
Catalog (``databricks-uc``). With ``MLFLOW_TRACKING_URI=databricks`` and no ``MLFLOW_REGISTRY_URI``
MLflow 3 reads Unity Catalog, while workspace-registry webhooks name workspace models: every check
would then fail to find its version. So on Databricks the registry must be named explicitly, and
the tracking URI must be the same workspace kind.
"""

from __future__ import annotations

REGISTRY_CHOICES = ("MLFLOW_REGISTRY_URI=databricks (workspace model registry) "
                    "or databricks-uc (Unity Catalog)")


def is_databricks_uri(uri: str | None) -> bool:
    """True for ``databricks``, ``databricks-uc`` and their ``://profile`` forms."""
    return bool(uri) and uri.split(":", 1)[0].lower() in ("databricks", "databricks-uc")


def is_unity_catalog_uri(uri: str | None) -> bool:
    """True for ``databricks-uc`` and ``databricks-uc://profile``."""
    return bool(uri) and uri.split(":", 1)[0].lower() == "databricks-uc"


def route_problem(tracking_uri: str | None, registry_uri: str | None) -> str | None:
    """Why these URIs cannot serve one registry (a message naming the variables), or None."""
    on_dbx_tracking, on_dbx_registry = is_databricks_uri(tracking_uri), is_databricks_uri(registry_uri)
    if on_dbx_tracking and not registry_uri:
        return (f"MLFLOW_TRACKING_URI={tracking_uri} needs MLFLOW_REGISTRY_URI: without it MLflow reads "
                f"Unity Catalog, not the workspace model registry. Set {REGISTRY_CHOICES}")
    if on_dbx_tracking and not on_dbx_registry:
        return (f"MLFLOW_TRACKING_URI={tracking_uri} is a Databricks workspace but MLFLOW_REGISTRY_URI is "
                f"not: set {REGISTRY_CHOICES}")
    if on_dbx_registry and not on_dbx_tracking:
        return (f"MLFLOW_REGISTRY_URI={registry_uri} is a Databricks registry but MLFLOW_TRACKING_URI "
                f"({tracking_uri or 'not set'}) is not a workspace: set MLFLOW_TRACKING_URI=databricks "
                "(or databricks://<profile>)")
    return None
