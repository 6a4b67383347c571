"""The ``load_predict`` check: load the model with MLflow and predict on its logged input example, in a
separate process with limits and without the guard's secrets (:mod:`core.policy.sandbox`).

It runs the model's own code, so it is opt-in; ``docs/policies-load-predict.md`` says what it isolates.
"""

from __future__ import annotations

import fcntl
import json
import os
import re
import shutil
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from core.policy.model import FAIL, PASS, WARN, CheckOutcome
from core.policy.sandbox import (
    ChildExit,
    RunFolder,
    child_command,
    child_environment,
    guard_python,
    read_only_copy,
    run_child,
    run_folder,
)

CHECK = "load_predict"
DEFAULT_TIMEOUT_S = 120
DEFAULT_MEMORY_MB = 2048
ENV_MANAGERS = ("local", "virtualenv", "uv")
# Restoring an environment downloads and installs packages: minutes, not the model's timeout.
ENV_BUILD_TIMEOUT_S = 1800
# Where MLflow's restoration puts environments under its env_root_dir (mlflow.utils.virtualenv).
_MLFLOW_ENVS_FOLDER = "virtualenv_envs"
_REASON_LIMIT = 300
# Import names whose distribution is named differently, for the "model needs …" message.
_DISTRIBUTIONS = {"sklearn": "scikit-learn", "cv2": "opencv-python", "PIL": "pillow", "yaml": "pyyaml",
                  "skimage": "scikit-image", "google": "google-cloud", "bs4": "beautifulsoup4"}


@dataclass(frozen=True)
class LoadPredictSettings:
    """The ``load_predict`` policy section with its defaults applied."""

    timeout_s: int = DEFAULT_TIMEOUT_S
    memory_mb: int = DEFAULT_MEMORY_MB
    env_manager: str = "local"

    @classmethod
    def of(cls, config: Mapping[str, Any]) -> LoadPredictSettings:
        """Settings from the policy's ``load_predict`` section (missing keys take the defaults)."""
        manager = str(config.get("env_manager") or "local")
        if manager not in ENV_MANAGERS:
            raise ValueError(f"load_predict.env_manager must be one of {', '.join(ENV_MANAGERS)}, "
                             f"got {manager!r}")
        return cls(int(config.get("timeout_s") or DEFAULT_TIMEOUT_S),
                   int(config.get("memory_mb") or DEFAULT_MEMORY_MB), manager)


def _outcome(status: str, reason: str) -> CheckOutcome:
    reason = " ".join(reason.split())
    if len(reason) > _REASON_LIMIT:
        reason = reason[:_REASON_LIMIT - 1] + "…"
    return CheckOutcome(CHECK, status, reason)


def _distribution(module: str, model_dir: Path) -> str:
    """The requirement naming ``module`` in the model's requirements.txt, else its usual package name."""
    wanted = {module.lower(), module.lower().replace("_", "-"), _DISTRIBUTIONS.get(module, module).lower()}
    try:
        lines = (model_dir / "requirements.txt").read_text(encoding="utf-8").splitlines()
    except OSError:
        lines = []
    for line in lines:
        name = re.split(r"[\s<>=!~;\[@]", line.strip(), maxsplit=1)[0]
        if name and name.lower().replace("_", "-") in wanted:
            return name
    return _DISTRIBUTIONS.get(module, module)


def _read_result(folder: RunFolder) -> dict[str, Any] | None:
    try:
        return json.loads(folder.result.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None


def _last_line(text: str) -> str:
    lines = [line for line in text.strip().splitlines() if line.strip()]
    return lines[-1].strip() if lines else "no output"


def _failed_run(result: dict[str, Any], settings: LoadPredictSettings, model_dir: Path) -> CheckOutcome:
    phase, line = result.get("phase", "load"), result.get("line", "")
    kind = result.get("kind")
    if kind == "memory":
        return _outcome(FAIL, f"memory: {phase} exceeded memory_mb={settings.memory_mb} ({line})")
    if kind == "missing_module":
        package = _distribution(result["module"], model_dir)
        if settings.env_manager == "local":
            return _outcome(FAIL, f"model needs {package}, not installed in the guard's environment; "
                                  "use env_manager: virtualenv")
        return _outcome(FAIL, f"model needs {package}, not installed by its requirements "
                              f"(env_manager: {settings.env_manager}): {line}")
    what = {"load": "load_model", "predict": "predict", "input example": "reading the input example",
            "output": "checking the output", "import": "importing mlflow"}.get(phase, phase)
    return _outcome(FAIL, f"{what} raised {line}")


def interpret(result: dict[str, Any] | None, exit_: ChildExit, settings: LoadPredictSettings,
              model_dir: Path) -> CheckOutcome:
    """The check's outcome from the child's result file (None if it wrote none) and how it ended."""
    if exit_.timed_out:
        return _outcome(FAIL, "timeout: load and predict did not finish within "
                              f"timeout_s={settings.timeout_s}")
    if result is None:
        name = exit_.signal_name
        if name == "SIGXCPU":
            return _outcome(FAIL, f"CPU time limit: used more than {settings.timeout_s} s of CPU")
        if name is not None:
            return _outcome(FAIL, f"the process was killed by {name} (memory: memory_mb="
                                  f"{settings.memory_mb} may be exceeded): {_last_line(exit_.output_tail)}")
        return _outcome(FAIL, f"the process exited with status {exit_.returncode} before reporting: "
                              f"{_last_line(exit_.output_tail)}")
    if not result.get("ok"):
        return _failed_run(result, settings, model_dir)
    if not result.get("predicted"):
        return _outcome(WARN, "loaded; no input example logged, so predict was not run")
    rows = result.get("rows")
    done = f"loaded and predicted on the input example ({rows} rows)" if rows is not None else \
        "loaded and predicted on the input example"
    if result.get("output_problem"):
        return _outcome(FAIL, f"output does not match the signature's outputs: {result['output_problem']}")
    if not result.get("output_checked"):
        return _outcome(PASS, f"{done}; no output signature to check it against")
    return _outcome(PASS, f"{done}; output matches the signature")


def _restored_python(model_copy: Path, settings: LoadPredictSettings, env_cache: Path,
                     parent_env: Mapping[str, str], folder: RunFolder) -> str | CheckOutcome:
    """The interpreter of the model's restored environment, built once per requirements digest.

    MLflow names each environment after a digest of the model's Python version and requirements, so
    a model with the same requirements reuses the environment in ``env_cache``. The build runs in a
    child too: installing packages runs their build scripts, which must not see the guard's secrets.
    """
    env_cache.mkdir(parents=True, exist_ok=True)
    home = env_cache / "home"
    home.mkdir(exist_ok=True)
    envs = env_cache / _MLFLOW_ENVS_FOLDER
    with open(env_cache / ".lock", "w") as lock:
        # One build at a time per host: two workers restoring the same digest would race on its folder.
        fcntl.flock(lock, fcntl.LOCK_EX)
        before = set(envs.iterdir()) if envs.is_dir() else set()
        exit_ = run_child(child_command(guard_python(), "build-env", str(folder.result), str(model_copy),
                                        str(env_cache), settings.env_manager),
                          env=child_environment(parent_env, home, building=True), cwd=folder.work,
                          log=folder.log, timeout_s=ENV_BUILD_TIMEOUT_S)
        result = _read_result(folder)
        if result is None or not result.get("ok"):
            # MLflow removes a half-built environment on errors it sees, not when its process is
            # killed: a half-built one would otherwise be reused as if complete.
            for path in (set(envs.iterdir()) if envs.is_dir() else set()) - before:
                shutil.rmtree(path, ignore_errors=True)
    folder.result.unlink(missing_ok=True)
    if result is None or not result.get("ok"):
        why = "timeout" if exit_.timed_out else (result or {}).get("line") or _last_line(exit_.output_tail)
        return _outcome(FAIL, f"could not restore the model's environment with {settings.env_manager}: {why}")
    return str(result["python"])


def run_load_predict(model_dir: Path, config: Mapping[str, Any], *, scratch_root: Path | None = None,
                     parent_env: Mapping[str, str] | None = None) -> CheckOutcome:
    """Load the model in ``model_dir`` and predict on its input example, in a limited child process.

    ``config`` is the policy's ``load_predict`` section (``timeout_s``, ``memory_mb``, ``env_manager``).
    The child gets a read-only copy of the model and a scratch working folder under ``scratch_root``
    (default: the system's temporary folder), restored environments are cached in
    ``scratch_root/model-envs``, and its environment holds only allowlisted variables of
    ``parent_env`` (default: this process's). Never raises for what the model does: every failure
    is a FAIL outcome with its reason.
    """
    try:
        settings = LoadPredictSettings.of(config)
    except (TypeError, ValueError) as exc:
        return _outcome(FAIL, str(exc))
    scratch = Path(scratch_root) if scratch_root is not None else \
        Path(tempfile.gettempdir()) / "mlflow-version-guard"
    parent_env = os.environ if parent_env is None else parent_env
    with run_folder(scratch) as folder:
        model_copy = read_only_copy(Path(model_dir), folder.model)
        python: str | CheckOutcome = guard_python()
        if settings.env_manager != "local":
            python = _restored_python(model_copy, settings, scratch / "model-envs", parent_env, folder)
            if isinstance(python, CheckOutcome):
                return python
        exit_ = run_child(child_command(python, "run", str(folder.result), str(model_copy),
                                        str(settings.memory_mb), str(settings.timeout_s)),
                          env=child_environment(parent_env, folder.work), cwd=folder.work,
                          log=folder.log, timeout_s=settings.timeout_s)
        return interpret(_read_result(folder), exit_, settings, Path(model_dir))
