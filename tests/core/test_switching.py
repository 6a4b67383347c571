"""A new user's first minutes and a user switching from the original tool, through the CLIs.

The original tool's README documents these command lines, and they are run here as written:

    compare-model-versions --config-file config.yaml --download-dir /tmp/scratch_download \
        --report-file compare_model_versions.json [--compare-run-models] [--compare-reg-models]
    check-model-version --model M --version-or-stage production --download-dir /tmp/scratch_download \
        --report-file check_model_version.json

with a config naming ``tracking_server_01`` and ``tracking_server_02`` (``host``, ``model``,
``version_or_stage``, ``native_model``). Every CLI runs as a subprocess against real ``mlflow server``
processes; the assertions read the report keys a migrating user reads.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import mlflow
import pytest
import yaml
from mlflow import MlflowClient

from core.seal.digest import make_seal
from core.tags import TAG_MANIFEST
from tests.core.test_server import CLI_TIMEOUT, _cli, _Echo, _tracking
from tests.support.procs import ManagedProcess, free_port, wait_http

NATIVE = "artifacts/model.bin"
WEIGHTS = bytes(range(256)) * 64


def _log_file_model(name: str, tmp: Path, content: bytes) -> str:
    """Log and register a pyfunc model whose native model is ``artifacts/model.bin``; returns its version."""
    tmp.mkdir(parents=True, exist_ok=True)
    (tmp / "model.bin").write_bytes(content)
    with mlflow.start_run():
        info = mlflow.pyfunc.log_model(name="model", python_model=_Echo(),
                                       artifacts={"native": str(tmp / "model.bin")},
                                       registered_model_name=name, pip_requirements=["mlflow"])
    return str(info.registered_model_version)


def _flipped(data: bytes, at: int = 1000) -> bytes:
    out = bytearray(data)
    out[at] ^= 0x01
    return bytes(out)


def _clean_env(**extra: str) -> dict[str, str]:
    """The test process's environment without MLflow server variables, plus ``extra``."""
    env = {k: v for k, v in os.environ.items() if k not in ("MLFLOW_TRACKING_URI", "MLFLOW_REGISTRY_URI")}
    env.update(extra)
    return env


def _run(name: str, args: list[str], env: dict[str, str],
         cwd: Path | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(_cli(name) + args, env=env, cwd=cwd, capture_output=True, text=True,
                          timeout=CLI_TIMEOUT)


def _original_config(path: Path, side_1: dict, side_2: dict) -> Path:
    path.write_text(yaml.safe_dump({"tracking_server_01": side_1, "tracking_server_02": side_2}))
    return path


@pytest.fixture(scope="module")
def two_servers(mlflow_server, mlflow_server_2, tmp_path_factory):
    """``mig-env`` v1 on server A and on server B, the same file but one byte flipped on B."""
    tmp = tmp_path_factory.mktemp("mig-two")
    with _tracking(mlflow_server.url):
        _log_file_model("mig-env", tmp / "a", WEIGHTS)
    with _tracking(mlflow_server_2.url):
        _log_file_model("mig-env", tmp / "b", _flipped(WEIGHTS))
    return mlflow_server, mlflow_server_2


def test_registry_uri_in_the_environment_never_replaces_a_sides_own_host(two_servers, tmp_path: Path):
    a, b = two_servers
    side = {"model": "mig-env", "version_or_stage": "1", "native_model": NATIVE}
    config = _original_config(tmp_path / "config.yaml", {**side, "host": a.url}, {**side, "host": b.url})
    report = tmp_path / "compare_model_versions.json"
    # Exported as with databricks-uc: a registry for the whole process, pointing at server A.
    env = _clean_env(MLFLOW_TRACKING_URI=a.url, MLFLOW_REGISTRY_URI=a.url)
    p = _run("compare-model-versions", ["--config-file", str(config), "--download-dir", str(tmp_path / "dl"),
                                        "--report-file", str(report), "--compare-run-models",
                                        "--compare-reg-models"], env)
    assert p.returncode == 1, p.stdout + p.stderr
    r = json.loads(report.read_text())
    assert r["equals"] is False and r["Comparison_Summary"] == {"run_model": False, "reg_model": False}
    for key in ("Run_Model_Comparison", "Reg_Model_Comparison"):
        assert r[key]["equals"] is False
        assert [(d["path"], d["kind"]) for d in r[key]["differences"]] == [("model.bin", "changed")]
        # Each side's files come from its own server's artifact store.
        assert Path(r[key]["tracking_server_1"]["path"]).is_relative_to(a.artifacts)
        assert Path(r[key]["tracking_server_2"]["path"]).is_relative_to(b.artifacts)
    summary = r["Model_Version_Summary"]
    assert summary["tracking_server_1"]["client"] == a.url and summary["tracking_server_2"]["client"] == b.url
    # The version read for side 2 is B's: its logged model is not A's.
    sources = [summary[side]["version"]["_source"] for side in ("tracking_server_1", "tracking_server_2")]
    assert sources[0] != sources[1]


@pytest.fixture(scope="module")
def one_server(mlflow_server, tmp_path_factory):
    """``mig-flags`` v1 and v2 on one server, differing in one byte of their native model."""
    tmp = tmp_path_factory.mktemp("mig-one")
    with _tracking(mlflow_server.url):
        _log_file_model("mig-flags", tmp / "1", WEIGHTS)
        _log_file_model("mig-flags", tmp / "2", _flipped(WEIGHTS, 7))
    return mlflow_server


def test_original_compare_flags_select_comparisons(one_server, tmp_path: Path):
    side = {"host": one_server.url, "model": "mig-flags", "native_model": NATIVE}
    config = _original_config(tmp_path / "config.yaml", {**side, "version_or_stage": "1"},
                              {**side, "version_or_stage": "2"})
    cases = {"run only": ["--compare-run-models"], "reg only": ["--compare-reg-models"],
             "both": ["--compare-run-models", "--compare-reg-models"], "neither (default: both)": [],
             "selected then skipped": ["--compare-run-models", "--skip-compare-run-models"]}
    procs = {}
    for name, flags in cases.items():  # all at once: each one is mostly interpreter start-up
        report = tmp_path / f"{name.split()[0]}-{len(flags)}.json"
        argv = _cli("compare-model-versions") + ["--config-file", str(config), "--download-dir",
                                                 str(tmp_path / "dl"), "--report-file", str(report), *flags]
        procs[name] = (report, subprocess.Popen(argv, env=_clean_env(), stdout=subprocess.PIPE,
                                                stderr=subprocess.PIPE, text=True))
    done = {name: (report, proc, *proc.communicate(timeout=CLI_TIMEOUT))
            for name, (report, proc) in procs.items()}
    made = {}
    for name, (report, proc, out, err) in done.items():
        r = json.loads(report.read_text())
        if name == "selected then skipped":
            assert proc.returncode == 2 and "nothing to compare" in err, out + err
            continue
        assert proc.returncode == 1, f"{name}: {out}{err}"
        made[name] = {k for k, v in r["Comparison_Summary"].items() if v is not None}
        for key, kind in (("Run_Model_Comparison", "run_model"), ("Reg_Model_Comparison", "reg_model")):
            if kind in made[name]:
                assert r[key]["equals"] is False and r[key]["differences"][0]["path"] == "model.bin"
            else:
                assert r[key] == {"equals": None, "skipped": True}
    assert made == {"run only": {"run_model"}, "reg only": {"reg_model"}, "both": {"run_model", "reg_model"},
                    "neither (default: both)": {"run_model", "reg_model"}}


def test_comparison_equals_is_false_when_the_seal_finds_a_changed_file(one_server, tmp_path: Path):
    client = MlflowClient(one_server.url)
    with _tracking(one_server.url):
        version = _log_file_model("mig-tamper", tmp_path / "m", WEIGHTS)
    path = Path(client.get_model_version_download_uri("mig-tamper", version))
    client.set_model_version_tag("mig-tamper", version, TAG_MANIFEST, make_seal(path).to_compact_json())
    (path / NATIVE).write_bytes(_flipped(WEIGHTS))
    report = tmp_path / "check_model_version.json"
    p = _run("check-model-version", ["--model", "mig-tamper", "--version-or-stage", version, "--download-dir",
                                     str(tmp_path / "dl"), "--report-file", str(report)],
             _clean_env(MLFLOW_TRACKING_URI=one_server.url))
    assert p.returncode == 1, p.stdout + p.stderr
    r = json.loads(report.read_text())
    # What a user of the original tool reads as the verdict.
    assert r["Comparison"]["equals"] is False and r["equals"] is False
    # What it meant before, under its own name: run model and registry model are the same files.
    assert r["Comparison"]["run_vs_registry_equals"] is True and r["Comparison"]["same_location"] is True
    assert r["Seal"]["equals"] is False and r["Result"]["status"] == "FAILED"


def test_no_tracking_server_given_says_so_and_creates_no_store(tmp_path: Path):
    cwd = tmp_path / "empty"
    cwd.mkdir()
    out = tmp_path / "reports"
    config = _original_config(tmp_path / "config.yaml", {"model": "m", "version_or_stage": "1"},
                              {"model": "m", "version_or_stage": "2"})
    env = _clean_env()
    dl = str(tmp_path / "dl")
    check = _run("check-model-version", ["--model", "m", "--version-or-stage", "production",
                                         "--download-dir", dl, "--report-file", str(out / "check.json")],
                 env, cwd)
    compare = _run("compare-model-versions", ["--config-file", str(config), "--download-dir", dl,
                                              "--report-file", str(out / "compare.json")], env, cwd)
    for p, report in ((check, out / "check.json"), (compare, out / "compare.json")):
        assert p.returncode == 2, p.stdout + p.stderr
        assert "no tracking server given" in p.stderr and "not found" not in p.stderr, p.stderr
        assert "no tracking server given" in json.loads(report.read_text())["Result"]["error"]
    assert list(cwd.iterdir()) == []  # no mlflow.db, no mlruns: checking never creates a store


class NotMlflow(ManagedProcess):
    """A real HTTP server that is not MLflow: JSON errors for every path, as a web service answers."""

    CODE = ("import http.server, json, sys\n"
            "class H(http.server.BaseHTTPRequestHandler):\n"
            "    def _answer(self):\n"
            "        body = json.dumps({'status': 'error', 'reason': 'no such route'}).encode()\n"
            "        code = 200 if self.path == '/ready' else 404\n"
            "        self.send_response(code); self.send_header('Content-Type', 'application/json')\n"
            "        self.send_header('Content-Length', str(len(body))); self.end_headers()\n"
            "        self.wfile.write(body)\n"
            "    do_GET = do_POST = _answer\n"
            "http.server.HTTPServer(('127.0.0.1', int(sys.argv[1])), H).serve_forever()\n")

    def __init__(self) -> None:
        self.port = free_port()
        super().__init__([sys.executable, "-c", self.CODE, str(self.port)])


def test_a_uri_that_is_not_an_mlflow_server_is_named_as_such(tmp_path: Path):
    server = NotMlflow().start()
    try:
        url = f"http://127.0.0.1:{server.port}"
        wait_http(url + "/ready", timeout=30, proc=server.proc)
        report = tmp_path / "check_model_version.json"
        p = _run("check-model-version", ["--model", "m", "--version-or-stage", "production", "--download-dir",
                                         str(tmp_path / "dl"), "--report-file", str(report)],
                 _clean_env(MLFLOW_TRACKING_URI=url))
    finally:
        server.stop()
    assert p.returncode == 2, p.stdout + p.stderr
    assert f"{url} is not an MLflow tracking server" in p.stderr, p.stderr
    assert "INTERNAL_ERROR" not in p.stderr and "Traceback" not in p.stderr
    assert "is not an MLflow tracking server" in json.loads(report.read_text())["Result"]["error"]


def test_malformed_yaml_config_prints_the_report_line(tmp_path: Path):
    config = tmp_path / "config.yaml"
    config.write_text("tracking_server_01:\n  host: [unclosed\n")
    report = tmp_path / "compare_model_versions.json"
    p = _run("compare-model-versions", ["--config-file", str(config), "--download-dir", str(tmp_path / "dl"),
                                        "--report-file", str(report)], _clean_env())
    assert p.returncode == 2 and "cannot parse config file" in p.stderr, p.stderr
    assert f"report: {report}" in p.stderr
    assert json.loads(report.read_text())["Result"]["status"] == "ERROR"


def test_version_aliases_are_a_list_in_reports(one_server, tmp_path: Path):
    client = MlflowClient(one_server.url)
    client.set_registered_model_alias("mig-flags", "champion", "1")
    client.set_registered_model_alias("mig-flags", "prod", "1")
    check_report = tmp_path / "check_model_version.yaml"
    p = _run("check-model-version", ["--model", "mig-flags", "--version-or-stage", "champion",
                                     "--download-dir", str(tmp_path / "dl"),
                                     "--report-file", str(check_report)],
             _clean_env(MLFLOW_TRACKING_URI=one_server.url))
    assert p.returncode == 0, p.stdout + p.stderr
    assert sorted(yaml.safe_load(check_report.read_text())["Version"]["_aliases"]) == ["champion", "prod"]
    side = {"host": one_server.url, "model": "mig-flags", "version_or_stage": "@champion"}
    config = _original_config(tmp_path / "config.yaml", side, side)
    report = tmp_path / "compare_model_versions.json"
    p = _run("compare-model-versions", ["--config-file", str(config), "--report-file", str(report)],
             _clean_env())
    assert p.returncode == 0, p.stdout + p.stderr
    versions = json.loads(report.read_text())["Model_Version_Summary"]
    assert sorted(versions["tracking_server_2"]["version"]["_aliases"]) == ["champion", "prod"]
