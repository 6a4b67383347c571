"""Checks of the model's files: ``mlmodel``, ``signature``, ``input_example``, ``serialization``, ``scan``.

They read what :class:`core.policy.inspect.ModelInspector` learnt during the comparison's read
(formats by content, the MLmodel text, pickle scans) and the tree's manifest; they open no file.
"""

from __future__ import annotations

import fnmatch
from typing import Any

import yaml

from core.policy.formats import PICKLE, Format
from core.policy.inspect import ModelInspector
from core.policy.model import FAIL, PASS, WARN, CheckOutcome
from core.policy.scanner import INCONCLUSIVE, MALICIOUS, SUSPICIOUS

MLMODEL = "MLmodel"
# What a file name claims, to call out a disguise (the name is never trusted, the content decides).
_CLAIMED_BY_SUFFIX = {".safetensors": "safetensors", ".onnx": "onnx", ".skops": "skops", ".keras": "keras",
                      ".npy": "numpy", ".h5": "hdf5", ".gguf": "gguf"}


def _few(items: list[str], n: int = 3) -> str:
    return "; ".join(items[:n]) + (f"; … {len(items) - n} more" if len(items) > n else "")


def read_mlmodel(inspector: ModelInspector, files: set[str]) -> tuple[dict[str, Any] | None, str]:
    """The parsed MLmodel, or None and why not."""
    if MLMODEL not in files:
        return None, "no MLmodel file at the model's root"
    if MLMODEL in inspector.too_large:
        return None, "MLmodel is larger than 1 MiB"
    try:
        doc = yaml.safe_load(inspector.texts.get(MLMODEL, b"").decode("utf-8"))
    except (yaml.YAMLError, UnicodeDecodeError) as exc:
        return None, f"MLmodel does not parse: {str(exc).splitlines()[0]}"
    if not isinstance(doc, dict):
        return None, "MLmodel is not a mapping"
    return doc, ""


def _level_outcome(check: str, level: str, ok: bool, found: str, missing: str) -> CheckOutcome:
    if ok:
        return CheckOutcome(check, PASS, found)
    return CheckOutcome(check, FAIL if level == "required" else WARN, missing)


def check_mlmodel(level: str, mlmodel: dict[str, Any] | None, why: str) -> CheckOutcome:
    """MLmodel parses, declares a ``python_function`` loader and records ``mlflow_version``."""
    if mlmodel is None:
        return _level_outcome("mlmodel", level, False, "", why)
    pyfunc = (mlmodel.get("flavors") or {}).get("python_function")
    problems = []
    if not isinstance(pyfunc, dict) or not (pyfunc.get("loader_module") or pyfunc.get("python_model")
                                            or pyfunc.get("model_code_path")):
        problems.append("no python_function loader in its flavors")
    if not mlmodel.get("mlflow_version"):
        problems.append("no mlflow_version recorded")
    if problems:
        return _level_outcome("mlmodel", level, False, "", "MLmodel: " + "; ".join(problems))
    loader = pyfunc.get("loader_module") or "python_model"
    return CheckOutcome("mlmodel", PASS, f"MLmodel: python_function via {loader}, "
                                         f"mlflow {mlmodel['mlflow_version']}")


def check_signature(level: str, mlmodel: dict[str, Any] | None, why: str) -> CheckOutcome:
    """The MLmodel records a signature with inputs."""
    sig = (mlmodel or {}).get("signature") or {}
    inputs = sig.get("inputs") if isinstance(sig, dict) else None
    missing = why if mlmodel is None else "MLmodel has no signature"
    return _level_outcome("signature", level, bool(inputs), "signature recorded (inputs"
                          + (" and outputs)" if sig.get("outputs") else ", no outputs)"), missing)


def check_input_example(level: str, mlmodel: dict[str, Any] | None, why: str,
                        files: set[str]) -> CheckOutcome:
    """The MLmodel names an input example and that file is part of the model."""
    info = (mlmodel or {}).get("saved_input_example_info") or {}
    path = info.get("artifact_path") if isinstance(info, dict) else None
    if mlmodel is None:
        return _level_outcome("input_example", level, False, "", why)
    if not path:
        return _level_outcome("input_example", level, False, "", "MLmodel records no input example")
    return _level_outcome("input_example", level, path in files, f"input example {path} present",
                          f"MLmodel names input example {path}, but the file is not in the model")


def declared_formats(mlmodel: dict[str, Any] | None) -> dict[str, Format]:
    """Files whose format the MLmodel's flavor configuration declares: path → declared format."""
    flavors = (mlmodel or {}).get("flavors") or {}
    out: dict[str, Format] = {}
    sk = flavors.get("sklearn")
    if isinstance(sk, dict) and sk.get("pickled_model"):
        fmt = str(sk.get("serialization_format") or "cloudpickle")
        out[str(sk["pickled_model"])] = Format("skops" if fmt == "skops" else PICKLE, f"sklearn {fmt}")
    pf = flavors.get("python_function")
    if isinstance(pf, dict) and pf.get("python_model"):
        out[str(pf["python_model"])] = Format(PICKLE, "cloudpickled PythonModel")
    pt = flavors.get("pytorch")
    if isinstance(pt, dict) and pt.get("model_data"):
        out[str(pt["model_data"])] = Format(PICKLE, f"torch via {pt.get('pickle_module_name', 'pickle')}")
    return out


def _declared_for(path: str, declared: dict[str, Format]) -> Format | None:
    for where, fmt in declared.items():
        if path == where or path.startswith(where.rstrip("/") + "/"):
            return fmt
    return None


def check_serialization(cfg: dict[str, Any], inspector: ModelInspector, files: list[str],
                        mlmodel: dict[str, Any] | None) -> CheckOutcome:
    """Every file's format, by content and by the flavor configuration, against ``deny`` / ``allow``."""
    deny, allow = set(cfg.get("deny") or ()), cfg.get("allow")
    declared = declared_formats(mlmodel)
    bad, odd, families = [], [], {}
    for path in sorted(files):
        facts = inspector.facts.get(path)
        fmt = facts.format if facts is not None else Format("unknown", "not inspected")
        families[fmt.family] = families.get(fmt.family, 0) + 1
        said = _declared_for(path, declared)
        if fmt.family in deny:
            bad.append(f"{path}: {fmt.describe()} is denied")
        elif said is not None and said.family in deny:
            bad.append(f"{path}: declared {said.describe()} in MLmodel, which is denied")
        elif allow is not None and fmt.family != "text" and fmt.family not in allow:
            bad.append(f"{path}: {fmt.describe()} is not allowed")
        if said is not None and said.family != fmt.family and fmt.family != "zip":
            odd.append(f"{path}: MLmodel declares {said.describe()} but the content is {fmt.describe()}")
        claimed = next((f for s, f in _CLAIMED_BY_SUFFIX.items() if path.lower().endswith(s)), None)
        if claimed is not None and claimed != fmt.family:
            odd.append(f"{path}: named {claimed} but the content is {fmt.describe()}")
    bad += _skops_trust(cfg.get("skops_trusted"), mlmodel)
    if bad:
        return CheckOutcome("serialization", FAIL, _few(bad + odd))
    if odd:
        return CheckOutcome("serialization", WARN, _few(odd))
    summary = ", ".join(f"{n} {fam}" for fam, n in sorted(families.items()))
    return CheckOutcome("serialization", PASS, f"{len(files)} files by content: {summary or 'none'}")


def _skops_trust(patterns: list[str] | None, mlmodel: dict[str, Any] | None) -> list[str]:
    """Types a skops model declares trusted in its MLmodel outside ``patterns``.

    skops itself refuses, at load time, every type outside its defaults and this declared list, so
    the declared list is what widens what loading may construct.
    """
    if patterns is None:
        return []
    out = []
    sk = ((mlmodel or {}).get("flavors") or {}).get("sklearn") or {}
    for t in sk.get("skops_trusted_types") or () if isinstance(sk, dict) else ():
        if not any(fnmatch.fnmatchcase(str(t), p) for p in patterns):
            out.append(f"MLmodel trusts skops type {t}, outside skops_trusted")
    return out


def check_scan(inspector: ModelInspector) -> CheckOutcome:
    """The scanner's findings on every pickle-family file (and pickle inside zip containers)."""
    scans = [s for facts in inspector.facts.values() for s in facts.scans]
    if not scans:
        return CheckOutcome("scan", PASS, "no pickle-family files to scan")
    evil = [f"{where}: dangerous global {', '.join(f.dangerous[:3])}" for where, f in scans
            if f.verdict == MALICIOUS]
    if evil:
        return CheckOutcome("scan", FAIL, _few(sorted(evil)))
    unsure = [f"{where}: scan inconclusive ({f.note})" for where, f in scans if f.verdict == INCONCLUSIVE]
    review = [f"{where}: non-allowlisted {', '.join(f.suspicious[:2])}" for where, f in scans
              if f.verdict == SUSPICIOUS]
    if unsure or review:
        return CheckOutcome("scan", WARN, f"{len(scans)} pickle(s), no dangerous global; "
                                          + _few(sorted(unsure) + sorted(review), 2))
    return CheckOutcome("scan", PASS, f"{len(scans)} pickle(s) scanned: no dangerous global")
