"""The core against real ``mlflow server`` processes, through its CLIs run as subprocesses.

Models are logged here with MLflow itself: a pyfunc model carrying an artifact folder several
levels deep, and a scikit-learn model whose native form is a single file (``model.pkl``).
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import mlflow
import pytest
import yaml
from mlflow import MlflowClient

from core.check import check_model_version
from core.compare.fetch import materialize
from core.compare.tree import compare_trees
from core.compare.versions import compare_model_versions
from core.errors import NotFoundError
from core.registry.access import make_client, resolve_version
from core.seal.digest import make_seal
from core.tags import TAG_MANIFEST
from tests.support.procs import free_port

BIN = Path(sys.executable).parent
DEEP = "artifacts/data/level1/level2/level3/weights.bin"
NATIVE = "artifacts/model.bin"
CLI_TIMEOUT = 120  # a guard against a hang, not a speed assertion


@contextmanager
def _tracking(uri: str) -> Iterator[None]:
    """Point MLflow's fluent API at ``uri`` for a while, then restore the previous state."""
    from mlflow.tracking._tracking_service import utils

    prev_uri, prev_env = utils._tracking_uri, os.environ.get("MLFLOW_TRACKING_URI")
    mlflow.set_tracking_uri(uri)
    try:
        yield
    finally:
        mlflow.set_tracking_uri(prev_uri)
        if prev_env is None:
            os.environ.pop("MLFLOW_TRACKING_URI", None)
        else:
            os.environ["MLFLOW_TRACKING_URI"] = prev_env


class _Echo(mlflow.pyfunc.PythonModel):
    def predict(self, context, model_input, params=None):
        return model_input


def _artifact_tree(root: Path, flip: bool = False) -> Path:
    deep = root / "level1" / "level2" / "level3"
    deep.mkdir(parents=True)
    weights = bytearray(bytes(range(256)) * 64)
    if flip:
        weights[1000] ^= 0x01
    (deep / "weights.bin").write_bytes(bytes(weights))
    (root / "level1" / "vocab.txt").write_text("alpha\nbeta\n")
    (root / "config.json").write_text('{"layers": 3}')
    (root / "level1" / "level2" / "empty.txt").write_bytes(b"")
    return root


def _log_pyfunc(name: str, artifacts: Path) -> str:
    """Log and register a pyfunc model, ``artifacts`` under ``artifacts/data``; returns its models:/ URI."""
    with mlflow.start_run():
        info = mlflow.pyfunc.log_model(name="model", python_model=_Echo(), artifacts={"data": str(artifacts)},
                                       registered_model_name=name, pip_requirements=["mlflow"])
    return info.model_uri


NATIVE_BYTES = bytes(range(256)) * 32  # the single-file native model, identical on every server


def _log_native(name: str, tmp: Path) -> None:
    """Log and register a pyfunc model whose native model is one file, ``artifacts/model.bin``."""
    tmp.mkdir(parents=True, exist_ok=True)
    (tmp / "model.bin").write_bytes(NATIVE_BYTES)
    with mlflow.start_run():
        mlflow.pyfunc.log_model(name="model", python_model=_Echo(),
                                artifacts={"native": str(tmp / "model.bin")},
                                registered_model_name=name, pip_requirements=["mlflow"])


@dataclass
class Models:
    url: str
    artifacts: Path
    nested: str = "core-nested"
    native: str = "core-native"
    tamper: str = "core-tamper"


@pytest.fixture(scope="module")
def models(mlflow_server, tmp_path_factory) -> Models:
    """Versions on the local-artifact server.

    core-nested: v1 (alias champion, Staging), v2 = v1 with one byte flipped three folders deep
    inside its artifacts (Production), v3 = v1's logged model registered again (Staging).
    core-native: a single-file native model. core-tamper: a model to tamper with.
    """
    tmp = tmp_path_factory.mktemp("core-models")
    m = Models(mlflow_server.url, mlflow_server.artifacts)
    with _tracking(mlflow_server.url):
        uri_1 = _log_pyfunc(m.nested, _artifact_tree(tmp / "a" / "data"))
        _log_pyfunc(m.nested, _artifact_tree(tmp / "b" / "data", flip=True))
        client = MlflowClient(mlflow_server.url)
        mv1 = client.get_model_version(m.nested, "1")
        client.create_model_version(m.nested, source=uri_1, run_id=mv1.run_id,
                                    model_id=uri_1.removeprefix("models:/"))
        client.set_registered_model_alias(m.nested, "champion", "1")
        for version, stage in (("1", "Staging"), ("2", "Production"), ("3", "Staging")):
            client.transition_model_version_stage(m.nested, version, stage)
        _log_native(m.native, tmp / "native")
        _log_pyfunc(m.tamper, _artifact_tree(tmp / "c" / "data"))
    return m


@pytest.fixture(scope="module")
def url_2(mlflow_server_2, tmp_path_factory) -> str:
    """The second server, holding the same single-file native model."""
    with _tracking(mlflow_server_2.url):
        _log_native(Models.native, tmp_path_factory.mktemp("core-native-2"))
    return mlflow_server_2.url


@pytest.fixture(scope="module")
def url_http(mlflow_server_http, tmp_path_factory) -> str:
    """The --serve-artifacts server (downloads over HTTP), holding the same native model."""
    with _tracking(mlflow_server_http.url):
        _log_native(Models.native, tmp_path_factory.mktemp("core-native-http"))
    return mlflow_server_http.url


def _cli(name: str) -> list[str]:
    script = BIN / name
    if script.exists():
        return [str(script)]
    func = name.replace("-", "_") + "_cli"  # not installed as a script: run the same entry point
    return [sys.executable, "-c", f"from core.cli.commands import {func}; {func}()"]


def _env(url: str) -> dict[str, str]:
    return {**os.environ, "MLFLOW_TRACKING_URI": url}


def _run(name: str, args: list[str], url: str) -> subprocess.CompletedProcess:
    return subprocess.run(_cli(name) + args, env=_env(url), capture_output=True, text=True,
                          timeout=CLI_TIMEOUT)


def _check(args: list[str], url: str) -> subprocess.CompletedProcess:
    return _run("check-model-version", args, url)


def test_identical_models_source_pass(models: Models, tmp_path: Path):
    report = tmp_path / "check.json"
    p = _check(["--model", models.nested, "--version-or-stage", "1", "--report-file", str(report)],
               models.url)
    assert p.returncode == 0, p.stdout + p.stderr
    assert p.stdout.startswith("PASSED")
    r = json.loads(report.read_text())
    for key in ("System", "Options", "Version", "Comparison", "Result"):
        assert key in r
    assert r["Version"]["_source"].startswith("models:/m-")  # MLflow 3 logged-model source
    cmp = r["Comparison"]
    assert cmp["equals"] is True and r["equals"] is True
    # The local artifact store is read in place, not copied.
    assert not cmp["run_model"]["downloaded"] and not cmp["reg_model"]["downloaded"]
    assert Path(cmp["reg_model"]["local_path"]["path"]).is_relative_to(models.artifacts)
    assert cmp["reg_model"]["file_count"] >= 8 and cmp["reg_model"]["local_path"]["hash"]
    assert r["Result"]["exit_code"] == 0


def test_version_stage_and_alias_resolution(models: Models, tmp_path: Path):
    client = make_client(models.url)
    expected = {"1": "1", "3": "3", "@champion": "1", "champion": "1", "Staging": "3", "staging": "3",
                "PRODUCTION": "2"}
    assert {spec: resolve_version(client, models.nested, spec).version for spec in expected} == expected
    # The same through the CLI, with an alias, and a YAML report.
    report = tmp_path / "check.yaml"
    p = _check(["--model", models.nested, "--version-or-stage", "@champion", "--report-file", str(report)],
               models.url)
    assert p.returncode == 0, p.stdout + p.stderr
    assert yaml.safe_load(report.read_text())["Version"]["_version"] == "1"


def test_every_error_exits_2_with_its_message(models: Models, tmp_path: Path):
    closed = f"http://127.0.0.1:{free_port()}"
    # A server that takes the connection and never answers: must end, not hang.
    silent = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    silent.bind(("127.0.0.1", 0))
    silent.listen(8)
    hanging = f"http://127.0.0.1:{silent.getsockname()[1]}"
    cases = {
        "unknown model": (["--model", "core-no-such-model", "--version-or-stage", "1"], models.url,
                          "registered model 'core-no-such-model' not found"),
        "unknown version": (["--model", models.nested, "--version-or-stage", "99"], models.url,
                            f"model '{models.nested}' has no version 99"),
        "empty stage": (["--model", models.nested, "--version-or-stage", "archived"], models.url,
                        "has no version in stage 'Archived'"),
        "unknown @alias": (["--model", models.nested, "--version-or-stage", "@nope"], models.url,
                           "has no alias 'nope'"),
        "unknown alias word": (["--model", models.nested, "--version-or-stage", "challenger"], models.url,
                               "has no alias 'challenger'"),
        "server down": (["--model", models.nested, "--version-or-stage", "1"], closed, "unreachable"),
        "server hangs": (["--model", models.nested, "--version-or-stage", "1"], hanging, "no answer within"),
    }
    procs = {}
    for name, (args, url, _) in cases.items():  # all at once: each one is mostly interpreter start-up
        report = tmp_path / f"{name.replace(' ', '_').replace('@', '')}.json"
        argv = _cli("check-model-version") + args + ["--report-file", str(report)]
        procs[name] = (report, subprocess.Popen(argv, env=_env(url), stdout=subprocess.PIPE,
                                                stderr=subprocess.PIPE, text=True))
    try:
        outputs = {name: proc.communicate(timeout=CLI_TIMEOUT) for name, (_, proc) in procs.items()}
    finally:
        silent.close()
    for name, (report, proc) in procs.items():
        out, err = outputs[name]
        assert proc.returncode == 2, f"{name}: {out}{err}"
        assert cases[name][2] in err, f"{name}: {err}"
        assert "Traceback" not in err, f"{name}: {err}"
        r = json.loads(report.read_text())  # a report is written for exit 2 too
        assert r["Result"]["status"] == "ERROR" and cases[name][2] in r["Result"]["error"]
    assert json.loads((tmp_path / "server_down.json").read_text())["Result"]["transient"] is True
    # --verbose adds the traceback.
    p = _check(["--model", "core-no-such-model", "--version-or-stage", "1", "--verbose"], models.url)
    assert p.returncode == 2 and "Traceback" in p.stderr


def test_tampered_nested_file_fails_against_the_seal_tag(models: Models, tmp_path: Path):
    client = MlflowClient(models.url)
    path = Path(client.get_model_version_download_uri(models.tamper, "1"))
    assert path.is_dir()  # open-source MLflow: run model and registry model are this one folder
    client.set_model_version_tag(models.tamper, "1", TAG_MANIFEST, make_seal(path).to_compact_json())
    target = path / DEEP
    original = target.read_bytes()
    target.write_bytes(original[:-1] + bytes([original[-1] ^ 0x01]))
    try:
        report = tmp_path / "tampered.json"
        p = _check(["--model", models.tamper, "--version-or-stage", "1", "--report-file", str(report)],
                   models.url)
        assert p.returncode == 1, p.stdout + p.stderr
        assert p.stdout.startswith("FAILED") and DEEP in p.stdout
        r = json.loads(report.read_text())
        # Comparison.equals is the verdict; run vs registry alone (one storage here) is its own field.
        assert r["Comparison"]["equals"] is False and r["Comparison"]["run_vs_registry_equals"] is True
        assert r["Comparison"]["same_location"] is True
        assert r["Seal"]["source"] == f"tag {TAG_MANIFEST}"
        assert [(d["path"], d["kind"]) for d in r["Seal"]["differences"]] == [(DEEP, "changed")]
        assert r["Result"]["status"] == "FAILED" and r["equals"] is False
        # Without the seal, run vs registry alone cannot see it in open-source MLflow.
        p = _check(["--model", models.tamper, "--version-or-stage", "1", "--no-seal-tag"], models.url)
        assert p.returncode == 0, p.stdout + p.stderr
    finally:
        target.write_bytes(original)
    result = check_model_version(models.tamper, "1", tracking_uri=models.url, seal_from_tag=True)
    assert result.status == "PASSED" and result.seal_checked, result.summary
    # The verdict stands on the version's seal; without one, the manifest read now becomes its first seal.
    assert result.seal_digest == result.manifest.tree_digest and result.new_seal is None
    unsealed = check_model_version(models.tamper, "1", tracking_uri=models.url)
    assert unsealed.status == "PASSED" and not unsealed.seal_checked
    assert unsealed.new_seal == unsealed.manifest and unsealed.seal_digest == unsealed.manifest.tree_digest


def test_compare_two_versions_lists_the_changed_nested_file(models: Models, tmp_path: Path):
    config = tmp_path / "config.yaml"
    side = {"host": models.url, "model": models.nested, "native_model": "artifacts"}
    config.write_text(yaml.safe_dump({"tracking_server_01": {**side, "version_or_stage": "1"},
                                      "tracking_server_02": {**side, "version_or_stage": "production"}}))
    report = tmp_path / "compare.json"
    p = _run("compare-model-versions", ["--config-file", str(config), "--report-file", str(report)],
             models.url)
    assert p.returncode == 1, p.stdout + p.stderr
    nested = DEEP.removeprefix("artifacts/")
    assert nested in p.stdout
    r = json.loads(report.read_text())
    for key in ("System", "Config", "Model_Version_Summary", "Run_Model_Comparison", "Reg_Model_Comparison",
                "Comparison_Summary"):
        assert key in r
    for key in ("Run_Model_Comparison", "Reg_Model_Comparison"):
        assert r[key]["equals"] is False
        assert [(d["path"], d["kind"]) for d in r[key]["differences"]] == [(nested, "changed")]
        assert {"size_1", "size_2"} <= set(r[key]["differences"][0]["detail"])
        assert r[key]["tracking_server_1"]["hash"] != r[key]["tracking_server_2"]["hash"]
    assert r["Comparison_Summary"] == {"run_model": False, "reg_model": False}
    # v1 and v3 share one logged model: identical.
    same = compare_model_versions({"tracking_server_1": {**side, "version_or_stage": "1"},
                                   "tracking_server_2": {**side, "version_or_stage": "3"}}, skip_reg=True)
    assert same.status == "PASSED" and same.report["Reg_Model_Comparison"]["skipped"] is True, same.summary


def test_compare_across_two_servers_with_native_model(models: Models, url_2: str, tmp_path: Path):
    config = tmp_path / "config.json"
    side = {"model": models.native, "version_or_stage": "1", "native_model": NATIVE}
    config.write_text(json.dumps({"tracking_server_1": {**side, "host": models.url},
                                  "tracking_server_2": {**side, "host": url_2}}))
    report = tmp_path / "compare.yaml"
    p = _run("compare-model-versions", ["--config-file", str(config), "--report-file", str(report)],
             models.url)
    assert p.returncode == 0, p.stdout + p.stderr
    r = yaml.safe_load(report.read_text())
    assert r["Comparison_Summary"] == {"run_model": True, "reg_model": True}
    s1, s2 = r["Reg_Model_Comparison"]["tracking_server_1"], r["Reg_Model_Comparison"]["tracking_server_2"]
    assert s1["path"].endswith(NATIVE) and s1["hash"] == s2["hash"] and s1["path"] != s2["path"]
    # Whole trees differ across servers (MLmodel records run id, time, model id): that is listed.
    whole_side = {**side, "native_model": None}
    whole = compare_model_versions({"tracking_server_1": {**whole_side, "host": models.url},
                                    "tracking_server_2": {**whole_side, "host": url_2}}, skip_run=True)
    assert whole.status == "FAILED" and "MLmodel" in {d.path for d in whole.reg_differences}


def test_http_store_is_streamed_without_scratch_copies_and_kept_on_request(models: Models, url_http: str,
                                                                           tmp_path: Path):
    scratch = tmp_path / "scratch"
    report = tmp_path / "check.json"
    p = _check(["--model", models.native, "--version-or-stage", "1", "--download-dir", str(scratch),
                "--report-file", str(report)], url_http)
    assert p.returncode == 0, p.stdout + p.stderr
    r = json.loads(report.read_text())
    assert r["Version"]["download_uri"].startswith("mlflow-artifacts:")
    reg = r["Comparison"]["reg_model"]
    assert reg["downloaded"] is True
    assert reg["local_path"]["path"].startswith("mlflow-artifacts:")  # streamed: no local copy
    assert reg["transfer"]["streamed"] is True and reg["transfer"]["peak_scratch_bytes"] == 0
    assert reg["file_count"] >= 4
    assert list(scratch.iterdir()) == []  # nothing written
    kept = check_model_version(models.native, "1", tracking_uri=url_http, download_dir=scratch,
                               keep_downloads=True)
    assert kept.status == "PASSED", kept.summary
    left = list(scratch.iterdir())
    assert len(left) == 1 and any(p.name == "model.bin" for p in left[0].rglob("*"))
    # Across an HTTP-only server and a local one, the native model is the same file.
    side = {"model": models.native, "version_or_stage": "1", "native_model": NATIVE}
    res = compare_model_versions({"tracking_server_1": {**side, "host": url_http},
                                  "tracking_server_2": {**side, "host": models.url}}, download_dir=scratch)
    assert res.status == "PASSED", res.summary


def test_models_uri_download_adds_registered_model_meta_which_is_ignored(models: Models, tmp_path: Path):
    client = MlflowClient(models.url)
    local = Path(client.get_model_version_download_uri(models.nested, "1"))
    # MLflow's own download of a models:/ URI (it resolves those against the global registry).
    with _tracking(models.url):
        got = Path(mlflow.artifacts.download_artifacts(f"models:/{models.nested}/1", dst_path=str(tmp_path)))
    assert (got / "registered_model_meta").is_file()  # what MLflow adds to models:/ downloads
    cmp = compare_trees(local, got)
    assert cmp.equal, [d.describe() for d in cmp.differences]
    assert cmp.ignored == ["registered_model_meta"] and cmp.right.ignored == ["registered_model_meta"]
    # Our fetch resolves models:/ URIs against the server it is given, and reads local storage in place.
    for uri in (f"models:/{models.nested}/1", f"models:/{models.nested}@champion",
                f"models:/{models.nested}/staging/artifacts"):
        with materialize(uri, tracking_uri=models.url, registry_uri=models.url) as path:
            assert path.is_relative_to(models.artifacts), (uri, path)
            assert path.exists()


def test_library_errors_are_typed(models: Models):
    client = make_client(models.url)
    with pytest.raises(NotFoundError, match="no version in stage 'None'"):
        resolve_version(client, models.nested, None)
    report: dict = {}
    with pytest.raises(NotFoundError, match="core-no-such-model"):
        check_model_version("core-no-such-model", "1", tracking_uri=models.url, report=report)
    assert report["Options"]["model_name"] == "core-no-such-model"  # what was known, for the CLI's report
