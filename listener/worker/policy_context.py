"""What the core needs to apply GUARD_POLICY to one validation request."""

from __future__ import annotations

from typing import Any

from listener.config import Settings
from listener.protocol.request import ValidationRequest
from listener.store import get_store
from listener.worker.alias_gate import REVERIFY_TRIGGER


def policy_arguments(request: ValidationRequest, settings: Settings) -> dict[str, Any]:
    """What the core needs to apply the policy to this request (nothing without a policy).

    The alias being set (an alias event: its section applies, and ``not_worse_than`` that alias compares
    with the version that held it before, from the alias history) or the target stage (Databricks). A
    re-verification of an alias's holder applies the alias's section; the alias is not being set then,
    so its holder is the version itself.
    """
    if settings.policy is None:
        return {}
    arguments: dict[str, Any] = {"policy": settings.policy, "stage": request.to_stage or None}
    if request.alias:
        arguments["alias"] = request.alias
    if request.alias and request.trigger != REVERIFY_TRIGGER:
        previous = get_store(settings.store_url).previous_holder(
            request.registry, request.model, request.alias, excluding=str(request.version))
        arguments.update(alias_event=True, previous_holder=previous.version if previous is not None else None)
    return arguments
