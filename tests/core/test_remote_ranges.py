"""One large file is read as concurrent byte ranges and hashed in order: exact, on the artifact proxy
and on S3; a range that breaks is fetched again, and one that keeps breaking is ERROR."""

from __future__ import annotations

import hashlib
import random
from collections.abc import Iterator
from dataclasses import dataclass

import pytest

from core.compare.fetch import FetchRequest, read_trees
from core.compare.versions import compare_model_versions
from core.errors import TransientError
from core.remote.progress import ProgressCounter
from core.remote.ranged import part_size_for
from tests.core.conftest import BUCKET, environ
from tests.support.cutting_proxy import CuttingProxy
from tests.support.procs import MlflowServer, MotoS3Server
from tests.support.recording_proxy import RecordingProxy

MIB = 1 << 20
BIG = "weights.bin"
SIZE = 24 * MIB + 12345  # six ranges at the proxy's concurrency, the last one short
FLIPPED_AT = SIZE - 100  # inside the last range


def _contents(case: str) -> dict[str, bytes]:
    big = bytearray(random.Random(20261206).randbytes(SIZE))
    if case == "flip":
        big[FLIPPED_AT] ^= 0x01
    if case == "sharded":  # the large file among small files in many folders, as a model's shards are
        small = {f"tokenizer/{i}/{j}/part.txt": f"{i}-{j}\n".encode() for i in range(12) for j in range(5)}
        return {"MLmodel": b"flavors: {}\n", f"data/{BIG}": bytes(big), **small}
    return {"MLmodel": b"flavors: {}\n", BIG: bytes(big)}


@dataclass
class BigStore:
    """A tracking server whose models ``big-base``, ``big-copy`` and ``big-flip`` each hold one large file."""

    kind: str
    url: str
    port: int
    env: dict[str, str]


def _register(url: str, env: dict[str, str], write) -> None:
    from mlflow import MlflowClient

    with environ(env):
        client = MlflowClient(url, url)
        exp = client.create_experiment("big")
        for name, case in (("big-base", "base"), ("big-copy", "base"), ("big-flip", "flip"),
                           ("big-sharded", "sharded")):
            run = client.create_run(exp).info
            source = run.artifact_uri.rstrip("/") + "/model"
            write(source, _contents(case))
            client.create_registered_model(name)
            client.create_model_version(name, source=source, run_id=run.run_id)


@pytest.fixture(scope="module")
def big_proxy(mlflow_server_http: MlflowServer) -> BigStore:
    def write(uri: str, files: dict[str, bytes]) -> None:
        folder = mlflow_server_http.artifacts / uri.split(":", 1)[1].lstrip("/")
        for rel, data in files.items():
            (folder / rel).parent.mkdir(parents=True, exist_ok=True)
            (folder / rel).write_bytes(data)

    _register(mlflow_server_http.url, {}, write)
    return BigStore("proxy", mlflow_server_http.url, mlflow_server_http.port, {})


@pytest.fixture(scope="module")
def big_s3(moto: MotoS3Server, tmp_path_factory: pytest.TempPathFactory) -> Iterator[BigStore]:
    import boto3

    srv = MlflowServer(tmp_path_factory.mktemp("mlflow-s3-big"), artifact_root=f"s3://{BUCKET}/big",
                       env=moto.client_env).start()
    s3 = boto3.client("s3", endpoint_url=moto.endpoint_url, aws_access_key_id="testing",
                      aws_secret_access_key="testing", region_name="us-east-1")

    def write(uri: str, files: dict[str, bytes]) -> None:
        key = uri.split("/", 3)[3]
        for rel, data in files.items():
            s3.put_object(Bucket=BUCKET, Key=f"{key}/{rel}", Body=data)

    try:
        _register(srv.url, moto.client_env, write)
        yield BigStore("s3", srv.url, moto.port, moto.client_env)
    finally:
        srv.stop()


@pytest.fixture(params=["proxy", "s3"])
def big(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> BigStore:
    st: BigStore = request.getfixturevalue(f"big_{request.param}")
    for k, v in st.env.items():
        monkeypatch.setenv(k, v)
    return st


def _config(url: str, other: str) -> dict:
    return {"tracking_server_1": {"host": url, "model": "big-base", "version_or_stage": "1"},
            "tracking_server_2": {"host": url, "model": other, "version_or_stage": "1"}}


def _through(big: BigStore, proxy, monkeypatch) -> str:
    """The tracking URI to use so that the file transfers pass through ``proxy``."""
    if big.kind == "s3":
        monkeypatch.setenv("MLFLOW_S3_ENDPOINT_URL", proxy.url)
        return big.url
    return proxy.url


def test_identical_large_files_pass_and_a_flip_in_the_last_range_fails_naming_it(big: BigStore):
    res = compare_model_versions(_config(big.url, "big-copy"), skip_reg=True)
    assert res.status == "PASSED", res.summary
    digest = res.report["Run_Model_Comparison"]["tracking_server_1"]["hash"]
    res = compare_model_versions(_config(big.url, "big-flip"), skip_reg=True)
    assert res.status == "FAILED", res.summary
    assert [(d.path, d.kind) for d in res.run_differences] == [(BIG, "changed")]
    assert BIG in res.summary
    assert res.report["Run_Model_Comparison"]["tracking_server_1"]["hash"] == digest


def test_the_large_file_is_read_in_ranges_and_hashed_in_order(big_proxy: BigStore):
    gate = RecordingProxy(big_proxy.url).start()
    try:
        with read_trees([FetchRequest("models:/big-flip/1", gate.url, gate.url)], concurrency=8) as (tree,):
            files = tree.scan.manifest.files
    finally:
        gate.stop()
    assert len([p for p in gate.ranged if p.endswith("/" + BIG)]) == -(-SIZE // part_size_for(8))
    assert not [p for p in gate.ranged if p.endswith("/MLmodel")]  # small files: one plain GET each
    # The digest is the whole file's SHA-256, its ranges hashed in order.
    assert files[BIG].sha256 == hashlib.sha256(_contents("flip")[BIG]).hexdigest()
    assert files[BIG].size == SIZE


def test_the_large_files_of_two_versions_are_both_read_in_ranges(big_proxy: BigStore):
    # Each tree is fully listed before its file is handed out, whatever the other tree's listing does.
    gate = RecordingProxy(big_proxy.url).start()
    try:
        requests = [FetchRequest(f"models:/{name}/1", gate.url, gate.url)
                    for name in ("big-base", "big-copy")]
        with read_trees(requests, concurrency=8) as trees:
            digests = {t.scan.manifest.files[BIG].sha256 for t in trees}
    finally:
        gate.stop()
    big_paths = {p for p in gate.ranged if p.endswith("/" + BIG)}
    assert len(big_paths) == 2
    for path in big_paths:
        assert gate.ranged.count(path) == -(-SIZE // part_size_for(8))
    assert digests == {hashlib.sha256(_contents("base")[BIG]).hexdigest()}


def test_a_large_file_among_many_is_read_whole_while_files_wait(big_proxy: BigStore):
    # Ranges would hold the transfer threads while the small files wait (measured: twice the time).
    gate = RecordingProxy(big_proxy.url).start()
    try:
        request = FetchRequest("models:/big-sharded/1", gate.url, gate.url)
        with read_trees([request], concurrency=8) as (tree,):
            files = tree.scan.manifest.files
    finally:
        gate.stop()
    assert gate.count("GET", next(p for _, p in gate.requests if p.endswith(f"/data/{BIG}"))) == 1
    assert not gate.ranged
    assert files[f"data/{BIG}"].sha256 == hashlib.sha256(_contents("sharded")[f"data/{BIG}"]).hexdigest()
    assert len(files) == 62


def test_a_range_cut_once_is_fetched_again_and_the_verdict_is_exact(big: BigStore, monkeypatch):
    proxy = CuttingProxy(big.port, cut_after=3 * MIB // 2, cuts=1).start()
    try:
        progress = ProgressCounter()
        res = compare_model_versions(_config(_through(big, proxy, monkeypatch), "big-flip"), skip_reg=True,
                                     progress=progress)
    finally:
        proxy.stop()
    assert proxy.cuts_made == 1 and progress.restarts >= 1
    assert res.status == "FAILED", res.summary
    assert [d.path for d in res.run_differences] == [BIG]


def test_ranges_cut_every_time_are_an_error_never_a_difference(big: BigStore, monkeypatch):
    proxy = CuttingProxy(big.port, cut_after=MIB, cuts=10_000).start()
    try:
        report: dict = {}
        with pytest.raises(TransientError, match="failed 4 times"):
            compare_model_versions(_config(_through(big, proxy, monkeypatch), "big-flip"), skip_reg=True,
                                   report=report)
    finally:
        proxy.stop()
    # Could not check: no verdict and no difference recorded, whatever the cut transfers returned.
    assert report.get("equals") is None and "Run_Model_Comparison" not in report
