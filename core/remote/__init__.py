"""Remote model trees, read at network speed: listed flat or concurrently, streamed and hashed.

:func:`open_source` picks the reader for a URI's store kind:

- ``mlflow-artifacts:/…`` and ``http(s)://…/mlflow-artifacts/artifacts/…``: the tracking server's
  artifact API (:mod:`.http_store`), 8 concurrent transfers by default;
- ``models:/<name>/<version>`` of a Databricks registry: the workspace registry's signed URLs or
  Unity Catalog's temporary credentials, as MLflow reads them (:mod:`.databricks_store`);
- ``s3://…``: boto3 (:mod:`.s3_store`), 16 by default;
- anything else (``dbfs:/``, ``gs://``, ``wasbs://``, ``runs:/``, …): MLflow's own artifact
  repository, one file at a time (:mod:`.mlflow_repo_store`), 4 by default.

:func:`core.remote.hashing.read_remote_trees` then reads the trees of one check with one shared
pool of transfers.
"""

from __future__ import annotations

from pathlib import Path

from core.remote.source import ScratchMeter, Source


def open_source(uri: str, *, tracking_uri: str | None = None, registry_uri: str | None = None,
                scratch_root: Path | str | None = None, meter: ScratchMeter | None = None,
                concurrency: int | None = None) -> Source:
    """The :class:`core.remote.source.Source` that reads the tree at ``uri`` (a remote URI)."""
    scheme = uri.split(":", 1)[0].lower()
    if scheme == "mlflow-artifacts" or (scheme in ("http", "https") and "/mlflow-artifacts/artifacts" in uri):
        from core.remote.http_store import HttpArtifactSource

        return HttpArtifactSource(uri, tracking_uri)
    if scheme == "models":
        from core.remote import databricks_store as dbx

        if dbx.is_workspace_registry(registry_uri):
            return dbx.WorkspaceRegistrySource(uri, registry_uri)
        if dbx.is_unity_catalog(registry_uri):
            return dbx.unity_catalog_source(uri, registry_uri, tracking_uri=tracking_uri,
                                            scratch_root=scratch_root, meter=meter, concurrency=concurrency)
    if scheme == "s3" and _has("boto3"):
        from core.remote.s3_store import S3Source

        return S3Source(uri, concurrency=concurrency)
    from core.remote.mlflow_repo_store import MlflowRepositorySource

    return MlflowRepositorySource(uri, tracking_uri=tracking_uri, registry_uri=registry_uri,
                                  scratch_root=scratch_root, meter=meter)


def _has(module: str) -> bool:
    import importlib.util

    return importlib.util.find_spec(module) is not None
