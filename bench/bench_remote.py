"""Benchmark: two model versions on remote artifact stores, against the read-and-hash floor and the original.

Stores: the tracking server's artifact proxy (``mlflow server --serve-artifacts``, versions stored as
``mlflow-artifacts:/…``) and S3 (``moto_server`` on loopback, an ``mlflow server`` with an ``s3://``
artifact root). The model is the synthetic one of ``bench_compare.py`` (default 1 GiB: 4 shards plus
3,000 small files in nested folders), two versions with separate copies. Each method runs in a fresh
process; wall time, peak RSS (``wait4``) and peak scratch disk (a poller summing the scratch folder's
allocated blocks every 50 ms) are recorded:

* ``import mlflow``  - ``python -c "import mlflow"``;
* ``floor``          - the read-and-hash floor: every file of both copies GET once, SHA-256 in the read,
                       bytes discarded, with the CLI's concurrency (bare keep-alive ``http.client``
                       connections, one per thread, for the proxy; one boto3 client for S3), file list
                       given up front. Run it alone with ``bench_remote.py _child floor-http|floor-s3 …``
                       (see ``child_floor_*``); for one large file (``--single-mib``) the floor is
                       concurrent ranged GETs of the CLI's range size at the same concurrency, hashed in
                       order (``floor-ranged-http`` / ``floor-ranged-s3``);
* ``floor + listing``- (proxy) the same bare client finding the files by listing every folder, as the
                       artifact API requires (``floor-http-listed``);
* ``cli``            - ``compare-model-versions --skip-compare-reg-models`` on the two versions;
* ``original``       - the original tool's method: ``mlflow.artifacts.download_artifacts`` of both
                       versions into scratch, ``filecmp.dircmp``, whole-file MD5 + SHA-1
                       (``bench_compare.child_baseline_download``).

``--large-mib 4096`` adds the floor and the CLI on a model of that size (proxy; second copy hard-linked,
so the disk holds one) to show scratch and memory do not grow with the model; ``--single-mib 8192`` adds
one file of that size per version (sparse on the proxy, uploaded to moto for S3) against the ranged
floor. S3 is moto's server started through ``moto_ranged.py`` (a range costs its length, as on S3).
Every row records wall and CPU time, the servers' CPU time and the load average; the ratios are CLI /
floor wall and (CLI − ``import mlflow``) / floor CPU. Results: markdown on stdout and
JSON + markdown in ``bench/out/``.

Usage::

    .venv/bin/python bench/bench_remote.py [--size-mib 1024] [--small-files 3000] [--stores proxy,s3]
        [--concurrency N] [--large-mib 4096] [--workdir DIR]
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

BENCH = Path(__file__).resolve().parent
sys.path.insert(0, str(BENCH))
sys.path.insert(0, str(BENCH.parent))

import bench_compare as bc  # noqa: E402 - the synthetic model and the process measurement are shared
from machine import machine_info  # noqa: E402

MIB = 1 << 20
BUCKET = "bench-artifacts"
DEFAULT_CONCURRENCY = {"proxy": 8, "s3": 16}  # core.remote's defaults per store kind


def _files(root: Path) -> list[tuple[str, int]]:
    files = [(p.relative_to(root).as_posix(), p.stat().st_size) for p in root.rglob("*") if p.is_file()]
    return sorted(files, key=lambda f: -f[1])


def _child_argv(method: str, *args: object) -> list[str]:
    return [sys.executable, str(Path(__file__).resolve()), "_child", method, *map(str, args)]


def _hash_pool(items: list, read_one, concurrency: int) -> dict:
    t0 = time.perf_counter()
    with ThreadPoolExecutor(max_workers=concurrency) as pool:
        total = sum(pool.map(read_one, items))
    return {"op_s": time.perf_counter() - t0, "bytes": total, "files": len(items)}


def _http_conn(local: threading.local, base: str):
    """This thread's keep-alive ``http.client`` connection to ``base``."""
    import http.client
    import urllib.parse

    if not hasattr(local, "conn"):
        u = urllib.parse.urlsplit(base)
        local.conn = http.client.HTTPConnection(u.hostname, u.port, timeout=60)
    return local.conn


def child_floor_http(base: str, prefixes: list[str], listing: Path, concurrency: int) -> dict:
    """GET every file of both copies once over bare keep-alive ``http.client`` connections (one per
    thread), SHA-256 in the read into one reused buffer per thread: a bare HTTP client's cost."""
    files = json.loads(listing.read_text())
    local = threading.local()

    paths = [f"/api/2.0/mlflow-artifacts/artifacts/{p}/{rel}" for rel, _ in files for p in prefixes]
    return _hash_pool(paths, lambda path: _get_hashed(local, base, path), concurrency)


def _get_hashed(local: threading.local, base: str, path: str) -> int:
    """GET ``path`` on this thread's connection, SHA-256 in the read into its reused buffer; the bytes."""
    conn = _http_conn(local, base)
    if not hasattr(local, "view"):
        local.view = memoryview(bytearray(MIB))
    n, h = 0, hashlib.sha256()
    conn.request("GET", path)
    r = conn.getresponse()
    if r.status != 200:
        raise RuntimeError(f"HTTP {r.status} for {path}")
    while got := r.readinto(local.view):
        h.update(local.view[:got])
        n += got
    return n


def child_floor_http_listed(base: str, prefixes: list[str], concurrency: int) -> dict:
    """As ``child_floor_http``, but finding the files as any client of the artifact proxy must: its API
    lists one folder per request, so every folder of both copies is listed, and each listing's files
    and sub-folders are requested as it arrives, on the same threads and connections."""
    import urllib.parse

    local = threading.local()
    pending: list = []
    lock = threading.Lock()

    def get(path: str) -> int:
        return _get_hashed(local, base, f"/api/2.0/mlflow-artifacts/artifacts/{path}")

    def listing(folder: str) -> int:
        conn = _http_conn(local, base)
        conn.request("GET", "/api/2.0/mlflow-artifacts/artifacts?path=" + urllib.parse.quote(folder))
        r = conn.getresponse()
        if r.status != 200:
            raise RuntimeError(f"HTTP {r.status} listing {folder}")
        for entry in json.loads(r.read()).get("files", []):
            child = f"{folder}/{entry['path']}"
            with lock:
                pending.append(pool.submit(listing if entry.get("is_dir") else get, child))
        return 0

    t0, total, files = time.perf_counter(), 0, 0
    with ThreadPoolExecutor(max_workers=concurrency) as pool:
        pending.extend(pool.submit(listing, p) for p in prefixes)
        while True:
            with lock:
                if not pending:
                    break
                future = pending.pop()
            n = future.result()
            total, files = total + n, files + (n > 0)
    return {"op_s": time.perf_counter() - t0, "bytes": total, "files": files}


def _ranged_pool(files: list[tuple[str, int]], get_range, concurrency: int, part: int) -> dict:
    """Read each (name, size) as concurrent ranges of ``part`` bytes, ``concurrency`` in flight in all,
    hashed in order; the files side by side (one hashing thread each). ``get_range(name, start, end)``."""
    t0 = time.perf_counter()
    window = threading.Semaphore(max(2, (32 * MIB) // part))  # the same buffer budget as the CLI
    with ThreadPoolExecutor(max_workers=concurrency) as pool:
        def one(item: tuple[str, int]) -> int:
            name, size = item
            h = hashlib.sha256()
            futures = []
            for start in range(0, size, part):
                # Hash what has arrived, in order, until a buffer is free (wait only with none in flight).
                while not window.acquire(blocking=not futures):
                    h.update(futures.pop(0).result())
                    window.release()
                futures.append(pool.submit(get_range, name, start, min(size, start + part) - 1))
            for f in futures:
                h.update(f.result())
                window.release()
            return size

        with ThreadPoolExecutor(max_workers=len(files)) as hashers:
            total = sum(hashers.map(one, files))
    return {"op_s": time.perf_counter() - t0, "bytes": total, "files": len(files), "part": part}


def child_floor_ranged_http(base: str, names: list[str], size: int, concurrency: int, part: int) -> dict:
    """One large file per copy: concurrent ranged GETs of ``part`` bytes (bare http.client), hashed in
    order. The CLI's range size is given, not imported: importing ``core`` would load MLflow here."""
    local = threading.local()

    def get_range(name: str, start: int, end: int) -> bytes:
        conn = _http_conn(local, base)
        conn.request("GET", f"/api/2.0/mlflow-artifacts/artifacts/{name}",
                     headers={"Range": f"bytes={start}-{end}"})
        r = conn.getresponse()
        if r.status != 206:
            raise RuntimeError(f"HTTP {r.status} for a range of {name}")
        return r.read()

    return _ranged_pool([(n, size) for n in names], get_range, concurrency, part)


def child_floor_ranged_s3(names: list[str], size: int, concurrency: int, part: int) -> dict:
    """One large object per copy: concurrent ranged get_object calls of ``part`` bytes (one boto3
    client), hashed in order."""
    s3 = _s3_client(concurrency)

    def get_range(key: str, start: int, end: int) -> bytes:
        return s3.get_object(Bucket=BUCKET, Key=key, Range=f"bytes={start}-{end}")["Body"].read()

    return _ranged_pool([(n, size) for n in names], get_range, concurrency, part)


def _s3_client(concurrency: int):
    import boto3
    from botocore.config import Config

    return boto3.client("s3", endpoint_url=os.environ["MLFLOW_S3_ENDPOINT_URL"],
                        config=Config(max_pool_connections=max(10, concurrency)))


def child_floor_s3(prefixes: list[str], listing: Path, concurrency: int) -> dict:
    """get_object every file of both copies once with one boto3 client, SHA-256 in the read."""
    files = json.loads(listing.read_text())
    s3 = _s3_client(concurrency)

    def one(key: str) -> int:
        n, h = 0, hashlib.sha256()
        body = s3.get_object(Bucket=BUCKET, Key=key)["Body"]
        while chunk := body.read(MIB):
            h.update(chunk)
            n += len(chunk)
        return n

    return _hash_pool([f"{p}/{rel}" for rel, _ in files for p in prefixes], one, concurrency)


class ScratchPoller:
    """Peak bytes allocated under a folder, sampled every 50 ms while a method runs."""

    def __init__(self, root: Path) -> None:
        self.root, self.peak, self._stop = root, 0, threading.Event()
        self._t = threading.Thread(target=self._run, daemon=True)

    def _size(self) -> int:
        total = 0
        for dirpath, _, names in os.walk(self.root):
            for n in names:
                with contextlib.suppress(OSError):
                    total += os.lstat(os.path.join(dirpath, n)).st_blocks * 512
        return total

    def _run(self) -> None:
        while not self._stop.wait(0.05):
            self.peak = max(self.peak, self._size())

    def __enter__(self) -> ScratchPoller:
        self._t.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._t.join()


def group_cpu_s(pgids: list[int]) -> float:
    """CPU seconds (user + system) used so far by every live process in these process groups: the
    servers a method talks to (their workers live as long as the server, so a difference is exact)."""
    tick, total = os.sysconf("SC_CLK_TCK"), 0
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        with contextlib.suppress(OSError, ValueError, IndexError):
            fields = Path(f"/proc/{entry}/stat").read_text().rsplit(")", 1)[1].split()
            if int(fields[2]) in pgids:  # field 5 of stat: the process group
                total += int(fields[11]) + int(fields[12])  # utime, stime
    return total / tick


def _own_rss_mib() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return round(int(line.split()[1]) / 1024, 1)
    return 0.0


def _measured(argv: list[str], scratch: Path, env: dict[str, str], expect_rc=(0,),
              servers: list[int] = ()) -> dict:
    if scratch.exists():
        shutil.rmtree(scratch)
    scratch.mkdir(parents=True)
    before = group_cpu_s(list(servers))
    # A child's peak RSS (wait4) is at least what its parent held when starting it: recorded so a
    # reader can see that the figure is the child's own.
    res_parent = _own_rss_mib()
    with ScratchPoller(scratch) as poll:
        res = bc.measure(argv, env=env, expect_rc=expect_rc)
    res["server_cpu_s"] = round(group_cpu_s(list(servers)) - before, 2)
    res["parent_rss_mib"] = res_parent
    res["scratch_peak_mib"] = round(poll.peak / MIB, 1)
    shutil.rmtree(scratch, ignore_errors=True)
    return res


_REGISTER = """
import json, sys
from mlflow import MlflowClient
url, model, n = sys.argv[1], sys.argv[2], int(sys.argv[3])
c = MlflowClient(url, url)
exp = c.create_experiment(model)
c.create_registered_model(model)
runs = [c.create_run(exp).info for _ in range(n)]
# The server only accepts a source inside the artifact folder of the version's run.
for r in runs:
    c.create_model_version(model, source=r.artifact_uri.rstrip("/") + "/model", run_id=r.run_id)
print(json.dumps([r.artifact_uri.rstrip("/") + "/model" for r in runs]))
"""


def _register(url: str, model: str, n: int, env: dict[str, str]) -> list[str]:
    """Register ``n`` versions of ``model``, each with its own run; their sources (files added later)."""
    out = subprocess.run([sys.executable, "-c", _REGISTER, url, model, str(n)], check=True,
                         capture_output=True, text=True, env={**os.environ, **bc.CHILD_ENV, **env}).stdout
    return json.loads(out.strip().splitlines()[-1])


def _key(source: str) -> str:
    """The object key / artifact path of a version's source, without scheme and bucket."""
    rest = source.split(":", 1)[1].lstrip("/")
    return rest.split("/", 1)[1] if source.startswith("s3:") else rest


def _local_copy(source: str, server, data: Path) -> Path:
    """Where the model behind ``source`` is written: the proxy's own artifact folder, or a staging one."""
    return (server.artifacts if source.startswith("mlflow-artifacts:") else data / "staging") / _key(source)


def child_upload_s3(endpoint: str, jobs: Path, part_mib: int) -> dict:
    """Create the bucket if needed and upload ``[[key, path], …]``. Run as a child process: a
    measured process's peak RSS (``wait4``) includes the RSS its parent had when it started it, so
    the parent never loads boto3 or MLflow itself."""
    import boto3
    from boto3.s3.transfer import TransferConfig

    s3 = boto3.client("s3", endpoint_url=endpoint, aws_access_key_id="testing",
                      aws_secret_access_key="testing", region_name="us-east-1")
    if BUCKET not in [b["Name"] for b in s3.list_buckets().get("Buckets", [])]:
        s3.create_bucket(Bucket=BUCKET)
    # Parts larger than moto's in-memory buffer (16 MiB) are kept on its disk.
    parts = TransferConfig(multipart_chunksize=part_mib * MIB, max_concurrency=4)
    todo = json.loads(jobs.read_text())
    with ThreadPoolExecutor(max_workers=8) as pool:
        list(pool.map(lambda j: s3.upload_file(j[1], BUCKET, j[0], Config=parts), todo))
    return {"objects": len(todo)}


def _upload_s3(endpoint: str, jobs: list[tuple[str, Path]], work: Path, part_mib: int = 8) -> None:
    listing = work / "upload.json"
    listing.write_text(json.dumps([[key, str(path)] for key, path in jobs]))
    subprocess.run(_child_argv("upload-s3", endpoint, listing, part_mib), check=True,
                   env={**os.environ, **bc.CHILD_ENV})


def _part_size(concurrency: int) -> int:
    """The CLI's range size (``core.remote.ranged.part_size_for``), asked of a child (see above)."""
    code = f"from core.remote.ranged import part_size_for; print(part_size_for({concurrency}))"
    return int(subprocess.run([sys.executable, "-c", code], check=True, capture_output=True, text=True,
                              cwd=BENCH.parent).stdout.strip().splitlines()[-1])


def _cli_row(res: dict, report: Path) -> dict:
    if report.exists():
        rep = json.loads(report.read_text())
        if "Run_Model_Comparison" in rep and "transfer" in rep["Run_Model_Comparison"]:
            res["reported_peak_scratch_bytes"] = max(
                t["peak_scratch_bytes"] for t in rep["Run_Model_Comparison"]["transfer"])
        res["equals"] = rep.get("equals")
    return res


def _sparse(path: Path, size: int) -> None:
    """A file of ``size`` zero bytes that takes no disk (the bytes still travel and are hashed)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "wb") as f:
        f.truncate(size)


def bench_store(kind: str, args: argparse.Namespace, work: Path, log) -> dict:
    sys.path.insert(0, str(BENCH.parent))
    from tests.support.procs import MlflowServer, MotoS3Server

    size = args.size_mib
    data = work / f"{kind}-{size}"
    concurrency = args.concurrency or DEFAULT_CONCURRENCY[kind]
    procs, env = [], {}
    rows: dict[str, dict] = {}
    pairs: list[tuple[str, str, str]] = []  # (case, floor row, cli row)

    def run(name: str, argv: list[str], report: Path | None = None) -> dict:
        log(f"[{kind}] {name} ... (load {os.getloadavg()[0]:.1f})")
        res = _measured(argv, scratch, env, servers=[p.pid for p in procs])
        res["loadavg_1min"] = round(os.getloadavg()[0], 2)
        if report is not None:
            _cli_row(res, report)
        prev = rows.get(name)
        runs = [*(prev or {}).get("runs", []), [res.get("wall_s"), res.get("cpu_s")]]
        if prev is None or ("error" not in res and res["wall_s"] < prev.get("wall_s", 1e9)):
            rows[name] = res
        rows[name]["runs"] = runs  # every run's (wall, CPU); the row itself is the fastest
        log(f"[{kind}] {name}: {res.get('wall_s', 0):.1f} s wall, {res.get('cpu_s', 0):.1f} s CPU "
            f"(servers {res['server_cpu_s']:.1f} s), "
            f"{res.get('rss_mib', 0):.0f} MiB RSS, scratch {res['scratch_peak_mib']} MiB "
            f"{res.get('error', '')[:300]}")
        return res

    try:
        if kind == "s3":
            moto = MotoS3Server(data / "moto")
            # moto copies a whole object to answer one range of it: see bench/moto_ranged.py.
            moto.argv = [sys.executable, str(BENCH / "moto_ranged.py"), *moto.argv[1:]]
            moto.start()
            procs.append(moto)
            env = moto.client_env
            server = MlflowServer(data / "server", artifact_root=f"s3://{BUCKET}/mlflow", env=env,
                                  workers=args.server_workers).start()
        else:
            server = MlflowServer(data / "server", serve_artifacts=True, workers=args.server_workers).start()
        procs.append(server)
        sources = _register(server.url, "bench", 2, env)
        copies = {_key(s): _local_copy(s, server, data) for s in sources}
        log(f"[{kind}] building two copies of {size} MiB ...")
        built = bc.build_model(list(copies.values()), size, args.small_files)
        if kind == "s3":
            log(f"[{kind}] uploading to moto ...")
            _upload_s3(moto.endpoint_url, [(f"{prefix}/{rel}", root / rel) for prefix, root in copies.items()
                                            for rel, _ in _files(root)], data)
        listing = data / "listing.json"
        listing.write_text(json.dumps(_files(next(iter(copies.values())))))
        cfg = data / "cfg.json"
        side = {"host": server.url}
        scratch, report = data / "scratch", data / "report.json"

        def cli(model: str) -> list[str]:
            cfg.write_text(json.dumps({f"tracking_server_{v}": {**side, "model": model, "version_or_stage": v}
                                       for v in ("1", "2")}))
            return [*bc.cli_argv("compare-model-versions", "compare_model_versions_cli"),
                    "--config-file", str(cfg), "--skip-compare-reg-models", "--download-dir", str(scratch),
                    "--report-file", str(report), "--transfer-concurrency", str(concurrency)]

        floor_args = (["floor-http", server.url] if kind == "proxy" else ["floor-s3"])
        rows["import mlflow"] = bc.measure([sys.executable, "-c", "import mlflow"])
        case = f"{size} MiB model"
        for _ in range(args.repeat):
            run(f"floor {size} MiB", _child_argv(*floor_args, ",".join(copies), listing, concurrency))
            if kind == "proxy":
                run(f"floor + listing {size} MiB",
                    _child_argv("floor-http-listed", server.url, ",".join(copies), concurrency))
            run(f"cli {size} MiB", cli("bench"), report)
            if not args.no_original:
                run("original", bc.child_argv("baseline-download", server.url, "bench", "1", "2", scratch))
        pairs.append((case, f"floor {size} MiB", f"cli {size} MiB"))
        if kind == "proxy":
            pairs.append((f"{case}, against the floor that lists", f"floor + listing {size} MiB",
                          f"cli {size} MiB"))
        if args.large_mib and kind == "proxy":
            log(f"[{kind}] large model {args.large_mib} MiB ...")
            big_sources = _register(server.url, "big", 2, env)
            big = [_local_copy(s, server, data) for s in big_sources]
            bc.build_model([big[0]], args.large_mib, args.small_files)
            shutil.copytree(big[0], big[1], copy_function=os.link)
            big_listing = data / "big-listing.json"
            big_listing.write_text(json.dumps(_files(big[0])))
            prefixes = ",".join(_key(s) for s in big_sources)
            large = f"{args.large_mib} MiB"
            run(f"floor {large}", _child_argv(*floor_args, prefixes, big_listing, concurrency))
            run(f"floor + listing {large}",
                _child_argv("floor-http-listed", server.url, prefixes, concurrency))
            run(f"cli {large}", cli("big"), report)
            pairs.append((f"{large} model", f"floor {large}", f"cli {large}"))
            pairs.append((f"{large} model, against the floor that lists", f"floor + listing {large}",
                          f"cli {large}"))
        if args.single_mib:
            n = args.single_mib
            log(f"[{kind}] one {n} MiB file per version ...")
            one = _register(server.url, "single", 2, env)
            names = [f"{_key(s)}/weights.bin" for s in one]
            staging = data / "single.bin"
            if kind == "proxy":
                for s in one:
                    _sparse(_local_copy(s, server, data) / "weights.bin", n * MIB)
                floor = _child_argv("floor-ranged-http", server.url, ",".join(names), n * MIB, concurrency,
                                    _part_size(concurrency))
            else:
                _sparse(staging, n * MIB)
                _upload_s3(moto.endpoint_url, [(name, staging) for name in names], data, part_mib=64)
                staging.unlink()
                floor = _child_argv("floor-ranged-s3", ",".join(names), n * MIB, concurrency,
                                    _part_size(concurrency))
            run(f"floor one {n} MiB file", floor)
            run(f"cli one {n} MiB file", cli("single"), report)
            pairs.append((f"one {n} MiB file", f"floor one {n} MiB file", f"cli one {n} MiB file"))
        return {"store": kind, "concurrency": concurrency, "model": built, "rows": rows, "pairs": pairs}
    finally:
        for p in reversed(procs):
            p.stop()


def _ratio(cli: dict, floor: dict, field: int, minus: float = 0.0) -> str:
    """CLI / floor of wall (``field`` 0) or CPU (1, less ``minus``): fastest runs, and medians when
    there were several runs."""
    best = min(r[field] for r in cli["runs"] if r[field] is not None)
    best_floor = min(r[field] for r in floor["runs"] if r[field] is not None)
    text = f"{(best - minus) / best_floor:.2f}"
    if len(cli["runs"]) > 1 and len(floor["runs"]) > 1:
        med = statistics.median(r[field] for r in cli["runs"] if r[field] is not None)
        med_floor = statistics.median(r[field] for r in floor["runs"] if r[field] is not None)
        text += f" (median {(med - minus) / med_floor:.2f})"
    return text


def markdown(results: list[dict], info: dict) -> str:
    lines = [f"Machine: {info['cpu']}, {info['cores']} cores, SHA-NI {info.get('sha_ni')}, "
             f"load {info['loadavg_before']} before, {info['date_utc']}, commit {info['commit']}", "",
             "| store | method | wall s | CPU s | servers' CPU s | peak RSS MiB | peak scratch MiB "
             "| load (1 min) |",
             "| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: |"]
    for r in results:
        for name, row in r["rows"].items():
            lines.append(f"| {r['store']} ({r['concurrency']} transfers) | {name} | "
                         f"{row.get('wall_s', 0):.1f} | {row.get('cpu_s', 0):.1f} | "
                         f"{row.get('server_cpu_s', '')} | {row.get('rss_mib', 0):.0f} | "
                         f"{row.get('scratch_peak_mib', 0)} | "
                         f"{row.get('loadavg_1min', '')} |")
    lines += ["", "Ratios from the fastest run of each method (and from the medians when repeated).", "",
              "| store | case | wall: CLI / floor | CPU: (CLI − import) / floor | "
              "CLI RSS − import MiB | original / CLI wall |", "| --- | --- | ---: | ---: | ---: | ---: |"]
    for r in results:
        rows = r["rows"]
        imp = rows["import mlflow"]
        for case, floor_name, cli_name in r["pairs"]:
            cli, floor = rows.get(cli_name, {}), rows.get(floor_name, {})
            if "wall_s" not in cli or "wall_s" not in floor or "error" in cli or "error" in floor:
                lines.append(f"| {r['store']} | {case} | failed | | | |")
                continue
            orig = rows.get("original") if case == r["pairs"][0][0] else None
            orig_ratio = f"{orig['wall_s'] / cli['wall_s']:.2f}" if orig and "wall_s" in orig else ""
            lines.append(f"| {r['store']} | {case} | {_ratio(cli, floor, 0)} | "
                         f"{_ratio(cli, floor, 1, imp['cpu_s'])} | "
                         f"{cli['rss_mib'] - imp['rss_mib']:.0f} | {orig_ratio} |")
    return "\n".join(lines)


def main() -> None:
    if len(sys.argv) > 1 and sys.argv[1] == "_child":
        method, *rest = sys.argv[2:]
        if method == "floor-http":
            res = child_floor_http(rest[0], rest[1].split(","), Path(rest[2]), int(rest[3]))
        elif method == "upload-s3":
            res = child_upload_s3(rest[0], Path(rest[1]), int(rest[2]))
        elif method == "floor-http-listed":
            res = child_floor_http_listed(rest[0], rest[1].split(","), int(rest[2]))
        elif method == "floor-s3":
            res = child_floor_s3(rest[0].split(","), Path(rest[1]), int(rest[2]))
        elif method == "floor-ranged-http":
            res = child_floor_ranged_http(rest[0], rest[1].split(","), *map(int, rest[2:5]))
        elif method == "floor-ranged-s3":
            res = child_floor_ranged_s3(rest[0].split(","), *map(int, rest[1:4]))
        else:
            bc.run_child([method, *rest])
            return
        print("RESULT " + json.dumps(res))
        return
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--size-mib", type=int, default=1024)
    ap.add_argument("--small-files", type=int, default=3000)
    ap.add_argument("--stores", default="proxy,s3")
    ap.add_argument("--concurrency", type=int, default=None, help="default: the CLI's default per store kind")
    ap.add_argument("--large-mib", type=int, default=0, help="also one CLI run at this size (proxy store)")
    ap.add_argument("--single-mib", type=int, default=0,
                    help="also one file of this size per version, against a ranged-GET floor (each store)")
    ap.add_argument("--no-original", action="store_true", help="skip the original tool's method")
    ap.add_argument("--server-workers", type=int, default=4, help="mlflow server --workers (its default: 4)")
    ap.add_argument("--repeat", type=int, default=1, help="runs of each method; the fastest is kept")
    ap.add_argument("--workdir", type=Path, default=None)
    args = ap.parse_args()
    work = args.workdir or Path(tempfile.mkdtemp(prefix="guard-bench-remote-"))
    info = machine_info(("mlflow", "boto3", "moto", "requests"))
    log = lambda msg: print(msg, file=sys.stderr, flush=True)  # noqa: E731
    try:
        results = [bench_store(kind, args, work, log) for kind in args.stores.split(",")]
    finally:
        if args.workdir is None:
            shutil.rmtree(work, ignore_errors=True)
    text = markdown(results, info)
    print(text)
    bc.OUT_DIR.mkdir(parents=True, exist_ok=True)
    stamp = time.strftime("%Y%m%d-%H%M%S")
    result = {"machine": info, "results": results}
    (bc.OUT_DIR / f"remote-{stamp}.json").write_text(json.dumps(result, indent=2))
    (bc.OUT_DIR / f"remote-{stamp}.md").write_text(text + "\n")


if __name__ == "__main__":
    main()
