"""Remote transfers under faults: a connection cut mid-file, a store that is down, a large model."""

from __future__ import annotations

import hashlib
import time
from pathlib import Path

import pytest

from core.compare.fetch import FetchRequest, read_trees
from core.compare.tree import compare_trees, scan_tree
from core.compare.versions import compare_model_versions
from core.errors import TransientError
from core.remote.progress import ProgressCounter
from core.remote.source import RetryPolicy
from tests.core.conftest import DEEP, SHARD, Store
from tests.core.test_remote_mutations import as_listed, config
from tests.support.cutting_proxy import CuttingProxy
from tests.support.procs import MlflowServer, free_port

MIB = 1 << 20
# 512 MiB is eight times the scratch bound, enough to show it holds; bench/bench_remote.py measures 4 GiB.
LARGE_MIB = 512


def test_connection_cut_mid_file_on_the_artifact_proxy_is_retried_and_exact(
        proxy_store: Store, mlflow_server_http: MlflowServer):
    for case, status in (("identical", "PASSED"), ("flip", "FAILED")):
        proxy = CuttingProxy(mlflow_server_http.port, cut_after=MIB).start()
        try:
            progress = ProgressCounter()
            res = compare_model_versions(config(proxy_store, case, host=proxy.url), skip_reg=True,
                                         progress=progress)
        finally:
            proxy.stop()
        assert proxy.cuts_made == 1 and progress.restarts >= 1  # the fault did happen, mid-body
        assert res.status == status, res.summary
        local = compare_trees(proxy_store.local["base"], proxy_store.local[case], labels=("1", "2"))
        assert as_listed(res.run_differences) == as_listed(local.differences)
        assert progress.bytes_verified == res.report["Run_Model_Comparison"]["bytes_compared"]


def test_connection_cut_mid_object_on_s3_is_retried_and_exact(s3_store: Store, moto, monkeypatch):
    proxy = CuttingProxy(moto.port, cut_after=MIB).start()
    for k, v in {**s3_store.env, "MLFLOW_S3_ENDPOINT_URL": proxy.url}.items():
        monkeypatch.setenv(k, v)
    try:
        progress = ProgressCounter()
        res = compare_model_versions(config(s3_store, "flip"), skip_reg=True, progress=progress)
    finally:
        proxy.stop()
    assert proxy.cuts_made == 1 and progress.restarts >= 1
    assert res.status == "FAILED", res.summary
    assert [d.path for d in res.run_differences] == [DEEP]


def test_artifact_api_down_is_a_transient_error_within_the_retry_bound():
    policy = RetryPolicy()
    started = time.monotonic()
    with pytest.raises(TransientError, match=f"failed {policy.attempts} times"), read_trees(
            [FetchRequest(f"http://127.0.0.1:{free_port()}/api/2.0/mlflow-artifacts/artifacts/0/x")]):
        pass
    # Refused connections: the policy's backoffs and nothing else (a generous bound, not a speed test).
    assert time.monotonic() - started < policy.refused_bound_s() + 10


def test_s3_down_is_an_error_never_a_difference(s3_store: Store, monkeypatch):
    for k, v in {**s3_store.env, "MLFLOW_S3_ENDPOINT_URL": f"http://127.0.0.1:{free_port()}"}.items():
        monkeypatch.setenv(k, v)
    with pytest.raises(TransientError, match="failed 4 times"):
        compare_model_versions(config(s3_store, "flip"), skip_reg=True)


def test_other_schemes_go_through_mlflow_one_file_at_a_time(proxy_store: Store, tmp_path: Path):
    # runs:/ is read with MLflow's own repository: each file lands in scratch, is hashed, and is deleted.
    uri = f"runs:/{proxy_store.run_ids['base']}/tree"
    scratch = tmp_path / "scratch"
    with read_trees([FetchRequest(uri, proxy_store.url, proxy_store.url)], scratch, concurrency=2) as (tree,):
        local = scan_tree(proxy_store.local["base"])
        assert tree.scan.manifest.files == local.manifest.files
        assert tree.scan.manifest.ignored == ["registered_model_meta"]
        peak = tree.scan.transfer["peak_scratch_bytes"]
    sizes = sorted((f.size for f in local.manifest.files.values()), reverse=True)
    assert sizes[0] <= peak <= sum(sizes[:2])  # at most the two files in flight
    assert list(scratch.iterdir()) == []


def test_exclude_globs_leave_remote_paths_out_and_name_them(proxy_store: Store):
    with read_trees([FetchRequest(proxy_store.uris["flip"], proxy_store.url)],
                    exclude=["artifacts/a/b/**"]) as (tree,):
        assert tree.scan.excluded == sorted([DEEP, "artifacts/a/b/notes.txt"])
        assert DEEP not in tree.scan.manifest.files and SHARD in tree.scan.manifest.files


def _sparse(path: Path, size: int) -> str:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "wb") as f:
        f.truncate(size)
    return path.name


def test_large_model_streams_with_small_scratch(mlflow_server_http: MlflowServer, tmp_path: Path):
    # A multi-GiB model placed straight into the server's artifact folder (sparse: no disk used).
    size = LARGE_MIB * MIB
    folder = mlflow_server_http.artifacts / "large" / "model"
    _sparse(folder / "data" / "weights.bin", size)
    (folder / "MLmodel").write_text("flavors: {}\n")
    scratch = tmp_path / "scratch"
    progress = ProgressCounter()
    with read_trees([FetchRequest("mlflow-artifacts:/large/model", mlflow_server_http.url)], scratch,
                    progress=progress) as (tree,):
        assert sorted(tree.scan.manifest.files) == ["MLmodel", "data/weights.bin"]
        assert tree.scan.bytes_read == size + len("flavors: {}\n")
        assert tree.scan.transfer["peak_scratch_bytes"] <= 64 * MIB
    assert progress.bytes_verified == tree.scan.bytes_read
    assert list(scratch.iterdir()) == []
    assert tree.scan.manifest.files["data/weights.bin"].sha256 == _zeros_sha256(size)


def _zeros_sha256(size: int) -> str:
    h = hashlib.sha256()
    block = bytes(MIB)
    for _ in range(size // MIB):
        h.update(block)
    return h.hexdigest()
