"""``check-model-version --policy FILE``, run as a subprocess against a real ``mlflow server``."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest

from tests.core.policy.test_loader import BAD
from tests.core.test_server import CLI_TIMEOUT, _cli
from tests.core.test_switching import _clean_env

POLICY = """\
version: 1
default:
  serialization: {deny: [pickle], scan: true}
  requirements: {pins: exact}
aliases:
  champion: {signature: required}
"""


def _check(url: str, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run(_cli("check-model-version") + list(args), env=_clean_env(MLFLOW_TRACKING_URI=url),
                          capture_output=True, text=True, timeout=CLI_TIMEOUT)


@pytest.fixture(scope="module")
def unsigned(registry, tmp_path_factory):
    """A pickle-free model without a signature, also holding @champion; and the policy file."""
    name = registry.name("cli")
    version = registry.log_code_model(name)
    registry.client.set_registered_model_alias(name, "champion", version)
    path = tmp_path_factory.mktemp("cli-policy") / "policy.yaml"
    path.write_text(POLICY)
    return name, version, path


def test_the_policy_table_is_printed_and_reported_apart_from_the_comparison(registry, unsigned, tmp_path):
    name, version, path = unsigned
    report = tmp_path / "report.json"
    p = _check(registry.url, "--model", name, "--version-or-stage", version, "--policy", str(path),
               "--report-file", str(report))
    assert p.returncode == 0, p.stdout + p.stderr
    assert "policy: PASS" in p.stdout
    assert "  PASS  serialization  " in p.stdout and "  PASS  requirements   " in p.stdout
    r = json.loads(report.read_text())
    assert r["policy"]["status"] == "PASS" and [c["check"] for c in r["policy"]["checks"]] == [
        "serialization", "scan", "requirements"]
    assert r["Comparison"]["run_vs_registry_equals"] is True and r["Options"]["policy"] == str(path)
    assert r["equals"] is True


def test_an_alias_applies_its_section_and_a_number_does_not(registry, unsigned, tmp_path):
    name, version, path = unsigned
    report = tmp_path / "report.json"
    p = _check(registry.url, "--model", name, "--version-or-stage", "@champion", "--policy", str(path),
               "--report-file", str(report))
    assert p.returncode == 1, p.stdout + p.stderr
    assert "  FAIL  signature      MLmodel has no signature" in p.stdout
    r = json.loads(report.read_text())
    assert r["policy"]["status"] == "FAIL" and r["policy"]["applied"] == ["default", "aliases.champion"]
    assert r["equals"] is False and r["Comparison"]["equals"] is False
    assert r["Comparison"]["run_vs_registry_equals"] is True


def test_without_a_policy_there_is_no_policy_key(registry, unsigned, tmp_path):
    name, version, _ = unsigned
    report = tmp_path / "report.json"
    p = _check(registry.url, "--model", name, "--version-or-stage", version, "--report-file", str(report))
    assert p.returncode == 0 and "policy:" not in p.stdout
    assert "policy" not in json.loads(report.read_text())


@pytest.mark.parametrize(("text", "line", "key", "message"), BAD[:8], ids=[b[2] for b in BAD[:8]])
def test_a_broken_policy_exits_2_with_one_line_naming_key_and_line(registry, unsigned, tmp_path: Path,
                                                                   text, line, key, message):
    name, version, _ = unsigned
    path = tmp_path / "policy.yaml"
    path.write_text(text)
    p = _check(registry.url, "--model", name, "--version-or-stage", version, "--policy", str(path))
    assert p.returncode == 2, p.stdout + p.stderr
    assert p.stdout == ""
    lines = p.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"error: {path}:{line}: {key}: ") and message in lines[0]
