"""Benchmark: exact tree comparison (this project's core) against the floor and the original method.

Builds a synthetic MLflow-like model (default about 1 GiB: 4 large weight shards plus about 3,000
small files in nested folders) in two identical copies, warms the page cache, then measures in one
run, each method in a fresh subprocess so that peak memory is per method:

* ``import mlflow``  - ``python -c "import mlflow"``, the fixed cost of any MLflow CLI;
* ``floor``          - reading both copies once (one thread per copy, 1 MiB chunks, no hashing);
* ``core``           - ``core.compare.tree.compare_trees`` on the two folders;
* ``cli-compare``    - ``compare-model-versions --skip-compare-reg-models`` on two versions whose
                       sources are the two copies (run models only, so each byte is read once);
* ``cli-compare-all``- ``compare-model-versions`` comparing run models and registry models (in
                       open-source MLflow both name the same folders, which the core reads once);
* ``cli-check``      - ``check-model-version`` of one version (run and registry model are the same
                       local folder in open-source MLflow);
* ``baseline``       - the original tool's approach re-implemented: import mlflow, copy ("download")
                       both trees into a scratch folder with ``shutil.copytree``, ``filecmp.dircmp``
                       with its defaults (shallow, top level only), then MD5 and SHA-1 of every file
                       from whole-file reads;
* ``baseline-download`` - the same, with the original tool's download step: the two versions' download
                       URIs asked of the local ``mlflow server``, then ``mlflow.artifacts.download_artifacts``
                       of each into the scratch folder (MLflow's artifact repository lists and copies
                       file by file); needs the server, so not with ``--no-cli``.

The CLI rows talk to a real ``mlflow server`` on loopback (SQLite store); the compare cost as the
project's target defines it is ``cli-compare`` wall time minus ``import mlflow`` wall time.

Usage::

    .venv/bin/python bench/bench_compare.py [--size-mib 1024] [--small-files 3000]
        [--sizes 1024,4096] [--repeat 3] [--workdir DIR] [--keep] [--no-cli] [--baseline-max-mib 1024]

``--sizes`` runs several model sizes in one go (to show that peak memory does not grow with the
model); the baseline is skipped above ``--baseline-max-mib`` because it holds whole files in memory
and only serves as the reference. Results are printed as markdown and written as JSON to
``bench/out/``.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as _dt
import filecmp
import hashlib
import json
import os
import platform
import random
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
VENV_BIN = Path(sys.executable).parent
OUT_DIR = REPO / "bench" / "out"
MIB = 1 << 20
CHUNK = 1 << 20
LARGE_FILES = 4
# Per-file budget for the small files; the 3,000 of them come to about 96 MiB at the default size.
SMALL_MEAN = 32 << 10
SEED = 20261127

CHILD_ENV = {
    "MLFLOW_DISABLE_TELEMETRY": "true",
    "DO_NOT_TRACK": "true",
    "PYTHONDONTWRITEBYTECODE": "1",
}


# --------------------------------------------------------------------------------------------------
# Synthetic model
# --------------------------------------------------------------------------------------------------

def _layout(size_mib: int, small_files: int) -> list[tuple[str, int]]:
    """The relative paths and sizes of the synthetic model, the same for every run with these inputs."""
    rng = random.Random(SEED + size_mib * 7919 + small_files)
    total = size_mib * MIB
    # Small files never take more than a quarter of the model, so tiny validation sizes still work.
    small_budget = min(small_files * SMALL_MEAN, total // 4)
    mean = small_budget // max(small_files, 1)
    files: list[tuple[str, int]] = []
    meta = {
        "MLmodel": 600, "conda.yaml": 250, "python_env.yaml": 120, "requirements.txt": 90,
        "input_example.json": 400,
    }
    files += list(meta.items())
    small_total = 0
    for i in range(small_files):
        size = rng.randint(1, max(2 * mean - 1, 1))
        small_total += size
        # Four levels deep, a dozen groups: the shape of tokenizer/vocab/asset folders in real models.
        rel = f"artifacts/group_{i % 12:02d}/part_{(i // 12) % 8}/level_{(i // 96) % 4}/file_{i:05d}.bin"
        files.append((rel, size))
    large_total = max(total - small_total - sum(meta.values()), LARGE_FILES)
    for i in range(LARGE_FILES):
        size = large_total // LARGE_FILES + (large_total % LARGE_FILES if i == 0 else 0)
        files.append((f"data/weights/shard-{i + 1:05d}-of-{LARGE_FILES:05d}.bin", size))
    return files


def build_model(copies: list[Path], size_mib: int, small_files: int) -> dict:
    """Write the synthetic model into every folder of ``copies`` (identical bytes, separate files).

    Random bytes are generated once into a pool; every 1 MiB chunk is a slice of the pool at a
    seeded offset stamped with its own counter, so no two chunks are equal and writing runs at
    memory-copy speed instead of random-generator speed.
    """
    rng = random.Random(SEED)
    pool = rng.randbytes(8 * MIB)
    layout = _layout(size_mib, small_files)
    counter = 0
    t0 = time.perf_counter()
    for copy in copies:
        if copy.exists():
            shutil.rmtree(copy)
    total = 0
    for rel, size in layout:
        handles = []
        for copy in copies:
            path = copy / rel
            path.parent.mkdir(parents=True, exist_ok=True)
            handles.append(open(path, "wb", buffering=0))  # noqa: SIM115 - closed below, several at once
        try:
            remaining = size
            while remaining:
                n = min(CHUNK, remaining)
                off = rng.randrange(0, len(pool) - n + 1)
                chunk = bytearray(pool[off:off + n])
                stamp = counter.to_bytes(8, "little")
                chunk[:min(8, n)] = stamp[:min(8, n)]
                counter += 1
                for fh in handles:
                    fh.write(chunk)
                remaining -= n
        finally:
            for fh in handles:
                fh.close()
        total += size
    return {"files": len(layout), "bytes": total, "build_s": round(time.perf_counter() - t0, 2)}


def _walk_files(root: Path) -> list[Path]:
    out = []
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames.sort()
        for name in sorted(filenames):
            out.append(Path(dirpath) / name)
    return out


# --------------------------------------------------------------------------------------------------
# Methods run inside a fresh child process (``bench_compare.py _child METHOD ...``)
# --------------------------------------------------------------------------------------------------

def _read_tree(root: Path, counts: list[int], idx: int, sha256: bool = False) -> None:
    buf = bytearray(CHUNK)
    view = memoryview(buf)
    n = 0
    for path in _walk_files(root):
        h = hashlib.sha256() if sha256 else None
        with open(path, "rb", buffering=0) as fh:
            while True:
                got = fh.readinto(view)
                if not got:
                    break
                if h is not None:
                    h.update(view[:got])
                n += got
    counts[idx] = n


def child_floor(a: Path, b: Path, sha256: bool = False) -> dict:
    """Read both copies once, one thread per copy: the least work any exact comparison must do;
    with ``sha256`` also hash every file as it is read (the two-core SHA-256 floor)."""
    counts = [0, 0]
    t0 = time.perf_counter()
    threads = [threading.Thread(target=_read_tree, args=(p, counts, i, sha256)) for i, p in enumerate((a, b))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return {"op_s": time.perf_counter() - t0, "bytes": sum(counts)}


def child_core(a: Path, b: Path) -> dict:
    """This project's core: ``compare_trees`` on the two folders."""
    # Works from a checkout that is not pip-installed as well.
    sys.path.insert(0, str(REPO))
    from core.compare.tree import compare_trees

    t0 = time.perf_counter()
    result = compare_trees(a, b, labels=("1", "2"))
    op = time.perf_counter() - t0
    return {"op_s": op, "equal": result.equal, "bytes": result.bytes_compared,
            "differences": len(result.differences), "core_elapsed_s": result.elapsed_s}


def _whole_file_hashes(root: Path) -> dict[str, tuple[str, str]]:
    digests = {}
    for path in _walk_files(root):
        # The original tool hashed whole files read into memory at once.
        with open(path, "rb") as fh:
            data = fh.read()
        digests[str(path.relative_to(root))] = (hashlib.md5(data).hexdigest(), hashlib.sha1(data).hexdigest())
        del data
    return digests


def child_baseline(a: Path, b: Path, scratch: Path) -> dict:
    """The original tool's method: download (copy) both, top-level shallow dircmp, whole-file MD5/SHA-1."""
    t_import = time.perf_counter()
    import mlflow  # noqa: F401 - the original tool was an MLflow CLI; its memory includes this import

    t0 = time.perf_counter()
    d1, d2 = scratch / "1", scratch / "2"
    # The original downloaded into an existing scratch folder, merging with whatever was there.
    shutil.copytree(a, d1, dirs_exist_ok=True)
    shutil.copytree(b, d2, dirs_exist_ok=True)
    dcmp = filecmp.dircmp(d1, d2)
    equals = not dcmp.left_only and not dcmp.right_only and not dcmp.diff_files
    h1 = _whole_file_hashes(d1)
    h2 = _whole_file_hashes(d2)
    op = time.perf_counter() - t0
    return {"op_s": op, "import_s": t0 - t_import, "equal": equals, "hashes_equal": h1 == h2,
            "files": len(h1) + len(h2)}


def child_baseline_download(url: str, model: str, v1: str, v2: str, scratch: Path) -> dict:
    """The original tool's method with its own download step: MLflow downloads both versions."""
    t_import = time.perf_counter()
    import mlflow
    from mlflow import MlflowClient

    t0 = time.perf_counter()
    client = MlflowClient(tracking_uri=url, registry_uri=url)
    dirs = []
    for i, version in enumerate((v1, v2), start=1):
        uri = client.get_model_version_download_uri(model, version)
        # The original downloaded into an existing scratch folder, merging with whatever was there.
        dst = scratch / str(i)
        dst.mkdir(parents=True, exist_ok=True)
        dirs.append(Path(mlflow.artifacts.download_artifacts(artifact_uri=uri, dst_path=str(dst),
                                                             tracking_uri=url)))
    t_download = time.perf_counter() - t0
    d1, d2 = dirs
    dcmp = filecmp.dircmp(d1, d2)
    equals = not dcmp.left_only and not dcmp.right_only and not dcmp.diff_files
    h1 = _whole_file_hashes(d1)
    h2 = _whole_file_hashes(d2)
    op = time.perf_counter() - t0
    return {"op_s": op, "import_s": t0 - t_import, "download_s": t_download, "equal": equals,
            "hashes_equal": h1 == h2, "files": len(h1) + len(h2), "download_uri": uri}


def child_register(db: Path, model: str, a: Path, b: Path) -> dict:
    """Register two versions of ``model`` whose sources are the two copies (setup, not measured).

    Written straight into the tracking server's SQLite store: the server's REST handler only accepts
    a local source inside a run's artifact folder, which a synthetic model on disk is not.
    """
    from mlflow import MlflowClient

    client = MlflowClient(tracking_uri=f"sqlite:///{db}", registry_uri=f"sqlite:///{db}")
    client.create_registered_model(model)
    v1 = client.create_model_version(model, source=str(a))
    v2 = client.create_model_version(model, source=str(b))
    return {"versions": [str(v1.version), str(v2.version)]}


def run_child(argv: list[str]) -> None:
    method, *args = argv
    if method == "floor":
        res = child_floor(Path(args[0]), Path(args[1]))
    elif method == "floor-sha256":
        res = child_floor(Path(args[0]), Path(args[1]), sha256=True)
    elif method == "core":
        res = child_core(Path(args[0]), Path(args[1]))
    elif method == "baseline":
        res = child_baseline(Path(args[0]), Path(args[1]), Path(args[2]))
    elif method == "baseline-download":
        res = child_baseline_download(args[0], args[1], args[2], args[3], Path(args[4]))
    elif method == "register":
        res = child_register(Path(args[0]), args[1], Path(args[2]), Path(args[3]))
    else:
        raise SystemExit(f"unknown child method {method}")
    print("RESULT " + json.dumps(res))


# --------------------------------------------------------------------------------------------------
# Parent: run a command, measure wall time and the peak RSS of that one child
# --------------------------------------------------------------------------------------------------

def measure(argv: list[str], *, env: dict[str, str] | None = None, cwd: Path | None = None,
            expect_rc: tuple[int, ...] = (0,)) -> dict:
    """Run ``argv`` to completion; wall time seen from here and ``ru_maxrss`` of exactly this child."""
    full_env = {**os.environ, **CHILD_ENV, **(env or {})}
    with tempfile.TemporaryFile() as out:
        t0 = time.perf_counter()
        proc = subprocess.Popen(argv, stdout=out, stderr=subprocess.STDOUT, env=full_env, cwd=cwd)
        # wait4 gives the resource usage of this pid alone (and whatever it waited for), unlike
        # RUSAGE_CHILDREN which is a maximum over every child this process ever had.
        _, status, usage = os.wait4(proc.pid, 0)
        wall = time.perf_counter() - t0
        proc.returncode = os.waitstatus_to_exitcode(status)
        out.seek(0)
        text = out.read().decode(errors="replace")
    rc = proc.returncode
    # CPU time (user + system) is far less sensitive than wall time to other work on the machine.
    res: dict = {"wall_s": wall, "cpu_s": usage.ru_utime + usage.ru_stime, "rss_mib": usage.ru_maxrss / 1024,
                 "rc": rc}
    for line in text.splitlines():
        if line.startswith("RESULT "):
            res.update(json.loads(line[len("RESULT "):]))
    if rc not in expect_rc:
        res["error"] = text[-3000:]
    return res


def report_times(path: Path) -> dict:
    """Times a CLI wrote into its report: the tree scan (``op_s``) and its own total, when present."""
    try:
        report = json.loads(path.read_text())
    except (OSError, ValueError):
        return {}
    out: dict = {}
    scans = [report[k]["elapsed_s"] for k in ("Comparison", "Run_Model_Comparison", "Reg_Model_Comparison")
             if isinstance(report.get(k), dict) and isinstance(report[k].get("elapsed_s"), (int, float))]
    if scans:
        # Run- and registry-model trees are scanned together; each section repeats that one duration.
        out["op_s"] = max(scans)
    result = report.get("Result")
    if isinstance(result, dict) and isinstance(result.get("elapsed_s"), (int, float)):
        out["report_elapsed_s"] = result["elapsed_s"]
    return out


def child_argv(method: str, *args: object) -> list[str]:
    return [sys.executable, str(Path(__file__).resolve()), "_child", method, *map(str, args)]


def cli_argv(script: str, func: str) -> list[str]:
    """The installed console script, or the same entry point run from the checkout if not installed."""
    exe = VENV_BIN / script
    if exe.exists():
        return [str(exe)]
    return [sys.executable, "-c",
            f"import sys; sys.path.insert(0, {str(REPO)!r}); sys.argv[0] = {script!r}; "
            f"from core.cli.commands import {func}; sys.exit({func}())"]


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class TrackingServer:
    """A real ``mlflow server`` on loopback with a SQLite store, stopped by its own pid."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.db = root / "mlflow.db"
        self.port = _free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.proc: subprocess.Popen | None = None

    def init_db(self) -> None:
        # The first SQLite client runs the schema migrations; do it before the server starts so the
        # server and the registering helper never migrate at the same time.
        subprocess.run([sys.executable, "-c",
                        "import sys; from mlflow import MlflowClient;"
                        "MlflowClient(tracking_uri=sys.argv[1]).search_experiments()", f"sqlite:///{self.db}"],
                       check=True, env={**os.environ, **CHILD_ENV}, capture_output=True)

    def start(self) -> None:
        log = open(self.root / "server.log", "ab")  # noqa: SIM115 - lives as long as the server
        self.proc = subprocess.Popen(
            [str(VENV_BIN / "mlflow"), "server", "--host", "127.0.0.1", "--port", str(self.port),
             "--backend-store-uri", f"sqlite:///{self.db}", "--workers", "1",
             "--no-serve-artifacts", "--default-artifact-root", str(self.root / "artifacts")],
            stdout=log, stderr=subprocess.STDOUT, env={**os.environ, **CHILD_ENV}, start_new_session=True)
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"mlflow server exited: {(self.root / 'server.log').read_text()[-2000:]}")
            try:
                with urllib.request.urlopen(self.url + "/health", timeout=2) as resp:
                    if resp.status == 200:
                        return
            except OSError:
                pass
            time.sleep(0.3)
        self.stop()
        raise RuntimeError("mlflow server did not answer within 120 s")

    def stop(self) -> None:
        if self.proc is None:
            return
        import signal

        try:
            os.killpg(self.proc.pid, signal.SIGTERM)
            self.proc.wait(timeout=15)
        except (ProcessLookupError, subprocess.TimeoutExpired):
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.proc.pid, signal.SIGKILL)
        self.proc = None


# --------------------------------------------------------------------------------------------------
# Machine description
# --------------------------------------------------------------------------------------------------

def machine_info(workdir: Path) -> dict:
    cpu = "unknown"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    mem_gib = None
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                mem_gib = round(int(line.split()[1]) / (1 << 20), 1)
    except OSError:
        pass
    fs = None
    with contextlib.suppress(OSError):
        fs = subprocess.run(["stat", "-f", "-c", "%T", str(workdir)], capture_output=True, text=True,
                            check=False).stdout.strip() or None
    try:
        from importlib.metadata import version

        mlflow_version = version("mlflow")
    except Exception:  # noqa: BLE001 - only informative
        mlflow_version = None
    commit = subprocess.run(["git", "-C", str(REPO), "rev-parse", "--short", "HEAD"], capture_output=True,
                            text=True, check=False).stdout.strip() or None
    return {
        "cpu": cpu,
        "cores": os.cpu_count(),
        "usable_cores": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else None,
        "memory_gib": mem_gib,
        "python": platform.python_version(),
        "mlflow": mlflow_version,
        "os": f"{platform.system()} {platform.release()}",
        "filesystem": fs,
        "date_utc": _dt.datetime.now(_dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        # Other work on the machine skews every timing; recorded so a noisy run can be recognised.
        "loadavg_at_start": [round(x, 2) for x in os.getloadavg()],
        "commit": commit,
    }


# --------------------------------------------------------------------------------------------------
# Orchestration
# --------------------------------------------------------------------------------------------------

DESCRIPTIONS = {
    "import-mlflow": '`python -c "import mlflow"`',
    "import-mlflow-noteardown": "`import mlflow`, then atexit handlers and `os._exit` "
                                "(no interpreter teardown, as the CLIs end)",
    "floor": "read both copies once (2 threads, 1 MiB chunks, no hashing)",
    "floor-sha256": "two-core SHA-256 floor: both copies read once and hashed (2 threads, 1 MiB chunks)",
    "core": "`core.compare.tree.compare_trees` (this project)",
    "cli-compare": "`compare-model-versions --skip-compare-reg-models` (this project, whole CLI)",
    "cli-compare-all": "`compare-model-versions`, run + registry models (same folders in OSS: read once)",
    "cli-check": "`check-model-version` (run model = registry model folder in OSS: one copy read)",
    "baseline": "baseline A, original method with a plain copy: `shutil.copytree` both, `filecmp.dircmp` "
                "defaults, whole-file MD5 + SHA-1",
    "baseline-download": "baseline B, original method with its download: "
                         "`mlflow.artifacts.download_artifacts` of both versions' download URIs from the "
                         "local `mlflow server`, then as A",
}


def _summ(runs: list[dict]) -> dict:
    ok = [r for r in runs if "error" not in r]
    if not ok:
        return {"runs": runs, "error": runs[-1].get("error", "failed")}
    out = {
        "runs": runs,
        "wall_s": statistics.median(r["wall_s"] for r in ok),
        "wall_s_min": min(r["wall_s"] for r in ok),
        "cpu_s": statistics.median(r["cpu_s"] for r in ok),
        "cpu_s_min": min(r["cpu_s"] for r in ok),
        "rss_mib": max(r["rss_mib"] for r in ok),
    }
    if all("op_s" in r for r in ok):
        out["op_s"] = statistics.median(r["op_s"] for r in ok)
        out["op_s_min"] = min(r["op_s"] for r in ok)
    return out


def bench_size(size_mib: int, args: argparse.Namespace, root: Path, server: TrackingServer | None,
               log) -> dict:
    data = root / f"model-{size_mib}mib-{args.small_files}"
    a, b = data / "1" / "model", data / "2" / "model"
    marker = data / "built.json"
    want = {"size_mib": size_mib, "small_files": args.small_files, "seed": SEED}
    built = None
    if marker.exists() and json.loads(marker.read_text()).get("params") == want:
        built = json.loads(marker.read_text())
        log(f"[{size_mib} MiB] reusing the models in {data}")
    else:
        log(f"[{size_mib} MiB] building two copies in {data} ...")
        built = {"params": want, **build_model([a, b], size_mib, args.small_files)}
        marker.write_text(json.dumps(built))
        os.sync()
        log(f"[{size_mib} MiB] built {built['files']} files x 2, {built['bytes'] / MIB:.0f} MiB each, "
            f"in {built['build_s']} s")

    commands: dict[str, tuple[list[str], dict]] = {
        "import-mlflow": ([sys.executable, "-c", "import mlflow"], {}),
        # The CLIs end with os._exit after their atexit handlers (no interpreter teardown): the same
        # start-up cost without the ~0.4 s teardown, so the CLIs' compare cost can be read both ways.
        "import-mlflow-noteardown": ([sys.executable, "-c",
                                      "import atexit, os, mlflow; atexit._run_exitfuncs(); os._exit(0)"], {}),
        "floor": (child_argv("floor", a, b), {}),
        "floor-sha256": (child_argv("floor-sha256", a, b), {}),
        "core": (child_argv("core", a, b), {"cwd": REPO}),
    }
    reports = root / "reports"
    reports.mkdir(exist_ok=True)
    if server is not None:
        model = f"bench-{size_mib}mib-{args.small_files}"
        reg = measure(child_argv("register", server.db, model, a, b))
        if "error" in reg:
            raise RuntimeError(f"could not register the bench model versions: {reg['error']}")
        cfg = root / f"compare-{size_mib}.json"
        cfg.write_text(json.dumps({
            "tracking_server_1": {"host": server.url, "model": model, "version_or_stage": reg["versions"][0]},
            "tracking_server_2": {"host": server.url, "model": model, "version_or_stage": reg["versions"][1]},
        }))
        compare = cli_argv("compare-model-versions", "compare_model_versions_cli")
        check = cli_argv("check-model-version", "check_model_version_cli")
        commands["cli-compare"] = ([*compare, "--config-file", str(cfg),
                                    "--report-file", str(reports / "compare.json"),
                                    "--skip-compare-reg-models"], {})
        commands["cli-compare-all"] = ([*compare, "--config-file", str(cfg),
                                        "--report-file", str(reports / "compare-all.json")], {})
        commands["cli-check"] = ([*check, "--model", model,
                                  "--version-or-stage", reg["versions"][0], "--tracking-uri", server.url,
                                  "--report-file", str(reports / "check.json")], {})
    with_baseline = size_mib <= args.baseline_max_mib
    if with_baseline:
        commands["baseline"] = (child_argv("baseline", a, b, root / "scratch"), {})
        if server is not None:
            commands["baseline-download"] = (child_argv("baseline-download", server.url, model,
                                                        reg["versions"][0], reg["versions"][1],
                                                        root / "scratch"), {})

    # Warm-up, not recorded: fills the page cache with both copies (the target is for a hot cache)
    # and loads the interpreter and library files once.
    log(f"[{size_mib} MiB] warming the page cache")
    for name in ("floor", "import-mlflow", "core"):
        argv, kw = commands[name]
        measure(argv, **kw)

    runs: dict[str, list[dict]] = {name: [] for name in commands}
    for rnd in range(args.repeat):
        # Round-robin, so that any drift of the machine touches every method alike.
        for name, (argv, kw) in commands.items():
            if name.startswith("baseline"):
                shutil.rmtree(root / "scratch", ignore_errors=True)
            report = next((Path(x) for i, x in enumerate(argv) if i and argv[i - 1] == "--report-file"), None)
            if report is not None:
                report.unlink(missing_ok=True)
            res = measure(argv, **kw)
            if report is not None and "error" not in res:
                res.update(report_times(report))
            runs[name].append(res)
            if name.startswith("baseline"):
                # Drop the baseline's copies and flush them, so its writes do not cost the next run.
                shutil.rmtree(root / "scratch", ignore_errors=True)
                os.sync()
            status = f"FAILED rc={res['rc']}" if "error" in res else ""
            op = f" op {res['op_s']:.3f} s" if "op_s" in res else ""
            log(f"[{size_mib} MiB] round {rnd + 1}/{args.repeat} {name:16s} wall {res['wall_s']:7.3f} s{op}"
                f"  peak {res['rss_mib']:6.1f} MiB {status}")
            if "error" in res and rnd == 0:
                log(res["error"][-1500:])
    summary = {name: _summ(r) for name, r in runs.items()}
    return {"size_mib": size_mib, "model": built, "methods": summary, "ratios": ratios(summary),
            "ratios_min": ratios(summary, "_min")}


def ratios(m: dict, stat: str = "") -> dict:
    """The ratios the project's targets are stated in (None where a method is missing or failed).

    ``stat`` "" uses the medians, "_min" the best of the runs (least disturbed by other work).
    """

    def get(name: str, key: str) -> float | None:
        v = m.get(name, {})
        if "error" in v:
            return None
        return v.get(key if key == "rss_mib" else key + stat)

    def div(x: float | None, y: float | None) -> float | None:
        return x / y if x is not None and y else None

    def sub(x: float | None, y: float | None) -> float | None:
        return x - y if x is not None and y is not None else None

    floor_op = get("floor", "op_s")
    cli = get("cli-compare", "wall_s")
    compare_cost = sub(cli, get("import-mlflow", "wall_s"))
    compare_cpu = sub(get("cli-compare", "cpu_s"), get("import-mlflow", "cpu_s"))
    cost_noteardown = sub(cli, get("import-mlflow-noteardown", "wall_s"))
    sha_floor = get("floor-sha256", "op_s")
    sha_floor_cpu = get("floor-sha256", "cpu_s")  # the floor process: a bare Python start-up and the hashing
    return {
        "compare_cost_over_sha_floor": div(compare_cost, sha_floor),
        "compare_cost_over_sha_floor_cpu": div(compare_cpu, sha_floor_cpu),
        "core_over_floor_cpu": div(get("core", "cpu_s"), get("floor", "cpu_s")),
        "compare_cost_cpu_s": compare_cpu,
        "compare_cost_over_floor_cpu": div(compare_cpu, get("floor", "cpu_s")),
        "baseline_over_cli_cpu": div(get("baseline", "cpu_s"), get("cli-compare", "cpu_s")),
        "core_over_floor": div(get("core", "op_s"), floor_op),
        "compare_cost_s": compare_cost,
        "compare_cost_over_floor": div(compare_cost, floor_op),
        "compare_cost_noteardown_s": cost_noteardown,
        "compare_cost_noteardown_over_floor": div(cost_noteardown, floor_op),
        "baseline_over_core": div(get("baseline", "op_s"), get("core", "op_s")),
        "baseline_over_cli": div(get("baseline", "wall_s"), cli),
        "baseline_download_over_cli": div(get("baseline-download", "wall_s"), cli),
        "baseline_download_over_cli_cpu": div(get("baseline-download", "cpu_s"), get("cli-compare", "cpu_s")),
        "baseline_over_check": div(get("baseline", "wall_s"), get("cli-check", "wall_s")),
        "baseline_download_over_check": div(get("baseline-download", "wall_s"), get("cli-check", "wall_s")),
        "cli_rss_over_import_mib": sub(get("cli-compare", "rss_mib"), get("import-mlflow", "rss_mib")),
        "check_rss_over_import_mib": sub(get("cli-check", "rss_mib"), get("import-mlflow", "rss_mib")),
    }


def _f(v: float | None, fmt: str = "{:.2f}") -> str:
    return "n/a" if v is None else fmt.format(v)


def render_markdown(result: dict) -> str:
    mi = result["machine"]
    lines = [
        f"Machine: {mi['cpu']}, {mi['cores']} cores ({mi['usable_cores']} usable), "
        f"{mi['memory_gib']} GiB RAM, {mi['os']}, {mi['filesystem']} filesystem; "
        f"Python {mi['python']}, MLflow {mi['mlflow']}; "
        f"{mi['date_utc']}, commit {mi['commit']}; load average at start / end "
        f"{mi['loadavg_at_start'][0]} / {mi.get('loadavg_at_end', ['?'])[0]}. Hot page cache; median of "
        f"{result['params']['repeat']} runs, each in a fresh process; peak RSS = largest `ru_maxrss` of "
        "that process; \"op s\" = time of the operation itself inside the process (for the CLIs: the "
        "tree-scan time they write into their report).",
        "",
    ]
    for size in result["sizes"]:
        built = size["model"]
        lines.append(f"### {built['bytes'] / MIB:.0f} MiB model ({built['files']} files: "
                     f"{LARGE_FILES} large + {built['files'] - LARGE_FILES} small/metadata), two copies")
        lines.append("")
        lines.append("| method | wall s (process) | min | op s (in process) | min | CPU s | peak RSS MiB |")
        lines.append("| --- | ---: | ---: | ---: | ---: | ---: | ---: |")
        for name, row in size["methods"].items():
            desc = DESCRIPTIONS.get(name, name)
            if "error" in row:
                lines.append(f"| {desc} | failed | | | | | |")
                continue
            lines.append(f"| {desc} | {row['wall_s']:.3f} | {row['wall_s_min']:.3f} | "
                         f"{_f(row.get('op_s'), '{:.3f}')} | {_f(row.get('op_s_min'), '{:.3f}')} | "
                         f"{row['cpu_s']:.2f} | {row['rss_mib']:.0f} |")
        r, b = size["ratios"], size["ratios_min"]

        def row(label: str, key: str, target: str, fmt: str = "{:.2f}", unit: str = "",
                r: dict = r, b: dict = b) -> str:
            return f"| {label} | {_f(r[key], fmt)}{unit} | {_f(b[key], fmt)}{unit} | {target} |"

        lines += [
            "",
            "| ratio | from medians | from best runs | target |",
            "| --- | ---: | ---: | --- |",
            row("core / floor (in-process time)", "core_over_floor", ""),
            row("compare cost = `compare-model-versions` wall − `import mlflow` wall", "compare_cost_s", "",
                "{:.3f}", " s"),
            row("compare cost / floor", "compare_cost_over_floor", ""),
            row("compare cost / two-core SHA-256 floor (in-process time)", "compare_cost_over_sha_floor",
                "≤ 1.3"),
            row("compare cost / SHA-256 floor, CPU time (CLI − import; floor process)",
                "compare_cost_over_sha_floor_cpu", ""),
            row("compare cost against `import mlflow` without teardown", "compare_cost_noteardown_s", "",
                "{:.3f}", " s"),
            row("that / floor", "compare_cost_noteardown_over_floor", ""),
            row("baseline A / core (in-process time)", "baseline_over_core", ""),
            row("baseline A (copytree) / `compare-model-versions` (process wall)", "baseline_over_cli",
                "≥ 5"),
            row("baseline B (MLflow download) / `compare-model-versions` (process wall)",
                "baseline_download_over_cli", "≥ 5"),
            row("baseline A (copytree) / `check-model-version` (process wall)", "baseline_over_check", ""),
            row("baseline B (MLflow download) / `check-model-version` (process wall)",
                "baseline_download_over_check", ""),
            row("core / floor, CPU time (user + system)", "core_over_floor_cpu", ""),
            row("compare cost in CPU time (CLI − `import mlflow`)", "compare_cost_cpu_s", "", "{:.2f}", " s"),
            row("compare cost / floor, CPU time", "compare_cost_over_floor_cpu", ""),
            row("baseline A / `compare-model-versions`, CPU time", "baseline_over_cli_cpu", ""),
            row("baseline B / `compare-model-versions`, CPU time", "baseline_download_over_cli_cpu", ""),
            row("`compare-model-versions` peak RSS − `import mlflow` peak RSS", "cli_rss_over_import_mib",
                "≤ 64 MiB", "{:.0f}", " MiB"),
            row("`check-model-version` peak RSS − `import mlflow` peak RSS", "check_rss_over_import_mib",
                "≤ 64 MiB", "{:.0f}", " MiB"),
            "",
        ]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv and argv[0] == "_child":
        run_child(argv[1:])
        return 0
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--size-mib", type=int, default=1024, help="model size in MiB (default 1024)")
    p.add_argument("--sizes", default=None,
                   help="comma list of sizes in MiB to run one after another, e.g. 1024,4096 "
                        "(overrides --size-mib; shows whether peak memory grows with the model)")
    p.add_argument("--small-files", type=int, default=3000, help="number of small files (default 3000)")
    p.add_argument("--repeat", type=int, default=3, help="measured runs per method (default 3)")
    p.add_argument("--workdir", type=Path, default=None,
                   help="where to build the models (default: a new temporary folder)")
    p.add_argument("--keep", action="store_true",
                   help="keep the workdir (models are reused by a later run with the same --workdir)")
    p.add_argument("--no-cli", action="store_true",
                   help="skip the CLI rows (they start a local mlflow server)")
    p.add_argument("--baseline-max-mib", type=int, default=1024,
                   help="run the original-method baseline only up to this size (default 1024)")
    args = p.parse_args(argv)
    sizes = [int(s) for s in args.sizes.split(",")] if args.sizes else [args.size_mib]

    root = Path(tempfile.mkdtemp(prefix="guard-bench-")) if args.workdir is None else args.workdir.resolve()
    root.mkdir(parents=True, exist_ok=True)

    def log(msg: str) -> None:
        print(msg, file=sys.stderr, flush=True)

    server = None
    result: dict = {"machine": machine_info(root), "params": {**vars(args), "sizes": sizes}, "sizes": []}
    try:
        if not args.no_cli:
            srv_root = root / f"server-{os.getpid()}"
            srv_root.mkdir()
            server = TrackingServer(srv_root)
            log("starting a local mlflow server for the CLI rows ...")
            server.init_db()
            server.start()
        for size in sizes:
            result["sizes"].append(bench_size(size, args, root, server, log))
    finally:
        if server is not None:
            server.stop()
            shutil.rmtree(server.root, ignore_errors=True)
        shutil.rmtree(root / "scratch", ignore_errors=True)
        if not args.keep:
            shutil.rmtree(root, ignore_errors=True)
        else:
            log(f"kept {root}")

    result["machine"]["loadavg_at_end"] = [round(x, 2) for x in os.getloadavg()]
    md = render_markdown(result)
    print(md)
    OUT_DIR.mkdir(parents=True, exist_ok=True)
    stamp = _dt.datetime.now(_dt.timezone.utc).strftime("%Y%m%dT%H%M%SZ")
    out = OUT_DIR / f"compare-{stamp}.json"
    result["params"]["workdir"] = str(root)
    result["params"] = {k: (str(v) if isinstance(v, Path) else v) for k, v in result["params"].items()}
    out.write_text(json.dumps(result, indent=2))
    (OUT_DIR / f"compare-{stamp}.md").write_text(md + "\n")
    log(f"wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
