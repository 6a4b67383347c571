"""How a sweep's time grows with the number of model versions (open-source MLflow).

Starts a real ``mlflow server`` (SQLite store) on a free loopback port, registers versions in steps
(default 500, 1000, 2000, spread over 20 registered models, each version pointing at the same tiny
artifact folder; the sweep reads no files), and after each step times two sweeps on a fresh store:

* full: the first sweep (no high-water mark): every version is read and gets a catch-up job;
* repeat: a second sweep right away: every version is read again (they all fall inside the mark's
  overlap window) and found journaled, nothing is handed out.

Jobs are counted, not run (the dispatcher records them): this measures the sweep itself (registry
pages, store look-ups, alias observation), not validations. Twenty aliases (one ``champion`` per
model) are set, so alias observation and re-verification scheduling are part of it. The server is
stopped by its pid.

    .venv/bin/python bench/bench_sweep.py
    .venv/bin/python bench/bench_sweep.py --steps 200,400

Prints a markdown table (seconds, and time per version relative to the smallest step).
"""

from __future__ import annotations

import argparse
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


def _timed_sweeps(url: str, data_dir: Path) -> tuple[float, float, int]:
    from listener.config import Settings
    from listener.store import close_all
    from listener.worker.sweep import run_sweep

    shutil.rmtree(data_dir, ignore_errors=True)
    data_dir.mkdir(parents=True)
    settings = Settings(tracking_uri=url, data_dir=data_dir, protected_aliases=["champion"])
    handed: list[str] = []

    def journal_it(request: dict, fresh: bool) -> None:
        # What a job's claim writes first: the journal row a later sweep finds.
        from listener.store import get_store

        get_store(settings.store_url).claim(request, "bench", job_key=request["delivery_key"])
        handed.append(request["delivery_key"])

    started = time.perf_counter()
    run_sweep(settings, journal_it)
    full = time.perf_counter() - started
    count = len(handed)
    started = time.perf_counter()
    run_sweep(settings, journal_it)
    repeat = time.perf_counter() - started
    close_all()
    return full, repeat, count


def main() -> int:
    """Run the benchmark; prints a markdown table."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--steps", default="500,1000,2000", help="version counts to measure at")
    args = parser.parse_args()
    steps = sorted(int(s) for s in args.steps.split(","))
    os.environ["MLFLOW_DISABLE_TELEMETRY"] = "true"
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
            full, repeat, count = _timed_sweeps(url, root / f"guard-{step}")
            rows.append((step, full, repeat, count))
        base_full = rows[0][1] / rows[0][0]
        base_repeat = rows[0][2] / rows[0][0]
        print("| versions | full sweep (s) | jobs handed out | repeat sweep (s) | per version vs first "
              "step (full / repeat) |")
        print("|---:|---:|---:|---:|---:|")
        for step, full, repeat, count in rows:
            print(f"| {step} | {full:.2f} | {count} | {repeat:.2f} | "
                  f"{full / step / base_full:.2f} / {repeat / step / base_repeat:.2f} |")
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
