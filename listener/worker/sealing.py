"""The worker's seal settings for one job: which store and keys, and whether this job may seal.

The seal step itself is in the core (:mod:`core.seal.step`), shared with ``check-model-version``.
"""

from __future__ import annotations

from typing import Any

from core.seal.step import SealOptions
from listener.config import Settings
from listener.protocol.events import BACKFILL_TRIGGER, FIRST_SIGHT_NOTE, SEAL_AND_CHECK
from listener.protocol.request import ValidationRequest

__all__ = ["BACKFILL_TRIGGER", "FIRST_SIGHT_NOTE", "may_seal", "seal_options", "workspace_host"]


def may_seal(request: ValidationRequest) -> bool:
    """A new version ("seal, then check"), or an alias set (a stage reached) on a version never sealed.

    Only a version with no seal at all is ever sealed (:func:`core.seal.signed.verify_or_seal`), and
    only when its run and registry models compare equal.
    """
    return request.action == SEAL_AND_CHECK or bool(request.alias) or bool(request.to_stage)


def workspace_host(settings: Settings, adapter: Any = None) -> str | None:
    """The Databricks workspace a seal's identity names: ``DATABRICKS_HOST``, else the SDK's resolved host."""
    if settings.registry_kind != "databricks":
        return None
    if settings.databricks_host:
        return settings.databricks_host
    # Host from a profile (unified authentication): the adapter's SDK client has resolved it.
    workspace = getattr(adapter, "workspace", None)
    return getattr(getattr(workspace, "config", None), "host", None)


def seal_options(settings: Settings, request: ValidationRequest, adapter: Any = None) -> SealOptions:
    """The :class:`~core.seal.step.SealOptions` of ``request``'s check, from the settings.

    Opening the store can raise ``TransientError`` / ``CheckError`` (an unmounted or read-only folder).
    """
    return SealOptions(store=settings.open_seal_store(), trusted=list(settings.trusted_keys),
                       key=settings.signing_key, may_seal=may_seal(request),
                       workspace_host=workspace_host(settings, adapter),
                       note=FIRST_SIGHT_NOTE if request.trigger == BACKFILL_TRIGGER else None)
