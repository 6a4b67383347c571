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


def _fmt(x: float) -> str:
    return f"{x:.6g}"


def check_metrics(cfg: dict[str, Any], client: MlflowClient, mv: ModelVersion,
                  event: AliasContext | None = None) -> CheckOutcome:
    """Each configured metric of the version's source run (see the module docstring)."""
    event = event or AliasContext()
    cache: dict[str, dict[str, float]] = {}
    mine = _run_metrics(client, mv, cache)
    if not getattr(mv, "run_id", None):
        return CheckOutcome("metrics", FAIL, f"version {mv.version} has no source run to read metrics from")
    results: list[tuple[str, str]] = []
    for name, rule in sorted(cfg.items()):
        rule = rule or {}
        if name not in mine:
            results.append((FAIL, f"the run has no metric {name}"))
            continue
        value = mine[name]
        if rule.get("min") is not None and value < rule["min"]:
            results.append((FAIL, f"{name} = {_fmt(value)} below min {_fmt(rule['min'])}"))
            continue
        if rule.get("max") is not None and value > rule["max"]:
            results.append((FAIL, f"{name} = {_fmt(value)} above max {_fmt(rule['max'])}"))
            continue
        ref = rule.get("not_worse_than")
        if not ref:
            results.append((PASS, f"{name} = {_fmt(value)} within bounds"))
            continue
        alias = ref.lstrip("@")
        holder = _holder(client, mv.name, alias, event)
        if holder is None:
            results.append((PASS, f"{name} = {_fmt(value)}; no version holds @{alias}, nothing to compare"))
            continue
        if holder == str(mv.version):
            results.append((PASS, f"{name} = {_fmt(value)}; version {holder} holds @{alias} itself"))
            continue
        theirs = _run_metrics(client, client.get_model_version(mv.name, holder), cache).get(name)
        if theirs is None:
            results.append((WARN, f"{name} = {_fmt(value)}; @{alias} (version {holder}) has no {name}"))
            continue
        better = rule.get("greater_is_better", True)
        worse = value < theirs if better else value > theirs
        verdict = "worse than" if worse else "not worse than"
        results.append((FAIL if worse else PASS, f"{name} = {_fmt(value)} {verdict} @{alias} "
                                                 f"(version {holder}: {_fmt(theirs)})"))
    status = worst([s for s, _ in results])
    shown = [r for s, r in results if s == status] or [r for _, r in results]
    return CheckOutcome("metrics", status, "; ".join(shown[:3]) or "no metrics configured")
