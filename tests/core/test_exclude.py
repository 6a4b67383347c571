"""``--exclude``: the glob matching of core/compare/exclude.py,
and both CLIs leaving out what differs between two
loggings of one trained scikit-learn model (``MLmodel``, and ``model.skops``, a zip whose entries carry the
time of writing), listed as ``excluded`` in the report, never silently."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import mlflow
import pytest
import yaml
from mlflow import MlflowClient

from core.compare.exclude import is_excluded, validate_patterns
from core.compare.tree import compare_trees
from core.seal.digest import make_seal
from core.tags import TAG_MANIFEST
from tests.core.test_server import CLI_TIMEOUT, _cli, _tracking
from tests.core.test_switching import _clean_env


@pytest.mark.parametrize(("path", "patterns", "expected"), [
    ("model.skops", ["*.skops"], True),
    ("data/model.skops", ["*.skops"], False),  # '*' stays within one folder
    ("data/model.skops", ["**/*.skops"], True),
    ("model.skops", ["**/model.skops"], True),  # '**' matches no folder too
    ("a/b/c/model.skops", ["a/**/model.skops"], True),
    ("a/model.skops", ["a/**/model.skops"], True),
    ("logs/2026/run.txt", ["logs"], True),  # a folder with everything in it
    ("logs/2026/run.txt", ["logs/**"], True),
    ("logsbook.txt", ["logs"], False),
    ("MLmodel", ["MLmodel"], True),
    ("mlmodel", ["MLmodel"], False),  # case-sensitive, as model files are
    ("artifacts/w1.bin", ["artifacts/w?.bin"], True),
    ("artifacts/w12.bin", ["artifacts/w?.bin"], False),
    ("artifacts/w1.bin", ["artifacts/w[!1].bin"], False),
    ("artifacts/w2.bin", ["artifacts/w[!1].bin", "other"], True),
    ("artifacts/w2.bin", [], False),
])
def test_glob_semantics_on_relative_posix_paths(path: str, patterns: list[str], expected: bool):
    assert is_excluded(path, patterns) is expected


def test_patterns_must_stay_inside_the_model():
    for bad in ("/etc/passwd", "../x", "a/../../b", "", "  "):
        with pytest.raises(ValueError):
            validate_patterns([bad])
    assert validate_patterns(["logs/", "a\\b"]) == ["logs", "a/b"]


def test_excluded_folder_is_listed_once_and_not_compared(tmp_path: Path):
    for side, content in (("l", b"one"), ("r", b"two")):
        (tmp_path / side / "logs" / "deep").mkdir(parents=True)
        (tmp_path / side / "logs" / "deep" / "run.txt").write_bytes(content)
        (tmp_path / side / "weights.bin").write_bytes(b"same")
    assert not compare_trees(tmp_path / "l", tmp_path / "r").equal
    from core.compare.tree import comparison_from_scans, scan_trees

    left, right = scan_trees([tmp_path / "l", tmp_path / "r"], exclude=["logs"])
    cmp = comparison_from_scans(left, right, ("l", "r"), 0.0)
    assert cmp.equal and cmp.ignored == ["logs"] and cmp.left.file_count == 1


@pytest.fixture(scope="module")
def twice_logged(mlflow_server):
    """``exc-skops`` v1 and v2: the same trained scikit-learn object logged twice (skops format)."""
    from sklearn.datasets import load_iris
    from sklearn.linear_model import LogisticRegression

    features, labels = load_iris(return_X_y=True)
    model = LogisticRegression(max_iter=300).fit(features, labels)
    with _tracking(mlflow_server.url):
        for _ in range(2):
            with mlflow.start_run():
                mlflow.sklearn.log_model(model, name="model", registered_model_name="exc-skops")
    return mlflow_server


def _run(name: str, args: list[str], url: str) -> subprocess.CompletedProcess:
    return subprocess.run(_cli(name) + args, env=_clean_env(MLFLOW_TRACKING_URI=url), capture_output=True,
                          text=True, timeout=CLI_TIMEOUT)


def test_exclude_on_both_clis_and_in_the_config_is_reported(twice_logged, tmp_path: Path):
    url = twice_logged.url
    side = {"host": url, "model": "exc-skops"}
    config = tmp_path / "config.yaml"
    config.write_text(yaml.safe_dump({"tracking_server_01": {**side, "version_or_stage": "1"},
                                      "tracking_server_02": {**side, "version_or_stage": "2"}}))
    common = ["--config-file", str(config), "--download-dir", str(tmp_path / "dl"),
              "--compare-run-models", "--compare-reg-models"]
    # Byte for byte the two loggings differ: MLmodel records the run and the time, always.
    plain = _run("compare-model-versions", [*common, "--report-file", str(tmp_path / "plain.json")], url)
    assert plain.returncode == 1 and "MLmodel" in plain.stdout, plain.stdout + plain.stderr
    report = tmp_path / "compare_model_versions.json"
    p = _run("compare-model-versions", [*common, "--report-file", str(report), "--exclude", "MLmodel",
                                        "--exclude", "**/*.skops"], url)
    assert p.returncode == 0, p.stdout + p.stderr
    assert "2 path(s) excluded (MLmodel, model.skops)" in p.stdout
    r = json.loads(report.read_text())
    assert r["equals"] is True and r["Options"]["exclude"] == ["MLmodel", "**/*.skops"]
    for key in ("Run_Model_Comparison", "Reg_Model_Comparison"):
        assert r[key]["equals"] is True and r[key]["excluded"] == ["MLmodel", "model.skops"]
        assert r[key]["tracking_server_1"]["file_count"] == 3  # conda.yaml, python_env.yaml, requirements.txt
    # The same from the config file, on one side: it applies to both, or it would differ by itself.
    config.write_text(yaml.safe_dump({"tracking_server_01": {**side, "version_or_stage": "1",
                                                             "exclude": ["MLmodel", "*.skops"]},
                                      "tracking_server_02": {**side, "version_or_stage": "2"}}))
    p = _run("compare-model-versions", [*common, "--report-file", str(report)], url)
    assert p.returncode == 0, p.stdout + p.stderr
    assert json.loads(report.read_text())["Reg_Model_Comparison"]["excluded"] == ["MLmodel", "model.skops"]

    # check-model-version: excluded from both models and from the seal, and reported.
    client = MlflowClient(url)
    path = Path(client.get_model_version_download_uri("exc-skops", "2"))
    client.set_model_version_tag("exc-skops", "2", TAG_MANIFEST, make_seal(path).to_compact_json())
    skops = path / "model.skops"
    original = skops.read_bytes()
    skops.write_bytes(original + b"\0")
    try:
        check = tmp_path / "check_model_version.json"
        args = ["--model", "exc-skops", "--version-or-stage", "2", "--download-dir", str(tmp_path / "dl"),
                "--report-file", str(check)]
        p = _run("check-model-version", args, url)
        assert p.returncode == 1 and "model.skops" in p.stdout, p.stdout + p.stderr
        p = _run("check-model-version", [*args, "--exclude", "*.skops"], url)
        assert p.returncode == 0, p.stdout + p.stderr
        r = json.loads(check.read_text())
        assert r["Comparison"]["equals"] is True and r["Comparison"]["excluded"] == ["model.skops"]
        assert r["Seal"]["equals"] is True and "1 path(s) excluded" in r["Result"]["summary"]
    finally:
        skops.write_bytes(original)
