"""Compare two model versions, possibly on two tracking servers (or Databricks workspaces).

The run models of both versions are compared with each other, and so are their registry
models, each exactly (every file, every sub-folder). With ``native_model`` set for a side, only
that path inside the model (for example ``model.pkl``, or ``data/model``) is compared, which is
what to do when two versions wrap the same native model in different MLflow metadata.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any

from core.compare.exclude import excluded_paths, validate_patterns
from core.compare.fetch import FetchRequest, read_trees
from core.compare.tree import TreeComparison, comparison_from_scans
from core.errors import CheckError, redact
from core.registry.access import (
    make_client,
    registry_uri_for,
    resolve_locations,
    version_summary,
)
from core.registry.error_mapping import raised_as_check_errors, translate
from core.registry.reach import check_reachable
from core.report import close_report, system_info
from core.seal.manifest import Difference
from core.status import EXIT_CODES, FAILED, PASSED

SIDES = ("tracking_server_1", "tracking_server_2")
_ALIASES = {"tracking_server_1": ("tracking_server_1", "tracking_server_01"),
            "tracking_server_2": ("tracking_server_2", "tracking_server_02")}
LABELS = ("1", "2")


@dataclass
class CompareResult:
    """Outcome of :func:`compare_model_versions`: PASSED or FAILED, exit codes as for a check."""

    status: str
    exit_code: int
    summary: str
    run_differences: list[Difference]
    reg_differences: list[Difference]
    report: dict[str, Any]
    elapsed_s: float

    @property
    def differences(self) -> list[Difference]:
        """Run-model differences followed by registry-model differences."""
        return self.run_differences + self.reg_differences


def normalize_config(config: dict[str, Any], default_host: str | None = None) -> dict[str, dict[str, Any]]:
    """The two sides of a config, under ``tracking_server_1``/``_2`` (``_01``/``_02`` accepted).

    Each side needs ``model`` and ``version_or_stage``; ``host`` (tracking URI) defaults to
    ``default_host`` (the CLI passes ``$MLFLOW_TRACKING_URI``); ``registry_uri``, ``native_model``
    and ``exclude`` (a glob or a list of globs, see :mod:`core.compare.exclude`) are optional. A side's
    registry is its ``registry_uri``, else what MLflow derives from its ``host`` alone.
    """
    if not isinstance(config, dict):
        raise CheckError("config must be a mapping with tracking_server_1 and tracking_server_2")
    out: dict[str, dict[str, Any]] = {}
    for side in SIDES:
        found = [k for k in _ALIASES[side] if k in config]
        if not found:
            raise CheckError(f"config has no '{side}' section (or '{_ALIASES[side][1]}')")
        if len(found) > 1:
            raise CheckError(f"config has both '{found[0]}' and '{found[1]}': keep one")
        sec = config[found[0]]
        if not isinstance(sec, dict):
            raise CheckError(f"config section '{found[0]}' must be a mapping")
        for key in ("model", "version_or_stage"):
            if sec.get(key) in (None, ""):
                raise CheckError(f"config section '{found[0]}' needs '{key}'")
        unknown = set(sec) - {"host", "registry_uri", "model", "version_or_stage", "native_model", "exclude"}
        if unknown:
            raise CheckError(f"config section '{found[0]}' has unknown key(s): {', '.join(sorted(unknown))}")
        native = sec.get("native_model")
        if native not in (None, ""):
            p = PurePosixPath(str(native))
            if p.is_absolute() or ".." in p.parts:
                raise CheckError(f"native_model in '{found[0]}' must be a relative path inside the model: "
                                 f"{native}")
        host = sec.get("host") or default_host
        if not host:
            raise CheckError(f"config section '{found[0]}' has no 'host' and MLFLOW_TRACKING_URI is not set: "
                             "no tracking server given")
        raw_exclude = sec.get("exclude") or []
        try:
            exclude = validate_patterns([raw_exclude] if isinstance(raw_exclude, str) else raw_exclude)
        except (ValueError, TypeError) as exc:
            raise CheckError(f"exclude in '{found[0]}': {exc}") from exc
        out[side] = {"host": str(host), "registry_uri": registry_uri_for(str(host), sec.get("registry_uri")),
                     "model": str(sec["model"]), "version_or_stage": str(sec["version_or_stage"]),
                     "native_model": str(native) if native not in (None, "") else None,
                     "exclude": exclude}
    return out


def _resolve_side(side: str, cfg: dict[str, Any]) -> dict[str, Any]:
    host = cfg["host"]
    try:
        check_reachable(host)
        client = make_client(host, cfg["registry_uri"])
        mv, run_uri, reg_uri = resolve_locations(client, cfg["model"], cfg["version_or_stage"])
        return {"mv": mv, "run_uri": run_uri, "reg_uri": reg_uri}
    except CheckError as exc:
        raise type(exc)(f"{side}: {exc}") from exc
    except Exception as exc:
        raise translate(exc, f"{side}") from exc


def _section(cmp: TreeComparison, uris: tuple[str, str]) -> dict[str, Any]:
    sec: dict[str, Any] = {"equals": cmp.equal}
    for side, manifest, path, uri in zip(SIDES, (cmp.left, cmp.right), cmp.paths, uris, strict=True):
        sec[side] = {"path": path, "hash": manifest.tree_digest, "uri": redact(uri),
                     "file_count": manifest.file_count, "total_bytes": manifest.total_bytes,
                     "ignored": list(manifest.ignored)}
    sec.update({"transfer": list(cmp.transfers),
                "differences": [d.to_dict() for d in cmp.differences],
                "difference_count": len(cmp.differences), "ignored": cmp.ignored,
                "same_location": cmp.same_location, "bytes_compared": cmp.bytes_compared,
                "elapsed_s": round(cmp.elapsed_s, 4)})
    return sec


def compare_model_versions(config: dict[str, Any], *, download_dir: Path | str | None = None,
                           skip_run: bool = False, skip_reg: bool = False,
                           keep_downloads: bool = False, exclude: Sequence[str] = (),
                           default_host: str | None = None, transfer_concurrency: int | None = None,
                           progress: Any = None, report: dict[str, Any] | None = None) -> CompareResult:
    """Compare the run models and the registry models of the two versions named in ``config``.

    ``exclude`` globs apply to both sides, on top of each side's own ``exclude`` in the config;
    what they leave out is listed in each comparison's ``excluded``. ``default_host`` is the
    tracking URI of a side without ``host``.

    Returns PASSED (exit 0) when every comparison made is equal, FAILED (exit 1) with the
    differences; raises :class:`~core.errors.CheckError` (``TransientError`` when retrying may help)
    when the comparison cannot be made, with what was learned so far in ``report`` when the caller
    passes a dict of its own. Remote models are streamed with ``transfer_concurrency`` transfers
    (default per store kind), reporting to ``progress`` (see :func:`core.check.check_model_version`).
    """
    started = time.perf_counter()
    report = {} if report is None else report
    report.update({"System": system_info("compare-model-versions"), "Config": _redacted(config),
                   "Options": {"download_dir": str(download_dir) if download_dir else None,
                               "skip_compare_run_models": skip_run, "skip_compare_reg_models": skip_reg,
                               "keep_downloads": keep_downloads, "exclude": list(exclude)}})
    with raised_as_check_errors("comparing model versions"):
        if skip_run and skip_reg:
            raise CheckError("nothing to compare: both run-model and registry-model comparisons are skipped")
        try:
            exclude = validate_patterns(exclude)
        except ValueError as exc:
            raise CheckError(str(exc)) from exc
        cfg = normalize_config(config, default_host)
        with ThreadPoolExecutor(max_workers=2, thread_name_prefix="guard-resolve") as pool:
            futures = [pool.submit(_resolve_side, side, cfg[side]) for side in SIDES]
            resolved = [f.result() for f in futures]
        report["Model_Version_Summary"] = {
            side: {"client": redact(cfg[side]["host"]),
                   "version": {**version_summary(r["mv"]), "download_uri": redact(r["reg_uri"])}}
            for side, r in zip(SIDES, resolved, strict=True)}

        kinds = [k for k, skip in (("run", skip_run), ("reg", skip_reg)) if not skip]
        requests = []
        for kind in kinds:
            for side, r in zip(SIDES, resolved, strict=True):
                c = cfg[side]
                requests.append(FetchRequest(r[f"{kind}_uri"], c["host"], c["registry_uri"],
                                             f"{kind} model {side[-1]}", subpath=c["native_model"]))
        # One list for both sides: a file left out of one side only would be reported as missing.
        patterns = list(dict.fromkeys([*exclude, *cfg[SIDES[0]]["exclude"], *cfg[SIDES[1]]["exclude"]]))
        scan_started = time.perf_counter()
        with read_trees(requests, download_dir, keep_downloads, concurrency=transfer_concurrency,
                        progress=progress, exclude=patterns) as fetched:
            scans = [f.scan for f in fetched]
            elapsed = time.perf_counter() - scan_started
            comparisons: dict[str, TreeComparison] = {}
            for i, kind in enumerate(kinds):
                comparisons[kind] = comparison_from_scans(scans[2 * i], scans[2 * i + 1], LABELS, elapsed)
            if keep_downloads:
                report["Options"]["kept_downloads"] = sorted({str(f.scratch) for f in fetched if f.scratch})
        for kind, key in (("run", "Run_Model_Comparison"), ("reg", "Reg_Model_Comparison")):
            if kind in comparisons:
                uris = tuple(r[f"{kind}_uri"] for r in resolved)
                report[key] = _section(comparisons[kind], uris)  # type: ignore[arg-type]
                report[key]["excluded"] = excluded_paths(comparisons[kind].ignored, patterns)
            else:
                report[key] = {"equals": None, "skipped": True}
        report["Comparison_Summary"] = {
            "run_model": comparisons["run"].equal if "run" in comparisons else None,
            "reg_model": comparisons["reg"].equal if "reg" in comparisons else None}
        run_d = comparisons["run"].differences if "run" in comparisons else []
        reg_d = comparisons["reg"].differences if "reg" in comparisons else []
        equal = all(c.equal for c in comparisons.values())
        names = " vs ".join(f"'{cfg[s]['model']}' version {r['mv'].version}"
                            for s, r in zip(SIDES, resolved, strict=True))
        if equal:
            what = " and ".join({"run": "run models", "reg": "registry models"}[k] for k in kinds)
            summary = f"{names}: {what} identical"
        else:
            parts = [f"{len(d)} difference(s) between the {n} (first: {d[0].kind} {d[0].path})"
                     for n, d in (("run models", run_d), ("registry models", reg_d)) if d]
            summary = f"{names}: " + "; ".join(parts)
        excluded = sorted({p for c in comparisons.values() for p in excluded_paths(c.ignored, patterns)})
        if excluded:
            more = ", …" if len(excluded) > 3 else ""
            summary += f"; {len(excluded)} path(s) excluded ({', '.join(excluded[:3])}{more})"
    status = PASSED if equal else FAILED
    result = CompareResult(status, EXIT_CODES[status], summary, run_d, reg_d, report,
                           time.perf_counter() - started)
    close_report(report, status, summary, result.elapsed_s)
    return result


def _redacted(config: Any) -> Any:
    if isinstance(config, dict):
        return {k: (redact(v) if k in ("host", "registry_uri") and isinstance(v, str) else _redacted(v))
                for k, v in config.items()}
    return config
