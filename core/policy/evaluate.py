"""Run a policy's checks on one version, in the same pass as the integrity check.

:func:`prepare` turns the effective policy into a :class:`PolicyRun` whose ``observe`` goes to the
comparison's reader (None when no check needs a file, so the read is untouched); once the trees
are read, :meth:`PolicyRun.evaluate` runs the checks named by the policy, in a fixed order, and
returns one :class:`core.policy.model.PolicyResult`. A section not named is not checked.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from contextlib import AbstractContextManager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from mlflow import MlflowClient
from mlflow.entities.model_registry import ModelVersion

from core.compare.observe import ObserveFile
from core.policy import checks_files as files_checks
from core.policy.checks_meta import REQUIREMENTS, check_limits, check_metadata, check_requirements
from core.policy.inspect import ModelInspector
from core.policy.loader import EffectivePolicy, Policy
from core.policy.metrics import AliasContext, check_metrics
from core.policy.model import FAIL, CheckOutcome, PolicyResult
from core.seal.manifest import Manifest

__all__ = ["POLICY_FAIL", "AliasContext", "LocalModel", "Policy", "PolicyResult", "PolicyRun",
           "local_model_of", "prepare"]
POLICY_FAIL = FAIL

# The guard's own verdict section in a description (listener/verdict_text.py) is not the team's text.
_GUARD_SECTION = re.compile(r"<!-- validation:start -->.*?<!-- validation:end -->", re.DOTALL)
_READS_MLMODEL = ("mlmodel", "signature", "input_example", "serialization")

LocalModel = Callable[[], AbstractContextManager[Path]]
#: what ``load_predict`` gets for the settings a policy leaves out
LOAD_PREDICT_DEFAULTS = {"enabled": False, "timeout_s": 120, "memory_mb": 2048, "env_manager": "local"}


@dataclass
class PolicyRun:
    """One version's policy evaluation: ``observe`` for the read, then :meth:`evaluate`."""

    policy: EffectivePolicy
    inspector: ModelInspector | None

    @property
    def observe(self) -> ObserveFile | None:
        """What the comparison's reader should call per file (None: nothing needed from the files)."""
        return self.inspector

    def evaluate(self, manifest: Manifest, client: MlflowClient, mv: ModelVersion,
                 event: AliasContext | None = None, local_model: LocalModel | None = None,
                 scratch_root: Path | str | None = None) -> PolicyResult:
        """The checks the policy names, on the tree read (``manifest``) and the version ``mv``.

        ``local_model`` gives a local copy of the model, needed only by ``load_predict``, which works
        (and caches restored environments) under ``scratch_root``.
        """
        p, insp = self.policy, self.inspector or ModelInspector(formats=False, scan=False)
        files = set(manifest.files)
        out: list[CheckOutcome] = []
        mlmodel, why = (files_checks.read_mlmodel(insp, files) if any(s in p for s in _READS_MLMODEL)
                        else (None, ""))
        # signature and input_example live in MLmodel: naming them checks MLmodel too, unless it is off.
        implied = "required" if ("signature" in p or "input_example" in p) else None
        level = p.sections.get("mlmodel", implied)
        if level is not None and level != "off":
            out.append(files_checks.check_mlmodel(level, mlmodel, why))
        if "signature" in p:
            out.append(files_checks.check_signature(p.get("signature"), mlmodel, why))
        if "input_example" in p:
            out.append(files_checks.check_input_example(p.get("input_example"), mlmodel, why, files))
        if "serialization" in p:
            cfg = p.get("serialization")
            out.append(files_checks.check_serialization(cfg, insp, sorted(files), mlmodel))
            if cfg.get("scan", True):
                out.append(files_checks.check_scan(insp))
        if "requirements" in p:
            out.append(check_requirements(p.get("requirements"), insp, files))
        if "limits" in p:
            out.append(check_limits(p.get("limits"), manifest))
        if "metadata" in p:
            description = _GUARD_SECTION.sub("", getattr(mv, "description", None) or "")
            out.append(check_metadata(p.get("metadata"), description, getattr(mv, "tags", None)))
        if p.get("metrics"):
            out.append(check_metrics(p.get("metrics"), client, mv, event or AliasContext()))
        lp = p.get("load_predict")
        if lp and lp.get("enabled"):
            out.append(_load_predict(lp, local_model, scratch_root))
        return PolicyResult.of(out)


def _load_predict(cfg: dict[str, Any], local_model: LocalModel | None,
                  scratch_root: Path | str | None = None) -> CheckOutcome:
    if local_model is None:
        return CheckOutcome("load_predict", FAIL, "no local copy of the model to load")
    from core.policy.load_predict import run_load_predict  # separate module: runs model code, opt-in

    with local_model() as path:
        return run_load_predict(path, {**LOAD_PREDICT_DEFAULTS, **cfg},
                                scratch_root=Path(scratch_root) if scratch_root else None)


def prepare(policy: EffectivePolicy) -> PolicyRun:
    """The :class:`PolicyRun` for ``policy``: observes the files only as far as its checks need."""
    texts: set[str] = set()
    if any(s in policy for s in _READS_MLMODEL):
        texts.add(files_checks.MLMODEL)
    if "requirements" in policy:
        texts.add(REQUIREMENTS)
    ser = policy.get("serialization")
    formats = ser is not None
    scan = formats and bool(ser.get("scan", True))
    if not (texts or formats):
        return PolicyRun(policy, None)
    return PolicyRun(policy, ModelInspector(formats=formats, scan=scan, texts=frozenset(texts)))


def local_model_of(tree: Any, scratch_root: Path | str | None, tracking_uri: str | None,
                   registry_uri: str | None) -> LocalModel:
    """A :data:`LocalModel` for a tree read by :func:`core.compare.fetch.read_trees`.

    A tree read in place (or kept) is used where it is; a streamed one is downloaded into a fresh
    scratch folder, only when ``load_predict`` asks for it, and removed afterwards.
    """
    from contextlib import contextmanager, nullcontext

    from core.compare.fetch import materialize

    @contextmanager
    def opened():
        if isinstance(tree.path, Path):
            with nullcontext(tree.path) as path:
                yield path
        else:
            with materialize(tree.uri, scratch_root, tracking_uri=tracking_uri,
                             registry_uri=registry_uri) as path:
                yield path

    return opened
