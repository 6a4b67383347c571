"""The program the load-and-predict check runs in its separate, limited process.

It is executed as a plain script (``python -I -B sandbox_child.py …``), possibly by the interpreter of
a model's own restored environment where this project is not installed: it imports only the standard
library at the top, sets its resource limits before importing anything else, and writes what happened
as one JSON object into the result file the guard gave it. It never raises to its caller; the guard
reads the result file, and the exit status or signal when there is none.

Commands:
- ``run RESULT MODEL_DIR MEMORY_MB CPU_S``: load the model with ``mlflow.pyfunc.load_model``, predict on
  its logged input example, and check the output against the signature's outputs;
- ``build-env RESULT MODEL_DIR ENV_ROOT MANAGER``: restore the model's environment with MLflow's own
  virtualenv/uv restoration under ``ENV_ROOT`` and report its interpreter.
"""

from __future__ import annotations

import json
import os
import resource
import sys
import traceback
from typing import Any

_MIB = 1 << 20


def set_limits(memory_mb: int, cpu_s: int) -> None:
    """Cap the address space, the CPU time and core dumps of this process (and what it starts)."""
    memory = memory_mb * _MIB
    resource.setrlimit(resource.RLIMIT_AS, (memory, memory))
    # The soft limit sends SIGXCPU; the hard one, a second later, SIGKILL for a process that ignores it.
    resource.setrlimit(resource.RLIMIT_CPU, (cpu_s, cpu_s + 1))
    resource.setrlimit(resource.RLIMIT_CORE, (0, 0))


def _write(result_path: str, payload: dict[str, Any]) -> None:
    tmp = result_path + ".tmp"
    with open(tmp, "w", encoding="utf-8") as handle:
        json.dump(payload, handle)
    os.replace(tmp, result_path)


def _exception_line(exc: BaseException) -> str:
    return traceback.format_exception_only(type(exc), exc)[-1].strip()


def _missing_module(exc: BaseException) -> str | None:
    """The top-level module a ModuleNotFoundError anywhere in the exception chain names, if any."""
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        if isinstance(current, ModuleNotFoundError) and current.name:
            return current.name.split(".")[0]
        current = current.__cause__ or current.__context__
    return None


def _failure(phase: str, exc: BaseException) -> dict[str, Any]:
    if isinstance(exc, MemoryError):
        return {"ok": False, "phase": phase, "kind": "memory", "line": _exception_line(exc)}
    module = _missing_module(exc)
    if module is not None:
        return {"ok": False, "phase": phase, "kind": "missing_module", "module": module,
                "line": _exception_line(exc)}
    return {"ok": False, "phase": phase, "kind": "exception", "line": _exception_line(exc)}


def output_problem(prediction: Any, output_schema: Any) -> str | None:
    """Why ``prediction`` does not fit the signature's ``output_schema`` (None when it does)."""
    from mlflow.models.utils import _enforce_schema

    try:
        _enforce_schema(prediction, output_schema)
    except Exception as exc:  # MLflow raises MlflowException, but conversions may raise anything
        return str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    return None


def run(model_dir: str) -> dict[str, Any]:
    """Load, predict on the input example, check the output; the outcome as a JSON-able dict."""
    phase = "import"
    try:
        import mlflow.pyfunc

        phase = "load"
        model = mlflow.pyfunc.load_model(model_dir)
        phase = "input example"
        example = model.metadata.load_input_example(model_dir)
        if example is None:
            return {"ok": True, "predicted": False}
        phase = "predict"
        prediction = model.predict(example)
        phase = "output"
        schema = model.metadata.get_output_schema()
        problem = output_problem(prediction, schema) if schema is not None else None
        return {"ok": True, "predicted": True, "output_checked": schema is not None,
                "output_problem": problem, "rows": _rows(prediction)}
    except BaseException as exc:  # the model's code may raise anything, SystemExit included
        return _failure(phase, exc)


def _rows(prediction: Any) -> int | None:
    try:
        return len(prediction)
    except TypeError:
        return None


def build_env(model_dir: str, env_root: str, manager: str) -> dict[str, Any]:
    """Restore the model's environment with MLflow's own restoration; its interpreter's path."""
    try:
        from mlflow.utils.virtualenv import _get_or_create_virtualenv

        activate = _get_or_create_virtualenv(model_dir, env_root_dir=env_root, env_manager=manager,
                                             capture_output=True)
    except BaseException as exc:
        # MLflow's message holds the whole command and its output; the tool's own error is the last line.
        lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
        return {"ok": False, "phase": "environment", "kind": "exception",
                "line": lines[-1] if lines else type(exc).__name__}
    # MLflow answers with the shell command that activates the environment: "source ENV/bin/activate".
    activate_script = activate.split(" ", 1)[1]
    return {"ok": True, "python": os.path.join(os.path.dirname(activate_script), "python")}


def main(argv: list[str]) -> int:
    """Entry point; see the module docstring for the commands."""
    command, result_path = argv[0], argv[1]
    if command == "run":
        model_dir, memory_mb, cpu_s = argv[2], int(argv[3]), int(argv[4])
        try:
            set_limits(memory_mb, cpu_s)
        except (ValueError, OSError) as exc:
            _write(result_path, {"ok": False, "phase": "limits", "kind": "exception",
                                 "line": _exception_line(exc)})
            return 1
        outcome = run(model_dir)
    elif command == "build-env":
        outcome = build_env(argv[2], argv[3], argv[4])
    else:
        outcome = {"ok": False, "phase": "start", "kind": "exception", "line": f"unknown command {command}"}
    _write(result_path, outcome)
    return 0 if outcome.get("ok") else 1


if __name__ == "__main__":
    # os._exit skips interpreter teardown, where a model's threads or atexit hooks could still hang.
    code = main(sys.argv[1:])
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)
