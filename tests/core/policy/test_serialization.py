"""``serialization`` and ``scan`` on real models logged on a real ``mlflow server``.

The malicious pickle is written opcode by opcode and never loaded: the canary file its reduce
would create must not appear.
"""

from __future__ import annotations

import operator
import pickle
from pathlib import Path

import pytest

from core.check import check_model_version
from tests.core.policy.conftest import checks, policy
from tests.core.policy.test_formats import evil_pickle

DENY_PICKLE = policy("default:\n  serialization:\n"
                     "    {deny: [pickle], scan: true, skops_trusted: [sklearn.*, numpy.*]}\n")


def test_a_cloudpickled_sklearn_model_fails_deny_pickle_naming_the_file(registry, iris):
    from sklearn.linear_model import LogisticRegression

    name = registry.name("cloudpickled")
    model = LogisticRegression(max_iter=300).fit(*iris)
    version = registry.log_sklearn(name, model, serialization_format="cloudpickle")
    result = check_model_version(name, version, tracking_uri=registry.url, policy=DENY_PICKLE)
    assert result.status == "FAILED" and result.exit_code == 1
    # The files are intact: the comparison passes, the policy does not, and they are reported apart.
    assert result.report["Comparison"]["run_vs_registry_equals"] is True
    ser = checks(result)["serialization"]
    assert ser["status"] == "FAIL" and "model.pkl" in ser["reason"] and "pickle" in ser["reason"], ser
    assert result.policy.status == "FAIL" and result.report["policy"]["status"] == "FAIL"
    assert "policy FAIL (serialization: model.pkl" in result.summary


def test_a_skops_model_passes_deny_pickle_and_fails_outside_skops_trusted(registry, iris):
    import skops.io
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import FunctionTransformer

    name = registry.name("skops")
    plain = registry.log_sklearn(name, LogisticRegression(max_iter=300).fit(*iris),
                                 serialization_format="skops")
    result = check_model_version(name, plain, tracking_uri=registry.url, policy=DENY_PICKLE)
    assert result.status == "PASSED", result.report["policy"]
    assert checks(result)["serialization"]["status"] == "PASS"
    assert "skops" in checks(result)["serialization"]["reason"]

    # A pipeline whose loading needs a type outside sklearn.* / numpy.*: MLflow records it as trusted.
    pipe = make_pipeline(FunctionTransformer(operator.neg), LogisticRegression(max_iter=300)).fit(*iris)
    untrusted = skops.io.get_untrusted_types(data=skops.io.dumps(pipe))
    outside = [t for t in untrusted if not t.startswith(("sklearn.", "numpy."))]
    assert outside, untrusted
    trusting = registry.log_sklearn(name, pipe, serialization_format="skops", skops_trusted_types=untrusted)
    result = check_model_version(name, trusting, tracking_uri=registry.url, policy=DENY_PICKLE)
    assert result.status == "FAILED"
    ser = checks(result)["serialization"]
    assert ser["status"] == "FAIL" and outside[0] in ser["reason"] and "skops_trusted" in ser["reason"], ser


def test_a_pickle_renamed_safetensors_is_a_pickle(registry):
    name = registry.name("renamed")
    version = registry.log_code_model(name, artifacts={
        "weights.safetensors": pickle.dumps({"w": [0.5] * 64}, protocol=4)})
    result = check_model_version(name, version, tracking_uri=registry.url, policy=DENY_PICKLE)
    assert result.status == "FAILED"
    reason = checks(result)["serialization"]["reason"]
    assert "artifacts/weights.safetensors: pickle (protocol 4) is denied" in reason
    assert "named safetensors but the content is pickle" in reason


@pytest.mark.parametrize("where", ["registry", "http_registry"])
def test_a_reduce_calling_os_system_fails_the_scan_where_pickle_is_allowed(where, request, tmp_path: Path):
    reg = request.getfixturevalue(where)
    canary = tmp_path / "canary"
    name = reg.name("evil")
    version = reg.log_code_model(name, artifacts={"helper.pkl": evil_pickle(f"touch {canary}")})
    allowed = policy("default:\n  serialization: {deny: [], scan: true}\n")
    result = check_model_version(name, version, tracking_uri=reg.url, policy=allowed)
    assert result.status == "FAILED"
    scan = checks(result)["scan"]
    assert scan["status"] == "FAIL", scan
    assert "artifacts/helper.pkl" in scan["reason"] and "os.system" in scan["reason"]
    assert checks(result)["serialization"]["status"] == "PASS"  # pickle is allowed: the scan alone fails it
    assert not canary.exists()


def test_a_pickle_free_model_streamed_over_http_passes_every_static_check(http_registry):
    name = http_registry.name("clean")
    version = http_registry.log_code_model(name, artifacts={"weights.safetensors": _safetensors()},
                                           input_example={"x": [1.0, 2.0]})
    full = policy("default:\n  mlmodel: required\n  signature: required\n  input_example: required\n"
                  "  serialization: {deny: [pickle, compressed, unknown], scan: true}\n"
                  "  requirements: {pins: exact, forbid: [index-url, vcs, local-path, url]}\n"
                  "  limits: {max_total_bytes: 1MiB, max_files: 20}\n")
    result = check_model_version(name, version, tracking_uri=http_registry.url, policy=full)
    assert result.status == "PASSED", result.report["policy"]
    assert result.report["Comparison"]["reg_model"]["downloaded"] is True
    got = checks(result)
    assert [c for c, v in got.items() if v["status"] != "PASS"] == []
    assert set(got) == {"mlmodel", "signature", "input_example", "serialization", "scan", "requirements",
                        "limits"}
    assert "1 safetensors" in got["serialization"]["reason"]


def _safetensors() -> bytes:
    import json
    import struct

    header = json.dumps({"w": {"dtype": "F32", "shape": [2], "data_offsets": [0, 8]}}).encode()
    return struct.pack("<Q", len(header)) + header + b"\0" * 8
