"""Tree comparison on real folders: every difference kind, no server needed."""

from __future__ import annotations

import hashlib
import os
import shutil
from pathlib import Path

import pytest

from core.compare.tree import CHUNK_SIZE, compare_trees, scan_tree
from core.errors import CheckError


def _model(root: Path) -> Path:
    """A small model tree: top-level files, a nested folder three levels deep, a bigger file."""
    (root / "data" / "layer1" / "layer2").mkdir(parents=True)
    (root / "MLmodel").write_text("flavors: {}\n")
    (root / "model.pkl").write_bytes(bytes(range(256)) * 40)
    (root / "data" / "vocab.txt").write_text("a\nb\nc\n")
    (root / "data" / "layer1" / "layer2" / "weights.bin").write_bytes(b"\x01\x02\x03" * 5000)
    (root / "data" / "layer1" / "notes.md").write_text("notes")
    return root


@pytest.fixture()
def pair(tmp_path: Path) -> tuple[Path, Path]:
    run = _model(tmp_path / "run")
    reg = tmp_path / "registry"
    shutil.copytree(run, reg, symlinks=True)
    return run, reg


def _kinds(cmp) -> dict[str, str]:
    return {d.path: d.kind for d in cmp.differences}


def test_identical_trees_are_equal_and_hash_alike(pair):
    run, reg = pair
    cmp = compare_trees(run, reg)
    assert cmp.equal and cmp.differences == []
    assert cmp.left.tree_digest == cmp.right.tree_digest
    assert cmp.left.file_count == 5
    assert cmp.bytes_compared == 2 * cmp.left.total_bytes
    assert not cmp.same_location


def test_one_byte_changed_three_folders_deep(pair):
    run, reg = pair
    target = reg / "data" / "layer1" / "layer2" / "weights.bin"
    content = bytearray(target.read_bytes())
    content[7777] ^= 0x01
    target.write_bytes(bytes(content))
    cmp = compare_trees(run, reg)
    assert not cmp.equal
    assert _kinds(cmp) == {"data/layer1/layer2/weights.bin": "changed"}
    detail = cmp.differences[0].detail
    assert detail["size_run"] == detail["size_registry"] == 15000
    assert detail["sha256_run"] != detail["sha256_registry"]


def test_same_size_and_mtime_but_different_content(pair):
    run, reg = pair
    a, b = run / "data" / "vocab.txt", reg / "data" / "vocab.txt"
    b.write_text("a\nB\nc\n")
    st = a.stat()
    os.utime(b, ns=(st.st_atime_ns, st.st_mtime_ns))
    assert b.stat().st_size == a.stat().st_size and b.stat().st_mtime_ns == a.stat().st_mtime_ns
    assert _kinds(compare_trees(run, reg)) == {"data/vocab.txt": "changed"}


def test_extra_and_missing_files(pair):
    run, reg = pair
    (reg / "data" / "layer1" / "extra.bin").write_bytes(b"new")
    (reg / "data" / "vocab.txt").unlink()
    cmp = compare_trees(run, reg)
    assert _kinds(cmp) == {"data/layer1/extra.bin": "only_in_registry", "data/vocab.txt": "only_in_run"}
    extra = next(d for d in cmp.differences if d.path == "data/layer1/extra.bin")
    assert extra.detail == {"type": "file", "size": 3}


def test_file_replaced_by_folder(pair):
    run, reg = pair
    (reg / "model.pkl").unlink()
    (reg / "model.pkl").mkdir()
    (reg / "model.pkl" / "part-0").write_bytes(b"12345")
    (reg / "model.pkl" / "part-1").write_bytes(b"678")
    cmp = compare_trees(run, reg)
    # Listed once at the folder, with what lies inside it, not once per file inside.
    assert _kinds(cmp) == {"model.pkl": "type_mismatch"}
    d = cmp.differences[0].detail
    assert (d["run"], d["registry"], d["files"], d["bytes"]) == ("file", "dir", 2, 8)


def test_empty_file_versus_missing_file(pair):
    run, reg = pair
    (run / "data" / "empty.txt").write_bytes(b"")
    cmp = compare_trees(run, reg)
    assert _kinds(cmp) == {"data/empty.txt": "only_in_run"}
    assert cmp.differences[0].detail == {"type": "file", "size": 0}
    (reg / "data" / "empty.txt").write_bytes(b"")
    assert compare_trees(run, reg).equal


def test_folder_only_on_one_side_is_listed_with_its_contents_counted(pair):
    run, reg = pair
    shutil.rmtree(reg / "data" / "layer1")
    cmp = compare_trees(run, reg)
    assert _kinds(cmp) == {"data/layer1": "only_in_run"}
    assert cmp.differences[0].detail == {"type": "dir", "files": 2, "bytes": 15005}


def test_empty_folder_counts(pair):
    run, reg = pair
    (reg / "data" / "empty_dir").mkdir()
    assert _kinds(compare_trees(run, reg)) == {"data/empty_dir": "only_in_registry"}


def test_symlink_is_a_type_of_its_own_and_never_followed(pair):
    run, reg = pair
    (reg / "data" / "vocab.txt").unlink()
    os.symlink("../../run/data/vocab.txt", reg / "data" / "vocab.txt")  # same content behind the link
    cmp = compare_trees(run, reg)
    assert _kinds(cmp) == {"data/vocab.txt": "type_mismatch"}
    assert cmp.differences[0].detail["registry"] == "symlink"
    # Two links with different targets differ; with the same target they are equal.
    (run / "data" / "vocab.txt").unlink()
    os.symlink("elsewhere", run / "data" / "vocab.txt")
    assert _kinds(compare_trees(run, reg)) == {"data/vocab.txt": "changed"}
    (run / "data" / "vocab.txt").unlink()
    os.symlink("../../run/data/vocab.txt", run / "data" / "vocab.txt")
    assert compare_trees(run, reg).equal


def test_special_file_is_never_reported_equal(pair):
    run, reg = pair
    os.mkfifo(run / "pipe")
    os.mkfifo(reg / "pipe")
    cmp = compare_trees(run, reg)
    assert _kinds(cmp) == {"pipe": "changed"}
    assert cmp.differences[0].detail["type"] == "special"


def test_rename_changes_tree_digest(pair):
    run, reg = pair
    (reg / "data" / "vocab.txt").rename(reg / "data" / "vocab2.txt")
    cmp = compare_trees(run, reg)
    assert cmp.left.tree_digest != cmp.right.tree_digest
    assert _kinds(cmp) == {"data/vocab.txt": "only_in_run", "data/vocab2.txt": "only_in_registry"}
    # Same bag of (size, sha256) on both sides: only the paths differ.
    assert sorted(cmp.left.files.values(), key=lambda f: f.sha256) == \
        sorted(cmp.right.files.values(), key=lambda f: f.sha256)


def test_registered_model_meta_ignored_at_top_level_only_and_named(pair):
    run, reg = pair
    (reg / "registered_model_meta").write_text("model_name: m\nmodel_version: '1'\n")
    cmp = compare_trees(run, reg)
    assert cmp.equal
    assert cmp.ignored == ["registered_model_meta"]
    assert cmp.right.ignored == ["registered_model_meta"] and cmp.left.ignored == []
    (reg / "data" / "registered_model_meta").write_text("not MLflow's, part of the model")
    assert _kinds(compare_trees(run, reg)) == {"data/registered_model_meta": "only_in_registry"}


def test_labels_name_the_sides(pair):
    run, reg = pair
    (reg / "model.pkl").unlink()
    cmp = compare_trees(run, reg, labels=("1", "2"))
    assert _kinds(cmp) == {"model.pkl": "only_in_1"}


def test_same_location_is_read_once_and_equal(pair):
    run, _ = pair
    cmp = compare_trees(run, run / ".")
    assert cmp.equal and cmp.same_location
    assert cmp.bytes_compared == cmp.left.total_bytes


def test_file_digests_are_sha256_of_the_whole_content_across_chunks(tmp_path: Path):
    root = tmp_path / "m"
    root.mkdir()
    data = os.urandom(CHUNK_SIZE * 2 + 12345)
    (root / "big.bin").write_bytes(data)
    manifest = scan_tree(root).manifest
    assert manifest.files["big.bin"].size == len(data)
    assert manifest.files["big.bin"].sha256 == hashlib.sha256(data).hexdigest()
    # A change in the last, partial chunk is found.
    other = tmp_path / "o"
    other.mkdir()
    (other / "big.bin").write_bytes(data[:-1] + bytes([data[-1] ^ 0xFF]))
    assert [d.path for d in compare_trees(root, other).differences] == ["big.bin"]


def test_single_file_roots(tmp_path: Path):
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    (tmp_path / "a" / "model.pkl").write_bytes(b"same")
    (tmp_path / "b" / "model.pkl").write_bytes(b"same")
    assert compare_trees(tmp_path / "a" / "model.pkl", tmp_path / "b" / "model.pkl").equal
    (tmp_path / "b" / "model.pkl").write_bytes(b"diff")
    cmp = compare_trees(tmp_path / "a" / "model.pkl", tmp_path / "b" / "model.pkl")
    assert _kinds(cmp) == {"model.pkl": "changed"}


def test_missing_root_is_an_error(tmp_path: Path):
    with pytest.raises(CheckError, match="does not exist"):
        compare_trees(tmp_path / "nope", tmp_path)
