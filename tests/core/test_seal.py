"""Seals (manifests), their compact JSON form, reports and compare-config parsing: no server needed."""

from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path

import pytest
import yaml

from core.check import seal_from_tags
from core.compare.versions import normalize_config
from core.errors import CheckError
from core.report import write_report
from core.seal.digest import Manifest, make_seal, tree_digest, verify_manifest, verify_seal
from core.seal.manifest import FileDigest
from core.tags import TAG_MANIFEST


def _model(root: Path) -> Path:
    (root / "a" / "b" / "c").mkdir(parents=True)
    (root / "MLmodel").write_text("flavors: {}\n")
    (root / "a" / "b" / "c" / "deep.bin").write_bytes(b"\x00" * 4096)
    (root / "a" / "top.txt").write_text("top")
    return root


def test_seal_then_flip_a_nested_file_then_verify_lists_it(tmp_path: Path):
    model = _model(tmp_path / "m")
    sealed = Manifest.from_json(make_seal(model).to_compact_json())  # as stored in the tag
    assert verify_seal(model, sealed) == []
    deep = model / "a" / "b" / "c" / "deep.bin"
    deep.write_bytes(b"\x00" * 4095 + b"\x01")
    diffs = verify_seal(model, sealed)
    assert [(d.path, d.kind) for d in diffs] == [("a/b/c/deep.bin", "changed")]
    assert set(diffs[0].detail) >= {"size_sealed", "size_current", "sha256_sealed", "sha256_current"}
    deep.write_bytes(b"\x00" * 4096)
    assert verify_seal(model, sealed) == []


def test_seal_notices_added_and_removed_files(tmp_path: Path):
    model = _model(tmp_path / "m")
    sealed = make_seal(model)
    (model / "a" / "top.txt").unlink()
    (model / "a" / "b" / "new.txt").write_text("new")
    kinds = {d.path: d.kind for d in verify_seal(model, sealed)}
    assert kinds == {"a/top.txt": "only_in_sealed", "a/b/new.txt": "only_in_current"}


def test_tree_digest_is_sha256_over_sorted_path_digest_pairs():
    files = {"b/x": FileDigest(1, "11" * 32), "a": FileDigest(2, "22" * 32)}
    expected = hashlib.sha256(b"a\0" + b"22" * 32 + b"\nb/x\0" + b"11" * 32 + b"\n").hexdigest()
    assert tree_digest(files) == expected
    assert Manifest.build(files).tree_digest == expected
    renamed = {"b/y": files["b/x"], "a": files["a"]}
    assert tree_digest(renamed) != expected


def test_compact_json_round_trip_and_limit(tmp_path: Path):
    model = _model(tmp_path / "m")
    m = make_seal(model)
    text = m.to_compact_json()
    assert " " not in text and len(text) < 100_000
    back = Manifest.from_json(text)
    assert back.files == m.files and back.tree_digest == m.tree_digest and back.dirs == m.dirs
    assert verify_manifest(back, m) == []


def _many_files(n: int) -> Manifest:
    return Manifest.build({f"folder_{i // 100}/file_with_a_long_name_{i:06d}.bin":
                           FileDigest(i, hashlib.sha256(str(i).encode()).hexdigest()) for i in range(n)})


def test_compact_json_above_the_tag_limit_keeps_the_digest_and_says_so():
    big = _many_files(2000)
    text = big.to_compact_json()
    assert len(text) <= 100_000
    d = json.loads(text)
    assert d["truncated"] is True and d["tree_digest"] == big.tree_digest and "files" not in d
    assert d["file_count"] == 2000
    sealed = Manifest.from_json(text)
    assert sealed.truncated and sealed.file_count == 2000
    # A digest-only seal still proves "unchanged" and still catches a change, without naming files.
    assert verify_manifest(big, sealed) == []
    changed = _many_files(2000)
    changed.files["folder_0/file_with_a_long_name_000001.bin"] = FileDigest(1, "0" * 64)
    changed = Manifest.build(changed.files)
    diffs = verify_manifest(changed, sealed)
    assert len(diffs) == 1 and diffs[0].path == "." and "digest-only" in diffs[0].detail["note"]
    # Just under the limit the full manifest is kept.
    small = _many_files(100)
    assert "files" in json.loads(small.to_compact_json(limit=len(small.to_compact_json())))
    assert json.loads(small.to_compact_json(limit=len(small.to_compact_json()) - 1))["truncated"] is True


def test_tampered_manifest_json_is_rejected(tmp_path: Path):
    d = json.loads(make_seal(_model(tmp_path / "m")).to_compact_json())
    d["files"]["MLmodel"][1] = "0" * 64  # edited entry, stale digest
    with pytest.raises(ValueError, match="inconsistent"):
        Manifest.from_dict(d)
    with pytest.raises(CheckError, match=TAG_MANIFEST):
        seal_from_tags({TAG_MANIFEST: json.dumps(d)})
    assert seal_from_tags({}) is None


def test_seal_ignores_registered_model_meta(tmp_path: Path):
    model = _model(tmp_path / "m")
    copy = tmp_path / "download"
    shutil.copytree(model, copy)
    (copy / "registered_model_meta").write_text("model_name: m\n")
    sealed = make_seal(model)
    assert verify_seal(copy, sealed) == []
    assert make_seal(copy).ignored == ["registered_model_meta"]


@pytest.mark.parametrize("name", ["report.json", "report.yaml", "sub/report.yml"])
def test_write_report_json_or_yaml_by_extension(tmp_path: Path, name: str):
    report = {"System": {"script": "x"}, "Comparison": {"equals": False, "differences": [{"path": "a"}]}}
    path = tmp_path / name
    write_report(report, path)
    text = path.read_text()
    loaded = json.loads(text) if name.endswith(".json") else yaml.safe_load(text)
    assert loaded == report
    assert text.lstrip().startswith("{") == name.endswith(".json")


def test_compare_config_accepts_both_key_spellings_and_rejects_bad_ones():
    side = {"host": "http://h:1", "model": "m", "version_or_stage": 3, "native_model": "model.pkl"}
    cfg = normalize_config({"tracking_server_01": side, "tracking_server_02": {**side, "registry_uri": "r"}})
    assert cfg["tracking_server_1"]["version_or_stage"] == "3"
    assert cfg["tracking_server_2"]["registry_uri"] == "r"
    with pytest.raises(CheckError, match="tracking_server_2"):
        normalize_config({"tracking_server_1": side})
    with pytest.raises(CheckError, match="needs 'model'"):
        normalize_config({"tracking_server_1": side, "tracking_server_2": {"version_or_stage": "1"}})
    with pytest.raises(CheckError, match="keep one"):
        normalize_config({"tracking_server_1": side, "tracking_server_01": side, "tracking_server_2": side})
    with pytest.raises(CheckError, match="relative path"):
        normalize_config({"tracking_server_1": side, "tracking_server_2": {**side, "native_model": "../x"}})
