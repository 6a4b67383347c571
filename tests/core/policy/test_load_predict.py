"""load_predict on real pyfunc models, logged with the real MLflow to a real ``mlflow server`` and
downloaded back the way the guard reads them: a good model passes; one whose predict raises, whose load
outlasts ``timeout_s`` or allocates past ``memory_mb`` fails with that reason; a model looking for the
guard's secrets in its environment finds none; a missing dependency names the package.

The models are "models from code" (a Python file, no pickle), so the child needs nothing from tests/.
Behaviour that must not happen at logging time (sleeping, allocating) sits in ``load_context``, which
MLflow only calls while logging when an input example is given.
"""

from __future__ import annotations

import json
import os
import textwrap
from collections.abc import Iterator
from pathlib import Path

import mlflow
import pandas as pd
import pytest
from mlflow.models import infer_signature

from core.policy.load_predict import run_load_predict
from core.policy.sandbox import child_environment
from tests.support.procs import VENV_BIN, MlflowServer

EXAMPLE = pd.DataFrame({"x": [1.0, 2.0, 3.0]})
HEADER = """\
import os
import sys
import time

import numpy as np
import pandas as pd
from mlflow.models import set_model
from mlflow.pyfunc import PythonModel
"""
MODELS = {
    "good": """
class Model(PythonModel):
    def predict(self, context, model_input, params=None):
        return pd.DataFrame({"y": model_input["x"] * 2.0})
""",
    "raises": """
class Model(PythonModel):
    def predict(self, context, model_input, params=None):
        raise ValueError("column x has a negative scale factor")
""",
    "sleeps": """
class Model(PythonModel):
    def load_context(self, context):
        time.sleep(600)

    def predict(self, context, model_input, params=None):
        return model_input
""",
    "allocates": """
class Model(PythonModel):
    def load_context(self, context):
        # 3 GiB of address space: zero pages, never touched, so only the limit can refuse it.
        self.buffer = np.zeros(3 << 30, dtype=np.uint8)

    def predict(self, context, model_input, params=None):
        return model_input
""",
    "snoops": """
class Model(PythonModel):
    def predict(self, context, model_input, params=None):
        found = {name: value for name, value in os.environ.items()
                 if name.startswith(("GUARD_", "DATABRICKS_", "AWS_", "MLFLOW_TRACKING_"))}
        evidence = {"found": found, "home": os.environ.get("HOME"), "cwd": os.getcwd(),
                    "python": sys.prefix}
        with open(context.model_config["evidence"], "w") as handle:
            import json
            json.dump(evidence, handle)
        return pd.DataFrame({"y": model_input["x"]})
""",
    "needs_xgboost": """
class Model(PythonModel):
    def load_context(self, context):
        import xgboost  # noqa: F401

    def predict(self, context, model_input, params=None):
        return model_input
""",
    "plain": """
class Model(PythonModel):
    def predict(self, context, model_input, params=None):
        return model_input
""",
    "wrong_output": """
class Model(PythonModel):
    def predict(self, context, model_input, params=None):
        return pd.DataFrame({"label": ["cat"] * len(model_input)})
""",
}
WITH_EXAMPLE = ("good", "raises", "snoops", "wrong_output")


@pytest.fixture(scope="module")
def models(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Path]]:
    """Each model of ``MODELS`` logged to a real tracking server and downloaded into its own folder."""
    root = tmp_path_factory.mktemp("load-predict")
    server = MlflowServer(root / "server").start()
    evidence = root / "evidence.json"
    try:
        mlflow.set_tracking_uri(server.url)
        downloaded: dict[str, Path] = {}
        for name, body in MODELS.items():
            code = root / "code" / f"{name}.py"
            code.parent.mkdir(exist_ok=True)
            code.write_text(HEADER + textwrap.dedent(body) + "\nset_model(Model())\n")
            kwargs: dict = {}
            if name in WITH_EXAMPLE:
                kwargs["input_example"] = EXAMPLE
            if name == "raises":
                kwargs["signature"] = infer_signature(EXAMPLE, pd.DataFrame({"y": [1.0]}))
            if name == "wrong_output":
                kwargs["signature"] = infer_signature(EXAMPLE, pd.DataFrame({"y": [1.0]}))
            if name == "snoops":
                kwargs["model_config"] = {"evidence": str(evidence)}
            with mlflow.start_run():
                info = mlflow.pyfunc.log_model(name="model", python_model=str(code), **kwargs)
            downloaded[name] = Path(mlflow.artifacts.download_artifacts(
                info.model_uri, dst_path=str(root / "downloads" / name)))
        downloaded["evidence"] = evidence
        yield downloaded
    finally:
        mlflow.set_tracking_uri(None)
        server.stop()


def check(model_dir: Path, tmp_path: Path, **config: object):
    return run_load_predict(model_dir, {"enabled": True, "timeout_s": 120, "memory_mb": 1024, **config},
                            scratch_root=tmp_path / "scratch")


def test_a_good_model_passes(models: dict[str, Path], tmp_path: Path) -> None:
    outcome = check(models["good"], tmp_path)
    assert (outcome.check, outcome.status) == ("load_predict", "PASS"), outcome
    assert "3 rows" in outcome.reason and "output matches the signature" in outcome.reason


def test_predict_raising_fails_with_the_exception_line(models: dict[str, Path], tmp_path: Path) -> None:
    outcome = check(models["raises"], tmp_path)
    assert outcome.status == "FAIL"
    assert outcome.reason == "predict raised ValueError: column x has a negative scale factor"


def test_a_load_past_the_timeout_fails_with_timeout(models: dict[str, Path], tmp_path: Path) -> None:
    outcome = check(models["sleeps"], tmp_path, timeout_s=15)
    assert outcome.status == "FAIL"
    assert outcome.reason.startswith("timeout:") and "timeout_s=15" in outcome.reason


def test_allocating_past_memory_mb_fails(models: dict[str, Path], tmp_path: Path) -> None:
    outcome = check(models["allocates"], tmp_path, memory_mb=1024)
    assert outcome.status == "FAIL"
    assert outcome.reason.startswith("memory: load exceeded memory_mb=1024"), outcome.reason


def test_the_model_finds_none_of_the_guards_secrets(models: dict[str, Path], tmp_path: Path,
                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    secrets = {"GUARD_MLFLOW_SECRET": "s3cr3t", "GUARD_SIGNING_KEY": "-----BEGIN EC PRIVATE KEY-----",
               "DATABRICKS_TOKEN": "dapi-not-for-models", "AWS_SECRET_ACCESS_KEY": "aws-not-for-models",
               "MLFLOW_TRACKING_TOKEN": "token-not-for-models"}
    for name, value in secrets.items():
        monkeypatch.setenv(name, value)
    evidence: Path = models["evidence"]
    evidence.unlink(missing_ok=True)
    outcome = check(models["snoops"], tmp_path)
    assert outcome.status == "PASS", outcome
    seen = json.loads(evidence.read_text())
    assert seen["found"] == {}
    # HOME is the run's scratch folder, not the user's (where cloud and Databricks config files live).
    assert seen["home"] == seen["cwd"] and seen["cwd"].startswith(str(tmp_path / "scratch"))


def test_the_allowlist_keeps_secret_prefixes_out_even_when_listed() -> None:
    parent = {"PATH": "/usr/bin", "GUARD_QUEUE": "redis://:pw@host/0", "DATABRICKS_HOST": "https://x",
              "AWS_ACCESS_KEY_ID": "AKIA", "LANG": "C.UTF-8", "HOME": "/root"}
    env = child_environment(parent, Path("/scratch/work"), building=True)
    assert not [name for name in env if name.startswith(("GUARD_", "DATABRICKS_", "AWS_"))]
    assert env["PATH"] == "/usr/bin" and env["LANG"] == "C.UTF-8" and env["HOME"] == "/scratch/work"


def test_a_missing_dependency_names_the_package_and_the_remedy(models: dict[str, Path],
                                                               tmp_path: Path) -> None:
    outcome = check(models["needs_xgboost"], tmp_path)
    assert outcome.status == "FAIL"
    assert outcome.reason == ("model needs xgboost, not installed in the guard's environment; "
                              "use env_manager: virtualenv")


def test_an_output_outside_the_signature_fails(models: dict[str, Path], tmp_path: Path) -> None:
    outcome = check(models["wrong_output"], tmp_path)
    assert outcome.status == "FAIL"
    assert outcome.reason.startswith("output does not match the signature's outputs:"), outcome.reason


def test_without_an_input_example_the_model_loads_with_a_warning(models: dict[str, Path],
                                                                tmp_path: Path) -> None:
    outcome = check(models["plain"], tmp_path)
    assert outcome.status == "WARN"
    assert outcome.reason == "loaded; no input example logged, so predict was not run"


def test_the_model_files_are_read_only_and_the_original_is_untouched(models: dict[str, Path],
                                                                     tmp_path: Path) -> None:
    before = {p.name: p.stat().st_mode for p in models["good"].iterdir()}
    assert check(models["good"], tmp_path).status == "PASS"
    assert {p.name: p.stat().st_mode for p in models["good"].iterdir()} == before
    assert not list((tmp_path / "scratch" / "load-predict").iterdir())  # the run folder is gone


def test_env_manager_uv_restores_the_models_environment_once_per_requirements(models: dict[str, Path],
                                                                               tmp_path: Path) -> None:
    # MLflow's own restoration with uv (installed with the test dependencies), from the model's
    # python_env.yaml and requirements.txt, packages from the package index.
    parent = {**os.environ, "PATH": f"{VENV_BIN}:{os.environ['PATH']}"}
    config = {"enabled": True, "timeout_s": 300, "memory_mb": 2048, "env_manager": "uv"}
    evidence: Path = models["evidence"]
    evidence.unlink(missing_ok=True)
    outcome = run_load_predict(models["snoops"], config, scratch_root=tmp_path, parent_env=parent)
    assert outcome.status == "PASS", outcome
    envs = tmp_path / "model-envs" / "virtualenv_envs"
    [restored] = list(envs.iterdir())
    assert json.loads(evidence.read_text())["python"] == str(restored)  # it ran in the restored one
    # Another model with the same requirements reuses the environment: still one, named by their digest.
    assert run_load_predict(models["good"], config, scratch_root=tmp_path, parent_env=parent).status == "PASS"
    assert list(envs.iterdir()) == [restored]


def test_an_environment_that_cannot_be_restored_fails_with_the_tools_reason(models: dict[str, Path],
                                                                            tmp_path: Path) -> None:
    # No uv on PATH: MLflow's restoration cannot start; the reason is the tool's own last line.
    config = {"enabled": True, "timeout_s": 60, "memory_mb": 2048, "env_manager": "uv"}
    outcome = run_load_predict(models["good"], config, scratch_root=tmp_path, parent_env={"PATH": "/nowhere"})
    assert outcome.status == "FAIL"
    assert outcome.reason.startswith("could not restore the model's environment with uv: "), outcome.reason
