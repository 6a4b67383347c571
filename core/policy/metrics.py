"""The ``metrics`` check: the source run's metrics against ``min`` / ``max`` and against an alias's holder.

``not_worse_than: "@champion"`` compares with the version holding ``champion``: when the event being
checked is that very alias being set, the holder *before* the event (the caller knows it from its
alias history; none is none); otherwise the holder now, read from the registry. With no holder the
metric passes, and says so.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from mlflow import MlflowClient
from mlflow.entities.model_registry import ModelVersion

from core.policy.model import FAIL, PASS, WARN, CheckOutcome, worst


@dataclass(frozen=True)
class AliasContext:
    """The alias whose setting is being checked (None: not an alias event) and who held it before."""

    alias: str | None = None
    previous_holder: str | None = None


def _run_metrics(client: MlflowClient, mv: ModelVersion,
                 cache: dict[str, dict[str, float]]) -> dict[str, float]:
    run_id = getattr(mv, "run_id", None)
    if not run_id:
        return {}
    if run_id not in cache:
        cache[run_id] = dict(client.get_run(run_id).data.metrics)
    return cache[run_id]


def _holder(client: MlflowClient, model: str, alias: str, event: AliasContext) -> str | None:
    if event.alias is not None and event.alias.lstrip("@") == alias:
        return event.previous_holder
    from mlflow.exceptions import MlflowException

    try:
        return str(client.get_model_version_by_alias(model, alias).version)
    except MlflowException as exc:
        if getattr(exc, "error_code", "") in _NO_SUCH_ALIAS:
            return None
        raise


_NO_SUCH_ALIAS = ("RESOURCE_DOES_NOT_EXIST", "INVALID_PARAMETER_VALUE", "NOT_FOUND")


def _version(client: MlflowClient, model: str, version: str) -> ModelVersion | None:
    from mlflow.exceptions import MlflowException

    try:
        return client.get_model_version(model, version)
    except MlflowException as exc:
        if getattr(exc, "error_code", "") == "RESOURCE_DOES_NOT_EXIST":
            return None
        raise


def _fmt(x: float) -> str:
    return f"{x:.6g}"


def _judge(name: str, rule: dict[str, Any], mine: dict[str, float], client: MlflowClient, mv: ModelVersion,
           event: AliasContext, cache: dict[str, dict[str, float]]) -> tuple[str, str]:
    """One metric's status and reason."""
    if name not in mine:
        return FAIL, f"the run has no metric {name}"
    value = mine[name]
    if rule.get("min") is not None and value < rule["min"]:
        return FAIL, f"{name} = {_fmt(value)} below min {_fmt(rule['min'])}"
    if rule.get("max") is not None and value > rule["max"]:
        return FAIL, f"{name} = {_fmt(value)} above max {_fmt(rule['max'])}"
    ref = rule.get("not_worse_than")
    if not ref:
        return PASS, f"{name} = {_fmt(value)} within bounds"
    alias = ref.lstrip("@")
    holder = _holder(client, mv.name, alias, event)
    if holder is None:
        return PASS, f"{name} = {_fmt(value)}; no version holds @{alias}, nothing to compare"
    if holder == str(mv.version):
        return PASS, f"{name} = {_fmt(value)}; version {holder} holds @{alias} itself"
    held = _version(client, mv.name, holder)
    if held is None:
        return WARN, f"{name} = {_fmt(value)}; version {holder}, which held @{alias}, no longer exists"
    theirs = _run_metrics(client, held, cache).get(name)
    if theirs is None:
        return WARN, f"{name} = {_fmt(value)}; @{alias} (version {holder}) has no {name}"
    worse = value < theirs if rule.get("greater_is_better", True) else value > theirs
    verdict = "worse than" if worse else "not worse than"
    reason = f"{name} = {_fmt(value)} {verdict} @{alias} (version {holder}: {_fmt(theirs)})"
    return (FAIL if worse else PASS), reason


def check_metrics(cfg: dict[str, Any], client: MlflowClient, mv: ModelVersion,
                  event: AliasContext | None = None) -> CheckOutcome:
    """Each configured metric of the version's source run (see the module docstring)."""
    if not getattr(mv, "run_id", None):
        return CheckOutcome("metrics", FAIL, f"version {mv.version} has no source run to read metrics from")
    cache: dict[str, dict[str, float]] = {}
    mine = _run_metrics(client, mv, cache)
    results = [_judge(name, rule or {}, mine, client, mv, event or AliasContext(), cache)
               for name, rule in sorted(cfg.items())]
    status = worst([s for s, _ in results])
    shown = [r for s, r in results if s == status] or [r for _, r in results]
    return CheckOutcome("metrics", status, "; ".join(shown[:3]) or "no metrics configured")
