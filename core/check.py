"""Check one model version: its run model against its registry model, and against its seal.

This is the function the CLI ``check-model-version`` and the listener's worker call. It returns a
:class:`CheckResult` that is PASSED or FAILED; when the check cannot be carried out it raises a
:class:`~core.errors.CheckError` (:class:`~core.errors.TransientError` when retrying later may help),
and the caller, the CLI or the worker's job, turns that into its ERROR outcome.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from mlflow import MlflowClient
from mlflow.entities.model_registry import ModelVersion

from core.check_result import CheckResult
from core.compare.exclude import validate_patterns, without_excluded
from core.compare.fetch import FetchRequest, read_trees
from core.compare.tree import comparison_from_scans
from core.errors import CheckError, redact
from core.policy.evaluate import POLICY_FAIL, AliasContext, Policy, local_model_of, prepare
from core.registry.access import (
    locations_of,
    make_client,
    registry_uri_for,
    resolve_locations,
    version_summary,
)
from core.registry.error_mapping import raised_as_check_errors
from core.registry.reach import check_reachable
from core.report import close_report, human_bytes, system_info
from core.seal.digest import verify_manifest
from core.seal.manifest import Difference, Manifest
from core.seal.step import SealOptions, SealStep, run_seal_step, seal_identity
from core.status import ERROR, EXIT_CODES, FAILED, PASSED
from core.tags import TAG_MANIFEST

LABELS = ("run", "registry")
SEAL_LABELS = ("sealed", "current")


def seal_from_tags(tags: dict[str, str] | None) -> Manifest | None:
    """The seal stored in a version's ``validation.manifest`` tag, or None when there is none.

    A tag that is present but not a valid manifest is an error, not "no seal": it may have been
    tampered with, and silently skipping it would pass a version that should not pass.
    """
    text = (tags or {}).get(TAG_MANIFEST)
    if not text:
        return None
    try:
        return Manifest.from_json(text)
    except (ValueError, KeyError, TypeError, IndexError) as exc:
        raise CheckError(f"the version's {TAG_MANIFEST} tag is not a valid manifest: {exc}") from exc


def _first(diffs: list[Difference]) -> str:
    return f"{diffs[0].kind} {diffs[0].path}" if diffs else ""


def _apply_seal_step(result: CheckResult, step: SealStep, options: SealOptions, legacy: Manifest | None,
                     current: Manifest, run_equals_registry: bool) -> None:
    """What the verdict records of a signed-seal step: the digest it stands on, the seal made now."""
    outcome = step.outcome
    result.seal_outcome, result.seal_record = outcome, step.record
    result.seal_checked = outcome.kind != "unsealed"
    # Only an unsealed version checked without a signing key gets today's unsigned seal (the tag).
    unsigned_now = (outcome.kind == "unsealed" and options.key is None and options.may_seal
                    and run_equals_registry and not options.unsealed_fails)
    result.new_seal = current if unsigned_now else None
    if outcome.attestation is not None:
        result.seal_digest = outcome.attestation.tree_digest
    elif legacy is not None:
        result.seal_digest = legacy.tree_digest
    else:
        result.seal_digest = current.tree_digest if unsigned_now else None


def _side(uri: str, resolved: str, fetched: Any, scan_manifest: Manifest) -> dict[str, Any]:
    return {"download_uri": redact(uri), "resolved_uri": redact(resolved),
            "downloaded": fetched.downloaded,
            "local_path": {"path": str(fetched.path), "hash": scan_manifest.tree_digest},
            "transfer": fetched.scan.transfer,
            "file_count": scan_manifest.file_count, "total_bytes": scan_manifest.total_bytes,
            "ignored": list(scan_manifest.ignored)}


def check_model_version(model: str, version_or_stage: str | int | None, *, tracking_uri: str | None = None,
                        registry_uri: str | None = None, download_dir: Path | str | None = None,
                        keep_downloads: bool = False, seal: Manifest | None = None,
                        client: MlflowClient | None = None, seal_from_tag: bool = False,
                        report_file: str | None = None, model_version: ModelVersion | None = None,
                        exclude: Sequence[str] = (), transfer_concurrency: int | None = None,
                        progress: Any = None, signed_seal: SealOptions | None = None,
                        report: dict[str, Any] | None = None, policy: Policy | None = None,
                        alias: str | None = None, stage: str | None = None,
                        previous_holder: str | None = None, alias_event: bool = False) -> CheckResult:
    """Check that a model version's run model and registry model are identical, and match its seal.

    ``version_or_stage`` is resolved by :func:`core.registry.access.resolve_version`. Both models are
    read concurrently (local ones in place, remote ones streamed and hashed without a copy, or
    also written into a fresh folder under ``download_dir`` with ``keep_downloads``) and compared
    file by file.
    With ``seal`` given, or ``seal_from_tag`` and the version carrying a ``validation.manifest``
    tag, the registry model is also verified against that seal. ``report_file`` is only recorded
    in the report's ``Options``; writing it is the caller's business. ``model_version``: the version
    already read by the caller (with ``client``), so it is not read again. Paths matching an
    ``exclude`` glob (:mod:`core.compare.exclude`) are left out of both models and of the seal, and listed
    in the report's ``Comparison.excluded``. Remote models are streamed with
    ``transfer_concurrency`` transfers (default per store kind) and report to ``progress``
    (a :class:`core.remote.progress.TransferProgress`). With ``signed_seal`` (:mod:`core.seal.step`), the
    seal is the version's signed seal in the seal store (an unsigned ``validation.manifest`` tag only
    for a version sealed before), ``seal``/``seal_from_tag`` are ignored, and the seal's outcome is
    part of the verdict: FAILED if it is; a seal that cannot be read raises. With ``policy``
    (:mod:`core.policy`), its sections for ``model``, ``alias`` (the alias being set or asked for)
    and ``stage`` are checked in the same read of the registry model: a FAIL makes the verdict
    FAILED, a WARN keeps it; the result is ``CheckResult.policy`` and the report's ``policy``. With
    ``alias_event`` the check is of ``alias`` being set, and ``previous_holder`` (None: none) is the
    version that held it before, which ``not_worse_than`` compares with.

    Raises :class:`~core.errors.CheckError` (``TransientError`` when retrying may help) when the check
    cannot be carried out. ``report``: a dict of the caller's to fill in as the check goes (the
    result's ``report``), so what was learned before a failure is still there to write out.
    """
    started = time.perf_counter()
    spec = "" if version_or_stage is None else str(version_or_stage)
    report = {} if report is None else report
    report.update({
        "System": system_info("check-model-version"),
        "Options": {"model_name": model, "version_or_stage": spec, "tracking_uri": redact(tracking_uri),
                    "registry_uri": redact(registry_uri),
                    "download_dir": str(download_dir) if download_dir is not None else None,
                    "report_file": report_file, "keep_downloads": keep_downloads,
                    "seal": "given" if seal is not None else ("from tag" if seal_from_tag else None),
                    "exclude": list(exclude)},
    })
    policy_run, policy_result = None, None
    if policy is not None:
        report["Options"]["policy"] = policy.source
        report["policy"] = None
    with raised_as_check_errors(f"checking model '{model}' version {spec}"):
        try:
            exclude = validate_patterns(exclude)
        except ValueError as exc:
            raise CheckError(str(exc)) from exc
        if client is None:
            check_reachable(tracking_uri)
            client = make_client(tracking_uri, registry_uri)
        if model_version is not None:
            mv = model_version
            run_uri, reg_uri = locations_of(client, mv)
        else:
            mv, run_uri, reg_uri = resolve_locations(client, model, version_or_stage)
        version = str(mv.version)
        report["Version"] = {**version_summary(mv), "download_uri": redact(reg_uri)}
        seal_source = "argument" if seal is not None else None
        identity = None
        if signed_seal is not None:
            identity = seal_identity(registry_uri, tracking_uri, model, version,
                                     workspace_host=signed_seal.workspace_host)
            seal, seal_source = seal_from_tags(mv.tags), "seal store"
        elif seal is None and seal_from_tag:
            seal = seal_from_tags(mv.tags)
            seal_source = f"tag {TAG_MANIFEST}" if seal is not None else None

        # A models:/ URI must be resolved against this client's registry, never the process-wide one.
        reg_for_fetch = getattr(client, "_registry_uri", None) or registry_uri_for(tracking_uri, registry_uri)
        if policy is not None:
            policy_run = prepare(policy.effective(model, alias, stage))
        requests = [FetchRequest(run_uri, tracking_uri, reg_for_fetch, "run model"),
                    FetchRequest(reg_uri, tracking_uri, reg_for_fetch, "registry model",
                                 observe=policy_run.observe if policy_run is not None else None)]
        with read_trees(requests, download_dir, keep_downloads, concurrency=transfer_concurrency,
                        progress=progress, exclude=exclude) as (run_f, reg_f):
            cmp_started = time.perf_counter()
            run_scan, reg_scan = run_f.scan, reg_f.scan
            comparison = comparison_from_scans(run_scan, reg_scan, LABELS, time.perf_counter() - cmp_started)
            current = reg_scan.manifest
            if seal is not None and exclude:
                try:
                    seal = without_excluded(seal, exclude)
                except ValueError as exc:
                    raise CheckError(f"cannot apply --exclude to the seal: {exc}") from exc
            step: SealStep | None = None
            if signed_seal is not None:
                step = run_seal_step(signed_seal, identity, current, mv, legacy_seal=seal,
                                     run_equals_registry=comparison.equal)
                seal_diffs = step.outcome.differences
            else:
                seal_diffs = verify_manifest(current, seal, SEAL_LABELS) if seal is not None else []
            report["Comparison"] = {
                # The verdict, as the original tool's users read it (set at the end, with the final
                # status); the run-vs-registry part alone is run_vs_registry_equals.
                "equals": None,
                "run_vs_registry_equals": comparison.equal,
                "run_model": _side(mv.source, run_uri, run_f, comparison.left),
                "reg_model": _side(reg_uri, reg_uri, reg_f, comparison.right),
                "same_location": comparison.same_location,
                "differences": [d.to_dict() for d in comparison.differences],
                "difference_count": len(comparison.differences),
                "ignored": comparison.ignored,
                "excluded": sorted({*run_scan.excluded, *reg_scan.excluded}),
                "bytes_compared": comparison.bytes_compared,
                "elapsed_s": round(comparison.elapsed_s, 4),
            }
            if keep_downloads:
                report["Comparison"]["kept_downloads"] = sorted(
                    {str(f.scratch) for f in (run_f, reg_f) if f.scratch is not None})
            if policy_run is not None:  # the registry model is what will be served: it is what is judged
                policy_result = policy_run.evaluate(
                    current, client, mv, AliasContext(alias if alias_event else None, previous_holder),
                    local_model_of(reg_f, download_dir, tracking_uri, reg_for_fetch),
                    scratch_root=download_dir)
                report["policy"] = {**policy_result.to_dict(), "applied": list(policy_run.policy.applied)}
        report["Seal"] = {
            "checked": seal is not None, "source": seal_source,
            "equals": (not seal_diffs) if seal is not None else None,
            "sealed_tree_digest": seal.tree_digest if seal is not None else None,
            "current_tree_digest": current.tree_digest,
            "sealed_truncated": seal.truncated if seal is not None else None,
            "differences": [d.to_dict() for d in seal_diffs],
        }
        if step is not None:
            report["Seal"] = {"checked": True, "source": seal_source,
                              "current_tree_digest": current.tree_digest, **step.outcome.to_dict(mv.tags)}
            if step.status == ERROR:
                raise CheckError(step.summary)
        policy_failed = policy_result is not None and policy_result.status == POLICY_FAIL
        ok = (comparison.equal and not seal_diffs and (step is None or step.status != FAILED)
              and not policy_failed)
        status = PASSED if ok else FAILED
        where = f"model '{model}' version {version}"
        size = f"{current.file_count} files, {human_bytes(current.total_bytes)}"
        if ok:
            summary = f"{where}: run model and registry model identical ({size})"
            if comparison.same_location:
                summary += ", same storage"
            if step is not None:
                summary += f"; {step.summary}"
            elif seal is not None:
                summary += "; seal verified"
            if report["Comparison"]["excluded"]:
                summary += f"; {len(report['Comparison']['excluded'])} path(s) excluded"
            if policy_result is not None:
                summary += f"; policy {policy_result.status}"
        else:
            parts = []
            if comparison.differences:
                parts.append(f"{len(comparison.differences)} difference(s) between run and registry model "
                             f"(first: {_first(comparison.differences)})")
            if step is not None and step.status == FAILED:
                parts.append(step.summary)
            elif seal_diffs:
                parts.append(f"{len(seal_diffs)} difference(s) from the seal (first: {_first(seal_diffs)})")
            if policy_failed:
                first = policy_result.failed[0]
                parts.append(f"policy FAIL ({first.check}: {first.reason})")
            summary = f"{where}: " + "; ".join(parts)
        result = CheckResult(status=status, exit_code=EXIT_CODES[status], summary=summary,
                             differences=comparison.differences, seal_differences=seal_diffs,
                             manifest=current, report=report, model=model, version=version,
                             elapsed_s=time.perf_counter() - started, seal_checked=seal is not None,
                             seal_digest=(seal if seal is not None else current).tree_digest,
                             new_seal=current if seal is None else None, policy=policy_result)
        if step is not None:
            _apply_seal_step(result, step, signed_seal, seal, current, comparison.equal)
    close_report(report, status, summary, result.elapsed_s)
    return result
