"""The file and metadata checks on trees read through the hashing read (no server needed)."""

from __future__ import annotations

import pickle
from pathlib import Path

import pytest

from core.compare.tree import scan_tree
from core.policy.checks_files import check_scan, check_serialization
from core.policy.checks_meta import check_limits, check_requirements, classify_requirement
from core.policy.inspect import ModelInspector
from tests.core.policy.test_formats import _safetensors, _tree, evil_pickle


def _inspect(root: Path) -> tuple[ModelInspector, list[str]]:
    inspector = ModelInspector(formats=True, scan=True, texts=frozenset({"requirements.txt"}))
    scan = scan_tree(root, observe=inspector)
    return inspector, sorted(scan.manifest.files)


def test_allow_fails_every_non_text_family_it_does_not_name(tmp_path: Path):
    root = _tree(tmp_path / "m", {"w.safetensors": _safetensors(), "blob.bin": bytes(range(256)) * 8,
                                  "README.md": b"# a model\n"})
    inspector, files = _inspect(root)
    out = check_serialization({"allow": ["safetensors"]}, inspector, files, None)
    assert out.status == "FAIL" and out.reason == "blob.bin: unknown (unrecognised binary) is not allowed"
    out = check_serialization({"allow": ["safetensors", "unknown"]}, inspector, files, None)
    assert out.status == "PASS" and out.reason == "3 files by content: 1 safetensors, 1 text, 1 unknown"


def test_a_flavor_that_declares_a_denied_format_fails_even_if_its_file_is_not_that(tmp_path: Path):
    root = _tree(tmp_path / "m", {"model.pkl": b"not really a pickle\n"})
    inspector, files = _inspect(root)
    mlmodel = {"flavors": {"sklearn": {"pickled_model": "model.pkl", "serialization_format": "cloudpickle"}}}
    out = check_serialization({"deny": ["pickle"]}, inspector, files, mlmodel)
    assert out.status == "FAIL"
    assert out.reason.startswith(
        "model.pkl: declared pickle (sklearn cloudpickle) in MLmodel, which is denied")


def test_a_disguise_warns_when_its_real_format_is_allowed(tmp_path: Path):
    root = _tree(tmp_path / "m", {"model.onnx": pickle.dumps([1, 2], protocol=4)})
    inspector, files = _inspect(root)
    out = check_serialization({"deny": []}, inspector, files, None)
    assert out.status == "WARN"
    assert out.reason == "model.onnx: named onnx but the content is pickle (protocol 4)"


def test_scan_passes_clean_data_pickles_and_fails_naming_file_and_global(tmp_path: Path):
    clean = _tree(tmp_path / "clean", {"data.pkl": pickle.dumps({"a": [1, 2.5, "x"]}, protocol=4)})
    assert check_scan(_inspect(clean)[0]).status == "PASS"
    assert check_scan(_inspect(_tree(tmp_path / "none", {"a.txt": b"x"}))[0]).reason == (
        "no pickle-family files to scan")
    evil = _tree(tmp_path / "evil", {"sub/evil.pkl": evil_pickle("true")})
    out = check_scan(_inspect(evil)[0])
    assert out.status == "FAIL" and out.reason == "sub/evil.pkl: dangerous global os.system"


@pytest.mark.parametrize(("line", "kind"), [
    ("--index-url https://pypi.example.com/simple", "index-url"),
    ("-i https://pypi.example.com/simple", "index-url"),
    ("--find-links=/wheels", "index-url"),
    ("git+https://github.com/org/repo.git@v1", "vcs"),
    ("-e git+ssh://git@github.com/org/repo.git", "vcs"),
    ("./libs/feature", "local-path"),
    ("file:///opt/wheels/x-1.0.whl", "local-path"),
    ("mylib @ https://example.com/mylib-1.0.whl", "url"),
    ("https://example.com/mylib-1.0.tar.gz", "url"),
    ("numpy==2.4.6", None),
    ("pandas>=2", None),
])
def test_requirement_kinds(line, kind):
    assert classify_requirement(line) == kind


@pytest.mark.parametrize(("text", "status", "reason"), [
    ("numpy==2.4.6\n# a comment\n\nscikit-learn[alldeps]==1.9.1 ; python_version >= '3.10'\n", "PASS",
     "requirements.txt: 2 requirement(s), all pinned with =="),
    ("numpy==2.4.6\npandas>=2,<3\n", "FAIL", "requirements.txt:2: not pinned with ==: pandas>=2,<3"),
    ("numpy==2.*\n", "FAIL", "requirements.txt:1: not pinned with ==: numpy==2.*"),
    ("numpy~=2.4\n", "FAIL", "requirements.txt:1: not pinned with ==: numpy~=2.4"),
])
def test_pins(tmp_path: Path, text, status, reason):
    root = _tree(tmp_path / "m", {"requirements.txt": text.encode()})
    inspector, files = _inspect(root)
    out = check_requirements({"pins": "exact"}, inspector, set(files))
    assert (out.status, out.reason) == (status, reason)


def test_no_requirements_file_fails(tmp_path: Path):
    inspector, files = _inspect(_tree(tmp_path / "m", {"MLmodel": b"x: 1\n"}))
    out = check_requirements({"pins": "any"}, inspector, set(files))
    assert (out.status, out.reason) == ("FAIL", "no requirements.txt in the model")


def test_limits(tmp_path: Path):
    manifest = scan_tree(_tree(tmp_path / "m", {"a": b"x" * 2048, "b": b"y"})).manifest
    assert check_limits({"max_total_bytes": 4096, "max_files": 2}, manifest).status == "PASS"
    assert check_limits({"max_files": 1}, manifest).reason == "2 files, above max_files 1"
    assert check_limits({"max_total_bytes": 1024}, manifest).status == "FAIL"
    out = check_limits({"max_file_bytes": 1024}, manifest)
    assert out.reason.startswith("a is 2.0 KiB, above max_file_bytes")
