"""Benchmark: webhook acknowledgement throughput of the listener against a bare Flask app.

Serves, with the same gunicorn command line (``--workers 2``, sync workers unless ``--gunicorn-config``
gives the deployment's threaded ones, loopback only):

* ``bare``     - ``bench/bare_flask_app.py``: ``POST /webhooks/mlflow`` reads the body and returns 200;
* ``listener`` - ``listener.web:create_app()`` with a secret (``GUARD_MLFLOW_SECRET``) and its real
                 SQLite queue under a fresh ``GUARD_DATA_DIR``: every delivery is verified and durably
                 enqueued before the 202 goes out (no consumer runs, jobs just pile up).

A bounded load generator (``--client-procs`` processes x threads, ``http.client`` connections that are
reused while the server keeps them open) sends ``--requests`` validly signed ``model_version.created``
deliveries, each with its own delivery id, at each ``--concurrency`` level, after ``--warmup``
unrecorded requests. It reports requests per second, p50/p99 latency and the listener/bare ratio, and
checks that every 202 left exactly one job in the queue.

Usage::

    .venv/bin/python bench/bench_webhook.py [--requests 5000] [--concurrency 50,20] [--warmup 300]
        [--client-procs 2] [--workers 2] [--gunicorn-config deploy/gunicorn.conf.py] [--keep]

Results are printed as markdown and written as JSON to ``bench/out/``.
"""

from __future__ import annotations

import argparse
import base64
import contextlib
import datetime as _dt
import hashlib
import hmac
import http.client
import json
import multiprocessing as mp
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from pathlib import Path

from machine import machine_info as _machine_info

REPO = Path(__file__).resolve().parent.parent
VENV_BIN = Path(sys.executable).parent
OUT_DIR = REPO / "bench" / "out"
SECRET = "bench-secret-not-for-production"
PATH = "/webhooks/mlflow"


# --------------------------------------------------------------------------------------------------
# Signed deliveries, exactly as an MLflow server sends them
# --------------------------------------------------------------------------------------------------

def signed_delivery(i: int, secret: str = SECRET) -> tuple[bytes, dict[str, str]]:
    """One ``model_version.created`` delivery with its own delivery id and a v1 HMAC-SHA256 signature."""
    delivery_id = str(uuid.uuid4())
    ts = str(int(time.time()))
    body = json.dumps({
        "entity": "model_version", "action": "created",
        "timestamp": _dt.datetime.now(_dt.timezone.utc).isoformat(),
        "data": {"name": f"bench-model-{i % 50}", "version": str(i // 50 + 1), "source": "models:/m-bench",
                 "run_id": None, "tags": {}, "description": ""},
    }).encode()
    mac = hmac.new(secret.encode(), f"{delivery_id}.{ts}.".encode() + body, hashlib.sha256).digest()
    headers = {
        "Content-Type": "application/json",
        "X-MLflow-Delivery-Id": delivery_id,
        "X-MLflow-Timestamp": ts,
        "X-MLflow-Signature": "v1," + base64.b64encode(mac).decode(),
    }
    return body, headers


# --------------------------------------------------------------------------------------------------
# Load generator
# --------------------------------------------------------------------------------------------------

def _sender(port: int, items: list[tuple[bytes, dict[str, str]]], lat: list[float], codes: dict[int, int],
            errors: list[str], lock: threading.Lock) -> None:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    local_codes: dict[int, int] = {}
    local_lat: list[float] = []
    try:
        for body, headers in items:
            t0 = time.perf_counter()
            try:
                conn.request("POST", PATH, body=body, headers=headers)
                resp = conn.getresponse()
                resp.read()
                if resp.will_close:
                    # gunicorn's sync workers close after every response; the next request reconnects.
                    conn.close()
            except (OSError, http.client.HTTPException) as exc:
                conn.close()
                errors.append(f"{type(exc).__name__}: {exc}")
                continue
            local_lat.append(time.perf_counter() - t0)
            local_codes[resp.status] = local_codes.get(resp.status, 0) + 1
    finally:
        conn.close()
    with lock:
        lat.extend(local_lat)
        for k, v in local_codes.items():
            codes[k] = codes.get(k, 0) + v


def _client_proc(port: int, items: list[tuple[bytes, dict[str, str]]], threads: int, start_at: float,
                 out: mp.Queue) -> None:
    lat: list[float] = []
    codes: dict[int, int] = {}
    errors: list[str] = []
    lock = threading.Lock()
    slices = [items[i::threads] for i in range(threads)]
    workers = [threading.Thread(target=_sender, args=(port, s, lat, codes, errors, lock))
               for s in slices if s]
    # Every client process starts at the same wall-clock instant, so they overlap completely.
    time.sleep(max(0.0, start_at - time.time()))
    t0 = time.time()
    for w in workers:
        w.start()
    for w in workers:
        w.join()
    out.put({"lat": lat, "codes": codes, "errors": errors[:20], "error_count": len(errors),
             "start": t0, "end": time.time()})


def run_load(port: int, n: int, concurrency: int, procs: int) -> dict:
    """Send ``n`` signed deliveries with ``concurrency`` connections spread over ``procs`` processes."""
    items = [signed_delivery(i) for i in range(n)]
    procs = max(1, min(procs, concurrency))
    ctx = mp.get_context("fork")
    q: mp.Queue = ctx.Queue()
    start_at = time.time() + 0.5
    per_proc_threads = [concurrency // procs + (1 if i < concurrency % procs else 0) for i in range(procs)]
    children = [ctx.Process(target=_client_proc,
                            args=(port, items[i::procs], per_proc_threads[i], start_at, q))
                for i in range(procs)]
    for c in children:
        c.start()
    results = [q.get(timeout=600) for _ in children]
    for c in children:
        c.join(timeout=30)
    lat = sorted(x for r in results for x in r["lat"])
    codes: dict[str, int] = {}
    for r in results:
        for k, v in r["codes"].items():
            codes[str(k)] = codes.get(str(k), 0) + v
    elapsed = max(r["end"] for r in results) - min(r["start"] for r in results)

    def pct(p: float) -> float | None:
        return lat[min(len(lat) - 1, int(round(p / 100 * (len(lat) - 1))))] * 1000 if lat else None

    return {"requests": n, "concurrency": concurrency, "client_procs": procs, "elapsed_s": elapsed,
            "completed": len(lat), "rps": len(lat) / elapsed if elapsed > 0 else None,
            "p50_ms": pct(50), "p90_ms": pct(90), "p99_ms": pct(99),
            "max_ms": lat[-1] * 1000 if lat else None,
            "codes": codes, "errors": sum(r["error_count"] for r in results),
            "error_samples": [e for r in results for e in r["errors"]][:5]}


# --------------------------------------------------------------------------------------------------
# Servers
# --------------------------------------------------------------------------------------------------

def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Gunicorn:
    """One gunicorn master (own process group) on a loopback port, stopped by its own pid."""

    def __init__(self, name: str, app: str, workdir: Path, workers: int, config: Path | None,
                 env: dict[str, str] | None = None, pythonpath: Path | None = None) -> None:
        self.name = name
        self.port = _free_port()
        self.log_path = workdir / f"{name}-gunicorn.log"
        argv = [str(VENV_BIN / "gunicorn"), "--workers", str(workers), "--bind", f"127.0.0.1:{self.port}"]
        if config is not None:
            argv += ["--config", str(config)]
        else:
            argv += ["--log-level", "warning"]
        if pythonpath is not None:
            argv += ["--pythonpath", str(pythonpath)]
        argv.append(app)
        self.argv = argv
        self.env = {**os.environ, **(env or {}), "GUNICORN_BIND": f"127.0.0.1:{self.port}",
                    "WEB_CONCURRENCY": str(workers), "GUNICORN_LOG_LEVEL": "warning"}
        # Run from an empty folder so that no stray ./gunicorn.conf.py is picked up.
        self.cwd = workdir / f"{name}-cwd"
        self.cwd.mkdir(parents=True, exist_ok=True)
        self.proc: subprocess.Popen | None = None

    def start(self, timeout: float = 60.0) -> None:
        log = open(self.log_path, "ab")  # noqa: SIM115 - lives as long as the server
        self.proc = subprocess.Popen(self.argv, env=self.env, cwd=self.cwd, stdout=log,
                                     stderr=subprocess.STDOUT, start_new_session=True)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"{self.name}: gunicorn exited:\n{self.log_path.read_text()[-3000:]}")
            try:
                conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=2)
                conn.request("GET", "/healthz")
                conn.getresponse().read()
                conn.close()
                return
            except OSError:
                time.sleep(0.2)
        self.stop()
        raise RuntimeError(f"{self.name}: gunicorn did not answer within {timeout}s")

    def cpu_seconds(self) -> float | None:
        """User + system CPU time used so far by the master and its live workers (Linux /proc)."""
        if self.proc is None:
            return None
        tick = os.sysconf("SC_CLK_TCK")
        pids = [self.proc.pid]
        with contextlib.suppress(OSError):
            pids += [int(x) for x in
                     Path(f"/proc/{self.proc.pid}/task/{self.proc.pid}/children").read_text().split()]
        total = 0.0
        for pid in pids:
            try:
                # Fields after the parenthesised command name; utime and stime are the 12th and 13th.
                fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
            except OSError:
                return None
            total += (int(fields[11]) + int(fields[12])) / tick
        return total

    def stop(self) -> None:
        if self.proc is None:
            return
        try:
            os.killpg(self.proc.pid, signal.SIGTERM)
            self.proc.wait(timeout=20)
        except (ProcessLookupError, subprocess.TimeoutExpired):
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.proc.pid, signal.SIGKILL)
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.proc.wait(timeout=5)
        self.proc = None


def queued_jobs(data_dir: Path) -> dict:
    """Jobs and delivery keys stored in the listener's SQLite queue (read directly, after the run)."""
    import sqlite3

    db = data_dir / "queue.db"
    with contextlib.closing(sqlite3.connect(db)) as conn:
        tasks = conn.execute("select count(*) from task").fetchone()[0]
        try:
            keys = conn.execute("select count(*) from guard_delivery").fetchone()[0]
        except sqlite3.OperationalError:
            keys = None
    return {"tasks": tasks, "delivery_keys": keys}


def machine_info() -> dict:
    return _machine_info(("gunicorn", "Flask", "huey"))


def _f(v: float | None, fmt: str) -> str:
    return "n/a" if v is None else fmt.format(v)


def render_markdown(result: dict) -> str:
    mi = result["machine"]
    p = result["params"]
    lines = [
        f"Machine: {mi['cpu']}, {mi['cores']} cores, {mi['os']}; Python {mi['python']}, "
        + ", ".join(f"{k} {v}" for k, v in mi["versions"].items())
        + f"; {mi['date_utc']}, commit {mi['commit']}. gunicorn --workers {p['workers']}, "
        f"{('workers of ' + str(p['gunicorn_config'])) if p['gunicorn_config'] else 'sync workers'}; "
        f"queue: SQLite, {'fsync=full' if p['fsync_full'] else 'default durability (synchronous=NORMAL)'}; "
        f"load generator: {p['client_procs']} processes of threads on the same machine, "
        f"{p['requests']} signed deliveries per run after {p['warmup']} warm-up requests; "
        f"load average before / after {mi['loadavg_before'][0]:.2f} / {mi.get('loadavg_after', ['?'])[0]}.",
        "",
        "| app | concurrency | req/s | p50 ms | p99 ms | server CPU ms / request | answers |",
        "| --- | ---: | ---: | ---: | ---: | ---: | --- |",
    ]
    for run in result["runs"]:
        codes = ", ".join(f"{k}: {v}" for k, v in sorted(run["codes"].items()))
        if run["errors"]:
            codes += f", errors: {run['errors']}"
        lines.append(f"| {run['app']} | {run['concurrency']} | {_f(run['rps'], '{:.0f}')} | "
                     f"{_f(run['p50_ms'], '{:.1f}')} | {_f(run['p99_ms'], '{:.1f}')} | "
                     f"{_f(run.get('server_cpu_ms_per_req'), '{:.2f}')} | {codes} |")
    lines += ["", "| concurrency | listener / bare throughput | target |", "| ---: | ---: | --- |"]
    for c, ratio in result["ratios"].items():
        lines.append(f"| {c} | {_f(ratio, '{:.0%}')} | ≥ 70 % (at 50); p99 ≤ 50 ms at 20 |")
    q = result.get("queue")
    if q:
        lines += ["", f"Queue after the runs: {q['tasks']} jobs stored, {q['delivery_keys']} delivery keys; "
                  f"202 answers sent (warm-up included): {result['accepted_total']}."]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--requests", type=int, default=5000, help="recorded requests per run (default 5000)")
    p.add_argument("--concurrency", default="50,20", help="comma list of concurrent senders (default 50,20)")
    p.add_argument("--warmup", type=int, default=300,
                   help="unrecorded requests before each run (default 300)")
    p.add_argument("--client-procs", type=int, default=2,
                   help="load generator processes; threads are spread over them (default 2)")
    p.add_argument("--workers", type=int, default=2, help="gunicorn workers for both apps (default 2)")
    p.add_argument("--gunicorn-config", type=Path, default=None,
                   help="a gunicorn config file for both apps, e.g. deploy/gunicorn.conf.py (default: none, "
                        "plain command-line flags)")
    p.add_argument("--no-multiproc-metrics", action="store_true",
                   help="do not set PROMETHEUS_MULTIPROC_DIR for the listener (it is set by default, as a "
                        "multi-worker deployment must)")
    p.add_argument("--fsync-full", action="store_true",
                   help="queue with GUARD_QUEUE=sqlite:///…?fsync=full (every intake fsynced: survives a "
                        "power cut) instead of the default synchronous=NORMAL (survives any process crash)")
    p.add_argument("--keep", action="store_true", help="keep the work folder (queue database, logs)")
    args = p.parse_args(argv)
    if args.gunicorn_config is not None:
        # gunicorn runs in an empty folder of its own: a relative path must not depend on that.
        args.gunicorn_config = args.gunicorn_config.resolve()
    levels = [int(c) for c in args.concurrency.split(",")]
    if args.requests > 100_000 or args.warmup > 100_000 or max(levels) > 500:
        p.error("bounded benchmark: at most 100,000 requests and 500 concurrent senders")

    work = Path(tempfile.mkdtemp(prefix="guard-webhook-bench-"))
    data_dir = work / "data"
    listener_env = {
        "GUARD_MLFLOW_SECRET": SECRET,
        "GUARD_DATA_DIR": str(data_dir),
        # Never contacted by the webhook route; set so the settings look like a real deployment.
        "MLFLOW_TRACKING_URI": "http://127.0.0.1:9",
        "PYTHONPATH": str(REPO),
    }
    if args.fsync_full:
        listener_env["GUARD_QUEUE"] = f"sqlite:///{data_dir / 'queue.db'}?fsync=full"
    if not args.no_multiproc_metrics:
        listener_env["PROMETHEUS_MULTIPROC_DIR"] = str(data_dir / "metrics")
        (data_dir / "metrics").mkdir(parents=True, exist_ok=True)
    servers = {
        "bare Flask": Gunicorn("bare", "bare_flask_app:app", work, args.workers, args.gunicorn_config,
                               pythonpath=REPO / "bench"),
        "listener": Gunicorn("listener", "listener.web:create_app()", work, args.workers,
                             args.gunicorn_config, env=listener_env, pythonpath=REPO),
    }
    result: dict = {"machine": machine_info(), "params": {**vars(args), "gunicorn_config":
                    str(args.gunicorn_config) if args.gunicorn_config else None}, "runs": []}
    accepted = 0
    try:
        for s in servers.values():
            s.start()
        for c in levels:
            for app, s in servers.items():
                warm = run_load(s.port, args.warmup, c, args.client_procs)
                accepted += int(warm["codes"].get("202", 0))
                cpu0 = s.cpu_seconds()
                run = run_load(s.port, args.requests, c, args.client_procs)
                cpu1 = s.cpu_seconds()
                # Server CPU per request barely depends on other load on the machine, unlike req/s.
                run["server_cpu_ms_per_req"] = ((cpu1 - cpu0) * 1000 / max(run["completed"], 1)
                                                if cpu0 is not None and cpu1 is not None else None)
                accepted += int(run["codes"].get("202", 0))
                run["app"] = app
                result["runs"].append(run)
                print(f"{app:10s} c={c:3d}: {_f(run['rps'], '{:7.0f}')} req/s"
                      f"  p50 {_f(run['p50_ms'], '{:.1f}')} ms  p99 {_f(run['p99_ms'], '{:.1f}')} ms"
                      f"  {run['codes']} errors={run['errors']}",
                      file=sys.stderr, flush=True)
    finally:
        for s in servers.values():
            s.stop()
    ratios = {}
    for c in levels:
        by = {r["app"]: r for r in result["runs"] if r["concurrency"] == c}
        bare, lis = by.get("bare Flask"), by.get("listener")
        ratios[str(c)] = (lis["rps"] / bare["rps"]) if bare and lis and bare["rps"] and lis["rps"] else None
    result["ratios"] = ratios
    result["machine"]["loadavg_after"] = [round(x, 2) for x in os.getloadavg()]
    result["accepted_total"] = accepted
    with contextlib.suppress(Exception):
        result["queue"] = queued_jobs(data_dir)
    md = render_markdown(result)
    print(md)
    OUT_DIR.mkdir(parents=True, exist_ok=True)
    stamp = _dt.datetime.now(_dt.timezone.utc).strftime("%Y%m%dT%H%M%SZ")
    (OUT_DIR / f"webhook-{stamp}.json").write_text(json.dumps(result, indent=2))
    (OUT_DIR / f"webhook-{stamp}.md").write_text(md + "\n")
    if args.keep:
        print(f"kept {work}", file=sys.stderr)
    else:
        shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
