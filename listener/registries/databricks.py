"""Databricks workspace model registry: verdict as a comment, ``validation.*`` tags, and the gate.

Reading goes through ``MlflowClient`` on the configured tracking URI (``databricks`` or a workspace
URL), exactly like the open-source adapter. Writing goes through ``databricks-sdk``
``WorkspaceClient().model_registry``, built from the SDK's unified authentication (``DATABRICKS_HOST``,
``DATABRICKS_TOKEN``, a config profile, OAuth, ...), which this module never reads or logs itself.

Publishing one verdict:

1. the ``validation.*`` tags (seal first, status last), each value within the workspace tag limit;
2. one comment on the version, starting with :data:`COMMENT_MARKER` so our own comments are recognisable;
3. with ``GUARD_GATE_TRANSITIONS=true`` and a verdict from a transition request: approve (PASSED) or
   reject (FAILED / ERROR) the open request for that stage, with the same comment.

Models in Unity Catalog (``MLFLOW_REGISTRY_URI=databricks-uc``) have no comments, stages or transition
requests: there the verdict is written as the tags plus a marked section of the version's description,
through ``MlflowClient``, like the open-source registry.

A publish may be retried after a transient failure, on this host or another. Tags are idempotent; the
comment and the gate are not, so each finished step is recorded in the store (``GUARD_STORE``, shared by
the hosts) and skipped on the retry of the same validation.
"""

from __future__ import annotations

import dataclasses
import hashlib
import logging
import re
from typing import Any

from mlflow import MlflowClient

from core.errors import CheckError, NotFoundError, TransientError
from core.registry.error_mapping import translate
from core.registry.stages import canonical_stage
from core.seal.digest import Manifest
from core.status import PASSED
from listener.config import Settings
from listener.registries.base import MlflowClientAdapter, write_tags_and_description
from listener.store import Store, get_store
from listener.verdict import Verdict
from listener.verdict_tags import ordered_tags, render_tags
from listener.verdict_text import COMMENT_LIMIT, render_comment

log = logging.getLogger(__name__)

# First line of every comment this project writes; a COMMENT_CREATED delivery whose comment starts with
# it is our own.
COMMENT_MARKER = "[mlflow-version-guard]"
UC_TAG_LIMIT = 1000
# What the SDK makes of a gateway's error page (error code from the HTTP reason phrase).
_PROXY_CODES = frozenset({"BAD_GATEWAY", "SERVICE_UNAVAILABLE", "GATEWAY_TIMEOUT", "TOO_MANY_REQUESTS"})
_PROXY_TEXT = re.compile(r"\b(502|503|504)\b|bad gateway|gateway time-?out|service unavailable", re.I)


def render_databricks_comment(verdict: Verdict, limit: int = COMMENT_LIMIT) -> str:
    """The comment text: our marker line, then the verdict as the shared renderer writes it."""
    head = COMMENT_MARKER + "\n"
    return head + render_comment(verdict, limit=limit - len(head))


def sdk_error(exc: BaseException, what: str) -> CheckError:
    """Map a ``databricks-sdk`` (or network) exception to our error classes; the message has no secrets.

    Connection failures, timeouts, 429 and 5xx are transient (the task retries); 404 means the model
    version is gone; anything else (bad request, 401/403, misconfiguration) is permanent.
    """
    if isinstance(exc, CheckError):
        return exc
    import requests
    from databricks.sdk import errors as dbx

    text = (str(exc).strip().splitlines() or [type(exc).__name__])[0][:500]
    if isinstance(exc, (dbx.TooManyRequests, dbx.InternalError, dbx.TemporarilyUnavailable,
                        dbx.DeadlineExceeded, dbx.Cancelled)):
        return TransientError(f"{what}: Databricks unavailable or rate limiting: {text}")
    if isinstance(exc, dbx.NotFound):
        return NotFoundError(f"{what}: {text}")
    if type(exc) is dbx.DatabricksError:
        # An HTTP status the SDK has no class for: a proxy's 502 (often an HTML page, which the SDK
        # names after its reason phrase) is transient; otherwise judge by the text.
        code = str(getattr(exc, "error_code", "") or "").upper()
        if code in _PROXY_CODES or _PROXY_TEXT.search(text):
            return TransientError(f"{what}: Databricks or a proxy in front of it is unavailable: {text}")
        return translate(exc, what)
    if isinstance(exc, dbx.DatabricksError):
        return CheckError(f"{what}: {text}")
    if isinstance(exc, (requests.ConnectionError, requests.Timeout, ConnectionError, TimeoutError)):
        # TimeoutError is also what the SDK raises when its own retries of 429/503 ran out.
        return TransientError(f"{what}: cannot reach Databricks: {text}")
    return translate(exc, what)


class DatabricksAdapter(MlflowClientAdapter):
    """The Databricks workspace registry as the worker sees it (the shape of ``RegistryAdapter``)."""

    registry = "databricks"

    def __init__(self, settings: Settings, client: MlflowClient | None = None, workspace: Any = None,
                 unity_catalog: bool | None = None) -> None:
        super().__init__(settings, client)
        self._workspace = workspace
        if unity_catalog is None:
            unity_catalog = settings.unity_catalog
        self.unity_catalog = unity_catalog
        # Workspace registry: 5,000 bytes per tag value; Unity Catalog: 1,000 characters.
        self.tag_limit = (min(settings.databricks_tag_limit, UC_TAG_LIMIT) if unity_catalog
                          else settings.databricks_tag_limit)

    def _classify(self, exc: BaseException, what: str) -> CheckError:
        return sdk_error(exc, what)

    @property
    def store(self) -> Store:
        """The store the publish progress and own approvals are shared through."""
        return get_store(self.settings.store_url)

    # -- writing ---------------------------------------------------------------------------------
    @property
    def workspace(self) -> Any:
        """The SDK client, built on first use from unified authentication (environment / profile)."""
        if self._workspace is None:
            from databricks.sdk import WorkspaceClient
            from databricks.sdk.core import Config

            try:
                # Only timeouts are set here; host and credentials come from the SDK's own resolution.
                cfg = Config(retry_timeout_seconds=self.settings.databricks_retry_timeout_s,
                             http_timeout_seconds=self.settings.databricks_http_timeout_s,
                             product="mlflow-version-guard", product_version=_version())
                self._workspace = WorkspaceClient(config=cfg)
            except Exception as exc:  # noqa: BLE001 - e.g. no host/credentials configured
                raise CheckError(f"cannot configure the Databricks client: "
                                 f"{(str(exc).splitlines() or [''])[0][:300]}") from exc
        return self._workspace

    def render_tags(self, verdict: Verdict) -> dict[str, str]:
        """The ``validation.*`` tags with every value within the workspace tag limit (in UTF-8 bytes).

        A seal manifest too large for the limit keeps only its tree digest (it still proves the tree
        unchanged, without naming files); the report's difference lists are shortened.
        """
        limit = self.tag_limit
        while True:
            v = verdict
            if verdict.new_seal_json is not None and len(verdict.new_seal_json.encode()) >= limit:
                small = Manifest.from_json(verdict.new_seal_json).to_compact_json(limit=max(1, limit - 1))
                v = dataclasses.replace(verdict, new_seal_json=small)
            tags = render_tags(v, limit=limit)
            if all(len(val.encode()) <= self.tag_limit for val in tags.values()) or limit < 512:
                return tags
            limit //= 2  # non-ASCII text: characters under the limit, bytes over it

    def publish(self, verdict: Verdict, current: Any = None) -> None:
        """Tags, then one comment, then (gating on, transition request) approve or reject.

        ``current`` (the version as read for this job) is only needed in Unity Catalog, for the
        description.
        """
        if self.unity_catalog:
            self._publish_unity_catalog(verdict, current)
            return
        model, version = verdict.model, str(verdict.version)
        text = render_databricks_comment(verdict)
        progress = publish_key(verdict)
        done = self.store.publish_steps_done(progress) if progress else set()
        reg = self.workspace.model_registry
        what = f"publishing to {model} version {version}"
        try:
            tags = self.render_tags(verdict)
            for key in ordered_tags(tags):
                reg.set_model_version_tag(name=model, version=version, key=key, value=tags[key])
            if "comment" not in done:
                reg.create_comment(name=model, version=version, comment=text)
                self._step_done(progress, "comment")
            if "gate" not in done and self._should_gate(verdict):
                self._gate(verdict, text)
                self._step_done(progress, "gate")
        except CheckError:
            raise
        except Exception as exc:  # noqa: BLE001 - mapped to our error classes
            raise sdk_error(exc, what) from exc

    def _publish_unity_catalog(self, verdict: Verdict, current: Any) -> None:
        """Tags and the marked description section, like open-source MLflow (UC has no comments or stages)."""
        model, version = verdict.model, str(verdict.version)
        if verdict.gate and self.settings.gate_transitions:
            log.warning("%s version %s: Unity Catalog has no transition requests; nothing to gate", model,
                        version)
        try:
            write_tags_and_description(self.client, self.current(verdict, current), verdict,
                                       self.render_tags(verdict))
        except Exception as exc:  # noqa: BLE001 - mapped to our error classes
            raise self._classify(exc, f"publishing to {model} version {version}") from exc

    def _should_gate(self, verdict: Verdict) -> bool:
        return bool(self.settings.gate_transitions and verdict.gate and canonical_stage(verdict.to_stage))

    def _gate(self, verdict: Verdict, text: str) -> None:
        from databricks.sdk import errors as dbx

        model, version = verdict.model, str(verdict.version)
        stage = canonical_stage(verdict.to_stage)
        reg = self.workspace.model_registry
        try:
            if verdict.status == PASSED:
                self.store.record_own_approval(self.registry, model, version, stage)
                # Never archive other versions on the user's behalf: approving only moves this one.
                reg.approve_transition_request(name=model, version=version, stage=stage,
                                               archive_existing_versions=False, comment=text)
                log.info("approved the transition request of %s version %s to %s", model, version, stage)
            else:
                reg.reject_transition_request(name=model, version=version, stage=stage, comment=text)
                log.info("rejected the transition request of %s version %s to %s (%s)", model, version,
                         stage, verdict.status)
        except dbx.NotFound:
            # Someone approved, rejected or cancelled it meanwhile: the comment already says what we found.
            log.warning("no open transition request of %s version %s to %s any more; not gated", model,
                        version, stage)

    def _step_done(self, progress: str | None, step: str) -> None:
        if progress is not None:
            self.store.mark_publish_step(progress, step)


def publish_key(verdict: Verdict) -> str | None:
    """The name one validation's publish progress is kept under (None: a verdict with no delivery)."""
    if not verdict.delivery_key:
        return None
    return "databricks:" + hashlib.sha256(f"{verdict.delivery_key}|{verdict.checked_at}".encode()).hexdigest()


def _version() -> str:
    try:
        from importlib.metadata import version

        return version("mlflow-version-guard")
    except Exception:  # noqa: BLE001 - only used in the User-Agent
        return "0.0.0"
