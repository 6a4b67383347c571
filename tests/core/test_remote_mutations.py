"""Remote stores give the verdict and the listed paths that reading the same trees locally gives.

Each case compares the base model with one mutation of it, as two registered versions on a
tracking server whose artifacts are only reachable remotely (the artifact proxy over HTTP, or S3
on moto), and the same two trees read from local folders.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from core.compare.tree import compare_trees
from core.compare.versions import compare_model_versions
from tests.core.conftest import CASES, DEEP, Store

EXPECTED = {"identical": "PASSED", "flip": "FAILED", "extra": "FAILED", "missing": "FAILED",
            "truncated": "FAILED"}
BIN = Path(sys.executable).parent


def config(st: Store, case: str, host: str | None = None) -> dict:
    """compare-model-versions config: the base version against the case's version."""
    return {"tracking_server_1": {"host": host or st.url, "model": st.model("base"), "version_or_stage": "1"},
            "tracking_server_2": {"host": host or st.url, "model": st.model(case), "version_or_stage": "1"}}


def as_listed(diffs: list) -> list[tuple]:
    return [(d.path, d.kind, d.detail) for d in diffs]


@pytest.mark.parametrize("case", CASES)
def test_remote_verdict_and_paths_match_local(store: Store, case: str):
    res = compare_model_versions(config(store, case), skip_reg=True)
    local = compare_trees(store.local["base"], store.local[case], labels=("1", "2"))
    assert res.status == EXPECTED[case], res.summary
    assert res.status == ("PASSED" if local.equal else "FAILED")
    assert as_listed(res.run_differences) == as_listed(local.differences)
    section = res.report["Run_Model_Comparison"]
    assert section["ignored"] == local.ignored == ["registered_model_meta"]
    assert section["tracking_server_1"]["hash"] == local.left.tree_digest
    assert section["tracking_server_2"]["hash"] == local.right.tree_digest
    assert all(t["streamed"] and t["peak_scratch_bytes"] == 0 for t in section["transfer"])


def test_cli_on_remote_store_flags_the_nested_flip(store: Store, tmp_path: Path):
    cfg = tmp_path / "cfg.json"
    cfg.write_text(json.dumps(config(store, "flip")))
    report = tmp_path / "report.json"
    p = subprocess.run([str(BIN / "compare-model-versions"), "--config-file", str(cfg), "--report-file",
                        str(report), "--skip-compare-reg-models", "--transfer-concurrency", "3"],
                       capture_output=True, text=True, timeout=180)
    assert p.returncode == 1, p.stdout + p.stderr
    assert DEEP in p.stdout and p.stderr == ""  # no progress display without a terminal
    section = json.loads(report.read_text())["Run_Model_Comparison"]
    assert [d["path"] for d in section["differences"]] == [DEEP]
    assert {t["concurrency"] for t in section["transfer"]} == {3}


def test_keep_downloads_materialises_the_streamed_files(store: Store, tmp_path: Path):
    res = compare_model_versions(config(store, "identical"), skip_reg=True, keep_downloads=True,
                                 download_dir=tmp_path)
    assert res.status == "PASSED", res.summary
    kept = res.report["Options"]["kept_downloads"]
    assert len(kept) == 2
    for folder in kept:
        copy = compare_trees(store.local["identical"], Path(folder) / "download")
        assert copy.equal, [d.describe() for d in copy.differences]
