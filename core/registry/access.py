"""Model registry access: a client with bounded waits, version resolution, model URIs.

Everything goes through :class:`mlflow.MlflowClient`, so the same code serves open-source MLflow
and Databricks workspaces (``databricks://profile`` tracking URIs). MLflow failures are turned
into the core's errors by :func:`core.registry.error_mapping.translate`.
"""

from __future__ import annotations

import os
import re
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from mlflow import MlflowClient
from mlflow.entities.model_registry import ModelVersion
from mlflow.exceptions import MlflowException

from core.errors import CheckError, NotFoundError
from core.registry.error_mapping import translate
from core.registry.stages import canonical_stage

# MLflow's own defaults wait up to 120 s per request and retry 7 times with exponential backoff:
# minutes before an unreachable server is reported. These bound one call to roughly 30 s in the
# worst case. Values the user already set in the environment win.
HTTP_DEFAULTS = {
    "MLFLOW_HTTP_REQUEST_TIMEOUT": "10",
    "MLFLOW_HTTP_REQUEST_MAX_RETRIES": "2",
    "MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR": "1",
    "MLFLOW_HTTP_REQUEST_BACKOFF_JITTER": "0.5",
}
def apply_http_defaults(env: dict[str, str] | os._Environ[str] = os.environ) -> None:
    """Bound MLflow's HTTP waits (see :data:`HTTP_DEFAULTS`) unless already configured."""
    for key, value in HTTP_DEFAULTS.items():
        env.setdefault(key, value)


NO_TRACKING_SERVER = ("no tracking server given: pass --tracking-uri (or set MLFLOW_TRACKING_URI), "
                      "or a 'host:' for each side of the config file")


def registry_uri_for(tracking_uri: str, registry_uri: str | None = None) -> str:
    """The registry to read for ``tracking_uri``: ``registry_uri`` if given, else what MLflow derives
    from the tracking URI alone (itself; ``databricks-uc`` for a Databricks workspace).

    The process environment (``MLFLOW_REGISTRY_URI``, ``mlflow.set_registry_uri``) is never
    consulted: with two servers in one process it would make both sides read the same registry.
    """
    if registry_uri:
        return registry_uri
    from mlflow.tracking._model_registry.utils import _get_default_registry_uri_for_tracking_uri

    return _get_default_registry_uri_for_tracking_uri(tracking_uri) or tracking_uri


def make_client(tracking_uri: str | None = None, registry_uri: str | None = None) -> MlflowClient:
    """An :class:`MlflowClient` for exactly these servers, whose HTTP calls give up after a bounded time.

    The registry is :func:`registry_uri_for` (never taken from the environment). Without a
    tracking URI this raises :class:`CheckError` instead of letting MLflow fall back to a local
    ``mlflow.db`` it would create in the working folder.
    """
    if not tracking_uri:
        raise CheckError(NO_TRACKING_SERVER)
    apply_http_defaults()
    return MlflowClient(tracking_uri=tracking_uri, registry_uri=registry_uri_for(tracking_uri, registry_uri))


def _get_registered_model(client: MlflowClient, model: str) -> Any:
    try:
        return client.get_registered_model(model)
    except MlflowException as exc:
        if exc.error_code == "RESOURCE_DOES_NOT_EXIST":
            raise NotFoundError(f"registered model '{model}' not found") from exc
        raise translate(exc, f"reading registered model '{model}'") from exc
    except Exception as exc:
        raise translate(exc, f"reading registered model '{model}'") from exc


def _search_versions(client: MlflowClient, model: str) -> list[ModelVersion]:
    quote = '"' if "'" in model else "'"
    flt = f"name={quote}{model}{quote}"
    out: list[ModelVersion] = []
    token = None
    while True:
        page = client.search_model_versions(flt, max_results=1000, page_token=token)
        out.extend(page)
        token = getattr(page, "token", None)
        if not token:
            return out


def latest_in_stage(client: MlflowClient, model: str, stage: str) -> ModelVersion:
    """The highest-numbered version of ``model`` in ``stage`` (any case), via ``search_model_versions``.

    Open-source MLflow cannot filter versions by stage on the server, so versions are filtered
    and ordered here (``get_latest_versions`` is deprecated).
    """
    canonical = canonical_stage(stage) or stage
    try:
        versions = _search_versions(client, model)
    except Exception as exc:
        raise translate(exc, f"listing versions of model '{model}'") from exc
    in_stage = [v for v in versions if (v.current_stage or "None").lower() == canonical.lower()]
    if not in_stage:
        _get_registered_model(client, model)  # an unknown model is named as such, not as an empty stage
        raise NotFoundError(f"model '{model}' has no version in stage '{canonical}'")
    return max(in_stage, key=lambda v: int(v.version))


def resolve_version(client: MlflowClient, model: str, version_or_stage: str | int | None) -> ModelVersion:
    """Resolve ``version_or_stage`` of registered model ``model`` to a model version.

    Digits are a version number; ``@name`` is an alias; ``None``, ``Staging``, ``Production`` or
    ``Archived`` (any case, or Python ``None``) is the latest version in that stage; any other
    word is an alias. Unknown model, version or alias and an empty stage raise
    :class:`NotFoundError`; an unreachable server raises :class:`TransientError`.

    One REST call when the version exists; the registered model is only read when it does not,
    to tell an unknown model from an unknown version or alias (and to list the known aliases).
    """
    spec = "None" if version_or_stage is None else str(version_or_stage).strip()
    if not spec:
        raise CheckError("no version or stage given")
    what = f"reading model '{model}' version {spec}"
    try:
        if spec.isdigit():
            try:
                return client.get_model_version(model, str(int(spec)))
            except MlflowException as exc:
                if exc.error_code == "RESOURCE_DOES_NOT_EXIST":
                    _get_registered_model(client, model)
                    raise NotFoundError(f"model '{model}' has no version {int(spec)}") from exc
                raise
        if not spec.startswith("@") and canonical_stage(spec) is not None:
            return latest_in_stage(client, model, spec)
        alias = spec[1:] if spec.startswith("@") else spec
        if not alias:
            raise CheckError("empty alias: '@' must be followed by an alias name")
        try:
            return client.get_model_version_by_alias(model, alias)
        except MlflowException as exc:
            if exc.error_code not in ("RESOURCE_DOES_NOT_EXIST", "INVALID_PARAMETER_VALUE"):
                raise
            registered = _get_registered_model(client, model)
            known = getattr(registered, "aliases", None)
            if isinstance(known, dict) and alias not in known:
                names = ", ".join(sorted(known)) or "none"
                raise NotFoundError(f"model '{model}' has no alias '{alias}' (its aliases: {names})") from exc
            if "alias" in str(exc).lower():
                raise NotFoundError(f"model '{model}' has no alias '{alias}'") from exc
            raise
    except CheckError:
        raise
    except Exception as exc:
        raise translate(exc, what) from exc


_LOGGED_MODEL = re.compile(r"^models:/(m-[0-9a-f]+)/?(.*)$")


def run_model_uri(client: MlflowClient, mv: ModelVersion) -> str:
    """Where the run's model lives: ``version.source``, with indirections resolved where possible.

    MLflow 3 sources are usually ``models:/m-<id>`` (a logged model); that becomes the logged
    model's ``artifact_location`` so a local one can be compared in place. ``runs:/<id>/path``
    becomes the run's artifact URI plus the path.
    """
    source = mv.source or ""
    try:
        m = _LOGGED_MODEL.match(source)
        if m:
            location = client.get_logged_model(m.group(1)).artifact_location
            return location.rstrip("/") + ("/" + m.group(2) if m.group(2) else "")
        if source.startswith("runs:/"):
            run_id, _, path = source[len("runs:/"):].partition("/")
            base = client.get_run(run_id).info.artifact_uri
            return base.rstrip("/") + ("/" + path if path else "")
    except Exception as exc:
        raise translate(exc, f"resolving the run model {source} of model '{mv.name}' version {mv.version}") \
            from exc
    if not source:
        raise CheckError(f"model '{mv.name}' version {mv.version} has no source")
    return source


def registry_model_uri(client: MlflowClient, mv: ModelVersion) -> str:
    """Where the registry serves the version from: ``get_model_version_download_uri``.

    A Databricks registry (workspace or Unity Catalog) serves its copy only through its own API
    (signed URLs, temporary credentials): there the answer is ``models:/<name>/<version>``, read
    by :mod:`core.remote.databricks_store` as MLflow reads it.
    """
    return _download_uri(client, mv.name, str(mv.version))


def is_databricks_registry_client(client: MlflowClient) -> bool:
    """True when ``client`` reads a Databricks registry (``databricks``/``databricks-uc``, any profile)."""
    from mlflow.utils.uri import is_databricks_unity_catalog_uri, is_databricks_uri

    uri = getattr(client, "_registry_uri", None)
    return bool(uri) and (is_databricks_uri(uri) or is_databricks_unity_catalog_uri(uri))


def _download_uri(client: MlflowClient, name: str, version: str, prompt_checked: bool = False) -> str:
    if is_databricks_registry_client(client):
        return f"models:/{name}/{version}"
    try:
        # MlflowClient.get_model_version_download_uri first reads the registered model again, only to
        # refuse prompts. When the version is read by get_model_version or get_model_version_by_alias
        # (which refuse prompts themselves) that read is redundant: ask the registry client directly
        # and save a round trip.
        registry = getattr(client, "_get_registry_client", None) if prompt_checked else None
        if registry is not None:
            return registry().get_model_version_download_uri(name, version)
        return client.get_model_version_download_uri(name, version)
    except Exception as exc:
        raise translate(exc, f"reading the download URI of model '{name}' version {version}") from exc


def locations_of(client: MlflowClient, mv: ModelVersion) -> tuple[str, str]:
    """:func:`run_model_uri` and :func:`registry_model_uri` of a version read by number or alias.

    The two calls run concurrently; the version itself is not read again.
    """
    pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="guard-meta")
    try:
        reg = pool.submit(_download_uri, client, mv.name, str(mv.version), True)
        return run_model_uri(client, mv), reg.result()
    finally:
        pool.shutdown(wait=False, cancel_futures=True)


def resolve_locations(client: MlflowClient, model: str,
                      version_or_stage: str | int | None) -> tuple[ModelVersion, str, str]:
    """:func:`resolve_version`, :func:`run_model_uri` and :func:`registry_model_uri` in one go.

    Calls that do not depend on each other run concurrently: for a version number the download
    URI is asked for while the version itself is read, otherwise it is asked for while the run
    model is being resolved. Errors are those of the three functions, the version's first.
    """
    spec = "None" if version_or_stage is None else str(version_or_stage).strip()
    # Versions read by number or alias were already refused if they are prompts (see _download_uri).
    by_stage = not spec.startswith("@") and canonical_stage(spec) is not None
    pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="guard-meta")
    try:
        early = pool.submit(_download_uri, client, model, str(int(spec)), True) if spec.isdigit() else None
        mv = resolve_version(client, model, version_or_stage)
        reg = early if early is not None else pool.submit(_download_uri, client, mv.name, str(mv.version),
                                                          not by_stage)
        run_uri = run_model_uri(client, mv)
        return mv, run_uri, reg.result()
    finally:
        pool.shutdown(wait=False, cancel_futures=True)


def _shorten(text: str, limit: int) -> str:
    return text if len(text) <= limit else f"{text[:limit]}… ({len(text)} chars)"


def _is_repeated(value: Any) -> bool:
    # upb's RepeatedScalarContainer has no __iter__ (it iterates by __getitem__) and is no Sequence.
    return (not isinstance(value, (str, bytes, dict)) and hasattr(value, "__len__")
            and hasattr(value, "__getitem__"))


def version_summary(mv: ModelVersion, max_tag_chars: int = 1000) -> dict[str, Any]:
    """The version's fields as the original tool reported them (``_name``, ``_version``, …).

    Long tag values (a stored report or seal) are shortened: the report is not the place for them.
    """
    out: dict[str, Any] = {}
    for key, value in vars(mv).items():
        if key == "_tags" and isinstance(value, dict):
            value = {k: _shorten(str(v), max_tag_chars) for k, v in value.items()}
        if value is None or isinstance(value, (str, int, float, bool)):
            out[key] = value
        elif isinstance(value, (list, tuple)) or _is_repeated(value):
            # Read over REST, aliases are a protobuf repeated field, not a list: report a real list.
            out[key] = [v if isinstance(v, (str, int, float, bool)) else str(v) for v in value]
        elif isinstance(value, dict):
            out[key] = {str(k): (v if isinstance(v, (str, int, float, bool)) or v is None else str(v))
                        for k, v in value.items()}
        else:
            out[key] = str(value)
    return out
