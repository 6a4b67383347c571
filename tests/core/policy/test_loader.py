"""The policy loader: every broken file is one line naming the file, the line and the key; merging
``default`` < ``models`` (first matching glob) < ``stages`` / ``aliases``."""

from __future__ import annotations

from pathlib import Path

import pytest

from core.policy.loader import PolicyError, deep_merge, load_policy, parse_policy, parse_size

FULL = """\
version: 1
default:
  signature: required
  input_example: warn
  serialization:
    deny: [pickle]
    scan: true
    skops_trusted: [sklearn.*, numpy.*]
  requirements:
    pins: exact
    forbid: [index-url, vcs, local-path, url]
  limits: {max_total_bytes: 20GiB, max_files: 100000}
  metadata:
    description_min_chars: 20
    required_tags: [owner]
  metrics:
    val_f1_score: {min: 0.80, not_worse_than: "@champion", greater_is_better: true}
  load_predict:
    enabled: false
    timeout_s: 120
    memory_mb: 2048
    env_manager: local
models:
  "fraud-*": {serialization: {deny: [pickle, skops]}}
  "*": {limits: {max_files: 10}}
aliases:
  champion: {load_predict: {enabled: true}}
stages:
  Production: {load_predict: {enabled: true, timeout_s: 30}, signature: off}
"""


def test_the_documented_example_loads_and_merges_in_order():
    policy = parse_policy(FULL, "policy.yaml")
    by_number = policy.effective("fraud-detector")
    assert by_number.get("serialization") == {"deny": ["pickle", "skops"], "scan": True,
                                              "skops_trusted": ["sklearn.*", "numpy.*"]}
    assert by_number.get("load_predict")["enabled"] is False
    # Only the first matching glob applies.
    assert by_number.get("limits") == {"max_total_bytes": 20 << 30, "max_files": 100000}
    assert by_number.applied == ("default", "models.fraud-*")
    assert policy.effective("other").get("limits")["max_files"] == 10

    champion = policy.effective("fraud-detector", alias="@champion")
    assert champion.get("load_predict") == {"enabled": True, "timeout_s": 120, "memory_mb": 2048,
                                            "env_manager": "local"}
    assert policy.effective("fraud-detector", alias="challenger").get("load_predict")["enabled"] is False

    prod = policy.effective("x", stage="production")
    assert prod.get("load_predict")["timeout_s"] == 30 and "signature" not in prod
    assert "signature" in policy.effective("x", stage="Staging")


def test_a_section_not_named_is_not_checked_and_off_switches_one_off():
    policy = parse_policy("version: 1\ndefault:\n  signature: off\n  input_example: 'off'\n"
                          "  limits: {max_files: off}\n", "p.yaml")
    eff = policy.effective("m")
    assert "signature" not in eff and "input_example" not in eff and "serialization" not in eff
    assert eff.get("limits") == {"max_files": None}
    assert parse_policy("version: 1\n", "p.yaml").effective("m").sections == {}


def test_an_alias_section_can_switch_a_default_section_off():
    policy = parse_policy("version: 1\ndefault:\n  metrics: {f1: {min: 0.5}}\n"
                          "aliases:\n  dev: {metrics: off}\n", "p.yaml")
    assert "metrics" in policy.effective("m") and "metrics" not in policy.effective("m", alias="dev")


@pytest.mark.parametrize(("text", "size"), [("20GiB", 20 << 30), ("512 MiB", 512 << 20), ("1.5KiB", 1536),
                                            ("100", 100), (4096, 4096)])
def test_sizes(text, size):
    assert parse_size(text) == size


def test_deep_merge_merges_mappings_and_replaces_the_rest():
    assert deep_merge({"a": {"x": 1, "y": [1]}, "b": 1}, {"a": {"y": [2]}, "c": 3}) == {
        "a": {"x": 1, "y": [2]}, "b": 1, "c": 3}


BAD = [
    ("version: 1\ndefault:\n  serialization:\n    deny: [pickel]\n", 4, "default.serialization.deny",
     "unknown format family 'pickel'"),
    ("version: 1\ndefault:\n  signatur: required\n", 3, "default.signatur", "unknown key"),
    ("version: 1\ndefault:\n  signature: maybe\n", 3, "default.signature", "expected one of required"),
    ("version: 1\ndefault:\n  limits: {max_total_bytes: 20GB}\n", 3, "default.limits.max_total_bytes",
     "bad size '20GB'"),
    ("version: 1\ndefault:\n  serialization: {scan: 'yes please'}\n", 3, "default.serialization.scan",
     "expected true or false"),
    ("version: 1\ndefault:\n  requirements: {forbid: [ftp]}\n", 3, "default.requirements.forbid",
     "expected one of index-url"),
    ("version: 1\ndefault:\n  metrics:\n    f1: {min: high}\n", 4, "default.metrics.f1.min",
     "expected a number"),
    ("version: 1\ndefault:\n  metrics:\n    f1: {not_worse_than: champion}\n", 4,
     "default.metrics.f1.not_worse_than", "expected an alias"),
    ("version: 1\nmodels:\n  m: {load_predict: {env_manager: conda}}\n", 3,
     "models.m.load_predict.env_manager", "expected one of local"),
    ("version: 1\nstages:\n  Prod: {}\n", 3, "stages.Prod", "unknown stage"),
    ("version: 1\ndefaults: {}\n", 2, "defaults", "unknown key"),
    ("version: 2\n", 1, "version", "unsupported policy version"),
    ("default: {}\n", 1, "version", "missing"),
    ("version: 1\ndefault:\n  signature: required\n  signature: warn\n", 4, "default.signature",
     "given twice"),
    ("version: 1\ndefault: [signature]\n", 2, "default", "expected a mapping"),
]


@pytest.mark.parametrize(("text", "line", "key", "message"), BAD, ids=[b[2] + ":" + b[3] for b in BAD])
def test_each_broken_policy_is_one_line_naming_file_line_and_key(tmp_path: Path, text, line, key, message):
    path = tmp_path / "policy.yaml"
    path.write_text(text)
    with pytest.raises(PolicyError) as err:
        load_policy(path)
    text = str(err.value)
    assert "\n" not in text
    assert text.startswith(f"{path}:{line}: {key}: "), text
    assert message in text


def test_invalid_yaml_names_its_line(tmp_path: Path):
    path = tmp_path / "policy.yaml"
    path.write_text("version: 1\ndefault:\n  serialization: {deny: [pickle}\n")
    with pytest.raises(PolicyError, match=rf"^{path}:3: invalid YAML"):
        load_policy(path)


def test_empty_and_missing_files(tmp_path: Path):
    (tmp_path / "empty.yaml").write_text("")
    with pytest.raises(PolicyError, match="empty"):
        load_policy(tmp_path / "empty.yaml")
    with pytest.raises(PolicyError, match="cannot read"):
        load_policy(tmp_path / "absent.yaml")
