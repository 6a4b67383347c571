"""Formats by content, the zip walk, and the inspector fed by the comparison's own read of a tree.

Pickles here are written by ``pickle.dumps`` of plain data or by hand; none is ever loaded.
"""

from __future__ import annotations

import io
import json
import pickle
import struct
import zipfile
from pathlib import Path

import numpy as np
import pytest

from core.compare.tree import scan_tree
from core.policy.evaluate import prepare
from core.policy.formats import sniff
from core.policy.inspect import ModelInspector
from core.policy.loader import EffectivePolicy
from core.policy.scanner import MALICIOUS
from core.policy.zipwalk import ZipWalker

# REDUCE of os.system("touch CANARY"): what loading it would run, written opcode by opcode.
EVIL = b"\x80\x02cos\nsystem\nq\x00X%s%sq\x01\x85q\x02Rq\x03."


def evil_pickle(command: str) -> bytes:
    """A protocol-2 pickle whose reduce calls ``os.system(command)`` (written by hand, never loaded)."""
    arg = command.encode()
    return EVIL % (struct.pack("<I", len(arg)), arg)


def _safetensors() -> bytes:
    header = json.dumps({"w": {"dtype": "F32", "shape": [2], "data_offsets": [0, 8]}}).encode()
    return struct.pack("<Q", len(header)) + header + b"\0" * 8


def _npy(arr: np.ndarray) -> bytes:
    buf = io.BytesIO()
    np.save(buf, arr, allow_pickle=True)
    return buf.getvalue()


@pytest.mark.parametrize("protocol", range(0, 6))
def test_pickles_of_every_protocol_are_pickles(protocol):
    data = pickle.dumps({"weights": [1.0, 2.0], "name": "m"}, protocol=protocol)
    assert sniff(data[:4096], "model.bin", len(data)).family == "pickle"


@pytest.mark.parametrize(("data", "name", "family"), [
    (_safetensors(), "w.safetensors", "safetensors"),
    (pickle.dumps([1, 2, 3], protocol=4), "weights.safetensors", "pickle"),  # the name is never trusted
    (_npy(np.zeros(4)), "a.npy", "numpy"),
    (_npy(np.array([{"a": 1}], dtype=object)), "a.npy", "pickle"),  # object arrays hold a pickle
    (b"\x89HDF\r\n\x1a\n" + b"\0" * 100, "model.h5", "hdf5"),
    (b"\x1f\x8b\x08\x00" + b"\0" * 20, "model.joblib", "compressed"),
    (b"flavors:\n  python_function: {}\n", "MLmodel", "text"),
    # Header-less, no STOP: a loader would still import and call before it broke.
    (b"cos\nsystem\n(S'touch x'\ntR", "notes.txt", "pickle"),
    (pickle.dumps(b"x" * 100_000, protocol=4), "w.bin", "pickle"),  # an argument longer than the prefix
    (b"channels:\n- conda-forge\ndependencies:\n- python=3.11\n", "conda.yaml", "text"),
    (b"\x08\x07\x12\x07pytorch\x1a\x032.0", "model.onnx", "onnx"),
    (bytes(range(256)) * 4, "blob.bin", "unknown"),
])
def test_formats_by_content(data, name, family):
    assert sniff(data[:4096], name, len(data)).family == family


def _zip(members: dict[str, bytes], method=zipfile.ZIP_STORED) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", method) as z:
        for name, data in members.items():
            z.writestr(name, data)
    return buf.getvalue()


@pytest.mark.parametrize("method", [zipfile.ZIP_STORED, zipfile.ZIP_DEFLATED])
def test_the_zip_walk_reads_members_in_one_pass_in_small_chunks(method):
    data = _zip({"archive/data.pkl": evil_pickle("true"), "archive/data/0": b"\0" * 5000,
                 "archive/version": b"3\n"}, method)
    walker = ZipWalker(lambda n: n.endswith(".pkl"), lambda n: True)
    for i in range(0, len(data), 7):
        walker.feed(data[i:i + 7])
    assert walker.members == ["archive/data.pkl", "archive/data/0", "archive/version"]
    assert walker.kept == {"archive/data.pkl": evil_pickle("true")}


def test_a_member_beyond_the_memory_bound_is_incomplete_not_clean():
    data = _zip({"big/data.pkl": pickle.dumps(list(range(10000)), protocol=4)})
    walker = ZipWalker(lambda n: True, lambda n: False)
    walker.feed(data)
    assert walker.incomplete == ["big/data.pkl"] and walker.kept == {}


def _tree(root: Path, files: dict[str, bytes]) -> Path:
    for rel, data in files.items():
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_bytes(data)
    return root


def test_the_inspector_sees_formats_scans_and_texts_in_the_hashing_read(tmp_path: Path):
    canary = tmp_path / "canary"
    root = _tree(tmp_path / "model", {
        "MLmodel": b"flavors: {}\n",
        "requirements.txt": b"mlflow==3.17.2\n",
        "artifacts/weights.safetensors": pickle.dumps([1.0] * 100, protocol=4),
        "artifacts/evil.pkl": evil_pickle(f"touch {canary}"),
        "artifacts/model.pt": _zip({"model/data.pkl": evil_pickle(f"touch {canary}"), "model/version": b"3"}),
        "artifacts/real.safetensors": _safetensors(),
    })
    inspector = ModelInspector(formats=True, scan=True, texts=frozenset({"MLmodel", "requirements.txt"}))
    plain = scan_tree(root)
    observed = scan_tree(root, observe=inspector)
    assert observed.manifest.tree_digest == plain.manifest.tree_digest  # the hook changes nothing read
    facts = inspector.facts
    assert facts["artifacts/weights.safetensors"].format.family == "pickle"
    assert facts["artifacts/real.safetensors"].format.family == "safetensors"
    assert facts["artifacts/model.pt"].format.describe() == "pickle (PyTorch zip)"
    evil = dict(facts["artifacts/evil.pkl"].scans)["artifacts/evil.pkl"]
    assert evil.verdict == MALICIOUS and "os.system" in evil.dangerous
    inner = dict(facts["artifacts/model.pt"].scans)["artifacts/model.pt:model/data.pkl"]
    assert inner.verdict == MALICIOUS
    assert inspector.texts == {"MLmodel": b"flavors: {}\n", "requirements.txt": b"mlflow==3.17.2\n"}
    assert inspector.budget.used == 0  # every byte kept for a scan was given back
    assert not canary.exists()


def test_the_same_with_several_hashing_threads(tmp_path: Path):
    root = _tree(tmp_path / "model", {f"p{i}.pkl": evil_pickle("true") for i in range(8)})
    inspector = ModelInspector(formats=True, scan=True)
    scan_tree(root, workers=4, observe=inspector)
    assert sorted(inspector.facts) == [f"p{i}.pkl" for i in range(8)]
    assert all(f.scans[0][1].verdict == MALICIOUS for f in inspector.facts.values())


def test_a_pickle_larger_than_the_bound_is_scanned_in_part_and_says_so(tmp_path: Path):
    root = _tree(tmp_path / "model", {"big.pkl": pickle.dumps(list(range(200000)), protocol=4)})
    inspector = ModelInspector(formats=True, scan=True, budget=64 << 10)
    scan_tree(root, observe=inspector)
    (where, finding), = inspector.facts["big.pkl"].scans
    assert finding.verdict == "inconclusive" and "memory bound" in finding.note


def test_a_policy_that_needs_no_file_does_not_observe_the_read():
    assert prepare(EffectivePolicy({"metadata": {"required_tags": ["owner"]}})).observe is None
    assert prepare(EffectivePolicy({"limits": {"max_files": 3}})).observe is None
    reqs = prepare(EffectivePolicy({"requirements": {"pins": "exact"}})).observe
    assert reqs("model.bin", 10) is None and reqs("requirements.txt", 10) is not None


def test_the_zip_walk_reads_zip64_members():
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as z:
        with z.open("archive/data.pkl", "w", force_zip64=True) as f:
            f.write(evil_pickle("true"))
        z.writestr("archive/version", b"3\n")
    walker = ZipWalker(lambda n: n.endswith(".pkl"), lambda n: True)
    walker.feed(buf.getvalue())
    assert walker.members == ["archive/data.pkl", "archive/version"] and not walker.stopped
    assert walker.kept == {"archive/data.pkl": evil_pickle("true")}


def test_a_restarted_read_gives_back_what_the_broken_attempt_kept():
    inspector = ModelInspector(formats=True, scan=True)
    data = pickle.dumps(list(range(50000)), protocol=4)
    broken = inspector("model.pkl", len(data))
    broken.feed(data[:len(data) // 2])  # the transfer breaks here: never closed
    assert inspector.budget.used > 0
    again = inspector("model.pkl", len(data))
    assert again.feed(data) is True
    again.close()
    assert inspector.budget.used == 0 and inspector.facts["model.pkl"].format.family == "pickle"
