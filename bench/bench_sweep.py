"""How a sweep's time grows with the number of model versions (open-source MLflow).

Starts a real ``mlflow server`` (SQLite store) on a free loopback port, registers versions in steps
(default 250, 500, 1000, 2000, spread over 20 registered models, each version pointing at the same tiny
artifact folder; the sweep reads no files), and after each step times four sweeps on a fresh store, each
on what the previous one left:

* full: the first sweep (no high-water mark): every version is read and gets a catch-up job;
* repeat: a second sweep right away: every version is read again (they all fall inside the mark's
  5-minute overlap window, being minutes old) and found journaled, nothing is handed out;
* steady: the mark moved one overlap forward, the state of a registry whose versions are older than the
  overlap when nothing new came: the sweep reads one page and stops at the mark;
* production-stage: the steady sweep with ``GUARD_REVERIFY=production-stage``, which reads every version
  (a stage transition creates no version the mark would see).

Jobs are counted, not run (the dispatcher records them): this measures the sweep itself (registry
pages, store look-ups, alias observation), not validations. Twenty aliases (one ``champion`` per
model) are set, so alias observation and re-verification scheduling are part of it. The server is
stopped by its pid.

    .venv/bin/python bench/bench_sweep.py
    .venv/bin/python bench/bench_sweep.py --steps 200,400

Prints a markdown table (seconds, versions read, and time per version relative to the smallest step)
and a JSON line with the raw figures and the load average before and after.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

MODELS = 20


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _start_server(root: Path) -> tuple[subprocess.Popen, str]:
    port = _free_port()
    argv = [str(Path(sys.executable).parent / "mlflow"), "server", "--host", "127.0.0.1", "--port", str(port),
            "--backend-store-uri", f"sqlite:///{root / 'mlflow.db'}", "--workers", "1",
            "--default-artifact-root", str(root / "artifacts")]
    proc = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 600
    while time.monotonic() < deadline:
        try:
            urllib.request.urlopen(url + "/health", timeout=2)
            return proc, url
        except OSError:
            time.sleep(0.5)
    proc.kill()
    raise RuntimeError("mlflow server did not start")


def _register(client: Any, source: str, run_id: str, start: int, stop: int) -> None:
    for i in range(start, stop):
        client.create_model_version(f"bench-sweep-{i % MODELS}", source, run_id=run_id)


def _timed(settings: Any, dispatch: Any) -> tuple[float, int]:
    from listener.worker.sweep import run_sweep

    started = time.perf_counter()
    report = run_sweep(settings, dispatch)
    return time.perf_counter() - started, report.versions_scanned


def _timed_sweeps(url: str, data_dir: Path) -> dict[str, Any]:
    """The four sweeps of one step, each on the store the previous one left (see the module docstring)."""
    import dataclasses

    from listener.config import Settings
    from listener.store import close_all, get_store
    from listener.worker.sweep import OVERLAP_MS

    shutil.rmtree(data_dir, ignore_errors=True)
    data_dir.mkdir(parents=True)
    # GUARD_SWEEP_SINCE=all: the first sweep measured is a full catch-up of every version (a new deployment's
    # first sweep otherwise starts at its first contact and reads nothing older).
    settings = Settings(tracking_uri=url, data_dir=data_dir, protected_aliases=["champion"], sweep_since=0.0)
    handed: list[str] = []

    def journal_it(request: dict, fresh: bool) -> None:
        # What a job's claim writes first: the journal row a later sweep finds.
        get_store(settings.store_url).claim(request, "bench", job_key=request["delivery_key"])
        handed.append(request["delivery_key"])

    out: dict[str, Any] = {}
    out["full_s"], out["full_read"] = _timed(settings, journal_it)
    out["jobs"] = len(handed)
    out["repeat_s"], out["repeat_read"] = _timed(settings, journal_it)
    # Every version here is minutes old at most, so all of them sit in the mark's overlap window. Moving the
    # mark one overlap forward gives the state of a registry whose newest version came OVERLAP after these.
    store = get_store(settings.store_url)
    mark = "sweep:versions:mlflow"
    store.set_mark(mark, float(store.get_mark(mark) or 0) + OVERLAP_MS)
    out["steady_s"], out["steady_read"] = _timed(settings, journal_it)
    stage = dataclasses.replace(settings, reverify_scope="production-stage")
    out["stage_s"], out["stage_read"] = _timed(stage, journal_it)
    out["jobs_after_full"] = len(handed) - out["jobs"]
    close_all()
    return out


def main() -> int:
    """Run the benchmark; prints a markdown table."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--steps", default="250,500,1000,2000", help="version counts to measure at")
    args = parser.parse_args()
    steps = sorted(int(s) for s in args.steps.split(","))
    os.environ["MLFLOW_DISABLE_TELEMETRY"] = "true"
    load_before = os.getloadavg()
    root = Path(tempfile.mkdtemp(prefix="bench-sweep-"))
    proc, url = _start_server(root)
    try:
        from mlflow import MlflowClient

        client = MlflowClient(tracking_uri=url)
        folder = root / "model"
        folder.mkdir()
        (folder / "MLmodel").write_text("flavors: {}\n")
        run = client.create_run(client.create_experiment("bench-sweep"))
        client.log_artifacts(run.info.run_id, str(folder), "model")
        source = f"{run.info.artifact_uri}/model"
        for m in range(MODELS):
            client.create_registered_model(f"bench-sweep-{m}")
        done = 0
        rows = []
        for step in steps:
            _register(client, source, run.info.run_id, done, step)
            if done == 0:
                for m in range(MODELS):
                    client.set_registered_model_alias(f"bench-sweep-{m}", "champion", "1")
            done = step
            rows.append((step, _timed_sweeps(url, root / f"guard-{step}")))
            print(f"{step}: {rows[-1][1]}", file=sys.stderr)
        first_step, first = rows[0]
        print("| versions | full sweep s (read) | jobs | repeat s (read) | steady s (read) | "
              "production-stage s | full / repeat / steady / production-stage, s per version vs first step |")
        print("|---:|---:|---:|---:|---:|---:|---:|")
        for step, r in rows:
            ratios = " / ".join(f"{r[k] / step / (first[k] / first_step):.2f}"
                                for k in ("full_s", "repeat_s", "steady_s", "stage_s"))
            print(f"| {step} | {r['full_s']:.2f} ({r['full_read']}) | {r['jobs']} | {r['repeat_s']:.2f} "
                  f"({r['repeat_read']}) | {r['steady_s']:.2f} ({r['steady_read']}) | {r['stage_s']:.2f} | "
                  f"{ratios} |")
        print(json.dumps({"load_before": load_before, "load_after": os.getloadavg(), "rows": rows}))
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
        shutil.rmtree(root, ignore_errors=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
