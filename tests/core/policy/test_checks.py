"""``signature``, ``requirements``, ``metrics`` and ``metadata`` on real models, real ``mlflow server``."""

from __future__ import annotations

import pytest

from core.check import check_model_version
from core.errors import CheckError
from tests.core.policy.conftest import checks, policy


@pytest.fixture(scope="module")
def signatures(registry):
    """One model without a signature (no input example, no type hints) and one with (from its example)."""
    name = registry.name("sig")
    bare = registry.log_code_model(name)
    signed = registry.log_code_model(name, input_example={"x": [1.0, 2.0]})
    return name, bare, signed


def test_signature_required_fails_without_one_and_passes_with_one(registry, signatures):
    name, bare, signed = signatures
    required = policy("default:\n  signature: required\n")
    result = check_model_version(name, bare, tracking_uri=registry.url, policy=required)
    assert result.status == "FAILED"
    assert checks(result)["signature"] == {"check": "signature", "status": "FAIL",
                                           "reason": "MLmodel has no signature"}
    result = check_model_version(name, signed, tracking_uri=registry.url, policy=required)
    assert result.status == "PASSED" and checks(result)["signature"]["status"] == "PASS"


def test_signature_warn_keeps_passed_and_shows_the_warning(registry, signatures):
    name, bare, _ = signatures
    result = check_model_version(name, bare, tracking_uri=registry.url,
                                 policy=policy("default:\n  signature: warn\n  input_example: warn\n"))
    assert result.status == "PASSED" and result.exit_code == 0
    assert result.report["policy"]["status"] == "WARN"
    assert checks(result)["signature"]["status"] == "WARN"
    # Naming signature checks MLmodel too.
    assert checks(result)["mlmodel"] == {"check": "mlmodel", "status": "PASS", "reason": (
        "MLmodel: python_function via mlflow.pyfunc.loaders.code_model, mlflow 3.17.2")}
    assert checks(result)["input_example"]["reason"] == "MLmodel records no input example"
    assert result.summary.endswith("policy WARN")


REQUIREMENTS = policy("default:\n  requirements: {pins: exact, forbid: [index-url, vcs, local-path, url]}\n")


@pytest.mark.parametrize(("line", "expected"), [
    ("--extra-index-url https://pkgs.example.com/simple", "index-url forbidden"),
    ("git+https://github.com/example/feature-lib.git", "vcs forbidden"),
    ("pandas", "not pinned with =="),
])
def test_requirements_fail_naming_the_line(registry, line, expected):
    name = registry.name("reqs")
    version = registry.log_code_model(name, pip_requirements=["numpy==2.4.6", line])
    result = check_model_version(name, version, tracking_uri=registry.url, policy=REQUIREMENTS)
    assert result.status == "FAILED"
    reason = checks(result)["requirements"]["reason"]
    # MLflow writes its own pin first: the line number is the file's.
    assert reason == f"requirements.txt:3: {expected}: {line}", reason


def test_pinned_requirements_pass(registry):
    name = registry.name("reqs-ok")
    version = registry.log_code_model(name, pip_requirements=["numpy==2.4.6", "pandas==2.3.3"])
    result = check_model_version(name, version, tracking_uri=registry.url, policy=REQUIREMENTS)
    assert result.status == "PASSED"
    assert checks(result)["requirements"]["reason"] == (
        "requirements.txt: 3 requirement(s), all pinned with ==")


CHAMPION = policy("default:\n  metrics:\n    val_f1: {min: 0.6, not_worse_than: '@champion'}\n")


def test_metrics_below_min_fail_with_both_values(registry):
    name = registry.name("low")
    version = registry.log_code_model(name, metrics={"val_f1": 0.5})
    result = check_model_version(name, version, tracking_uri=registry.url, policy=CHAMPION)
    assert result.status == "FAILED"
    assert checks(result)["metrics"]["reason"] == "val_f1 = 0.5 below min 0.6"


def test_metrics_against_the_champion(registry):
    name = registry.name("champ")
    first = registry.log_code_model(name, metrics={"val_f1": 0.85})
    # No champion yet: it passes, and says so.
    result = check_model_version(name, first, tracking_uri=registry.url, policy=CHAMPION)
    assert result.status == "PASSED"
    assert checks(result)["metrics"]["reason"] == (
        "val_f1 = 0.85; no version holds @champion, nothing to compare")
    registry.client.set_registered_model_alias(name, "champion", first)

    worse = registry.log_code_model(name, metrics={"val_f1": 0.8})
    result = check_model_version(name, worse, tracking_uri=registry.url, policy=CHAMPION)
    assert result.status == "FAILED"
    assert checks(result)["metrics"]["reason"] == (
        f"val_f1 = 0.8 worse than @champion (version {first}: 0.85)")
    better = registry.log_code_model(name, metrics={"val_f1": 0.9})
    assert check_model_version(name, better, tracking_uri=registry.url, policy=CHAMPION).status == "PASSED"

    # The event is @champion being set on the worse version: the alias already points at it, and the
    # comparison is with the version that held it before (as the caller's alias history says).
    registry.client.set_registered_model_alias(name, "champion", worse)
    result = check_model_version(name, worse, tracking_uri=registry.url, policy=CHAMPION, alias="champion",
                                 alias_event=True, previous_holder=first)
    assert result.status == "FAILED" and f"(version {first}: 0.85)" in checks(result)["metrics"]["reason"]
    result = check_model_version(name, worse, tracking_uri=registry.url, policy=CHAMPION, alias="champion",
                                 alias_event=True, previous_holder=None)
    assert result.status == "PASSED"
    assert "no version holds @champion" in checks(result)["metrics"]["reason"]
    # The alias history names a version deleted since: shown, not hidden.
    result = check_model_version(name, worse, tracking_uri=registry.url, policy=CHAMPION, alias="champion",
                                 alias_event=True, previous_holder="999")
    assert result.status == "PASSED" and checks(result)["metrics"] == {"check": "metrics", "status": "WARN",
        "reason": "val_f1 = 0.8; version 999, which held @champion, no longer exists"}
    # Not an event: the holder now is the version itself.
    result = check_model_version(name, worse, tracking_uri=registry.url, policy=CHAMPION, alias="champion")
    assert checks(result)["metrics"]["reason"] == f"val_f1 = 0.8; version {worse} holds @champion itself"


def test_a_metric_the_run_lacks_fails(registry):
    name = registry.name("nometric")
    version = registry.log_code_model(name, metrics={"accuracy": 0.9})
    result = check_model_version(name, version, tracking_uri=registry.url, policy=CHAMPION)
    assert result.status == "FAILED" and checks(result)["metrics"]["reason"] == "the run has no metric val_f1"


def test_metadata_description_and_required_tags(registry):
    name = registry.name("meta")
    version = registry.log_code_model(name)
    meta = policy("default:\n  metadata: {description_min_chars: 20, required_tags: [owner]}\n")
    result = check_model_version(name, version, tracking_uri=registry.url, policy=meta)
    assert result.status == "FAILED"
    assert checks(result)["metadata"]["reason"] == "description has 0 characters, fewer than 20"
    client = registry.client
    # The guard's own verdict section does not count as the team's description.
    guard_only = "<!-- validation:start -->PASSED, all good<!-- validation:end -->"
    client.update_model_version(name, version, guard_only)
    assert check_model_version(name, version, tracking_uri=registry.url, policy=meta).status == "FAILED"
    client.update_model_version(name, version, "Gradient-boosted fraud model, trained on November data")
    result = check_model_version(name, version, tracking_uri=registry.url, policy=meta)
    assert checks(result)["metadata"]["reason"] == "version tag(s) missing or empty: owner"
    client.set_model_version_tag(name, version, "owner", "risk-team")
    assert check_model_version(name, version, tracking_uri=registry.url, policy=meta).status == "PASSED"


def test_a_version_that_cannot_be_checked_raises_with_no_policy_verdict(registry, signatures):
    name, _, _ = signatures
    report: dict = {}
    with pytest.raises(CheckError, match="no version 999"):
        check_model_version(name, "999", tracking_uri=registry.url, report=report,
                            policy=policy("default:\n  signature: required\n"))
    assert report["policy"] is None and report["Options"]["policy"] == "policy.yaml"
