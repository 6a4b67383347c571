"""Benchmark: ``check_model_version`` of a pickle-free model with and without a policy, in one run.

Builds the synthetic model of ``bench_compare.py`` (default about 1 GiB: 4 large shards plus about
3,000 small files in nested folders), gives it a real MLmodel, requirements.txt and input example,
logs it as a run's artifacts on a SQLite tracking store and registers it, then checks that version
alternately without a policy and with every static check on (``mlmodel``, ``signature``,
``input_example``, ``serialization`` with ``deny: [pickle]`` and ``scan: true``, ``requirements``,
``limits``, ``metadata``, ``metrics`` with ``not_worse_than``; ``load_predict`` off). Each check runs
in a fresh process after the imports, so the rows compare the check itself: wall and CPU time.
The page cache is warmed first. The ratio *with / without* is the figure (target ≤ 1.1).

Usage::

    .venv/bin/python bench/bench_policy.py [--size-mib 1024] [--small-files 3000] [--repeat 3]
        [--workdir DIR] [--keep]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(HERE.parent))

from bench_compare import build_model  # noqa: E402
from machine import machine_info  # noqa: E402

MODEL = "bench-policy"
POLICY = """\
version: 1
default:
  mlmodel: required
  signature: required
  input_example: required
  serialization: {deny: [pickle], scan: true}
  requirements: {pins: exact, forbid: [index-url, vcs, local-path, url]}
  limits: {max_total_bytes: 20GiB, max_files: 100000}
  metadata: {description_min_chars: 0}
  metrics:
    f1: {min: 0.1, not_worse_than: "@champion"}
"""
MLMODEL = """\
artifact_path: model
flavors:
  python_function:
    loader_module: mlflow.pyfunc.loaders.code_model
    model_code_path: model_code.py
    python_version: 3.11.7
mlflow_version: 3.17.2
saved_input_example_info: {artifact_path: input_example.json, type: json_object}
signature:
  inputs: '[{"type": "double", "name": "x", "required": true}]'
  outputs: null
"""


def child(store: str, policy_file: str | None) -> None:
    """One timed check, after the imports; prints its wall and CPU seconds as JSON."""
    import time

    from core.check import check_model_version
    from core.policy.loader import load_policy

    policy = load_policy(policy_file) if policy_file else None
    wall, cpu = time.perf_counter(), time.process_time()
    result = check_model_version(MODEL, "1", tracking_uri=store, policy=policy)
    out = {"wall_s": time.perf_counter() - wall, "cpu_s": time.process_time() - cpu, "status": result.status,
           "policy": result.policy.to_dict() if result.policy else None}
    print(json.dumps(out))


def prepare(workdir: Path, size_mib: int, small_files: int) -> tuple[str, dict]:
    """The model built, logged and registered; returns the tracking URI and the build figures."""
    import mlflow
    from mlflow import MlflowClient

    src = workdir / "model"
    built = build_model([src], size_mib, small_files)
    (src / "MLmodel").write_text(MLMODEL)
    (src / "requirements.txt").write_text("mlflow==3.17.2\nnumpy==2.4.6\n")
    (src / "input_example.json").write_text('{"x": [1.0, 2.0]}')
    (src / "model_code.py").write_text("import mlflow\n")
    store = f"sqlite:///{workdir / 'mlflow.db'}"
    mlflow.set_tracking_uri(store)
    exp = mlflow.create_experiment("bench", artifact_location=str(workdir / "artifacts"))
    with mlflow.start_run(experiment_id=exp) as run:
        mlflow.log_metric("f1", 0.9)
        mlflow.log_artifacts(str(src), "model")
    shutil.rmtree(src)
    client = MlflowClient(store)
    client.create_registered_model(MODEL)
    client.create_model_version(MODEL, f"{run.info.artifact_uri}/model", run_id=run.info.run_id)
    return store, built


def measure(store: str, policy_file: str | None) -> dict:
    argv = [sys.executable, __file__, "--child", store] + ([policy_file] if policy_file else [])
    out = subprocess.run(argv, capture_output=True, text=True, check=True, cwd=str(HERE.parent),
                         env={**os.environ, "MLFLOW_LOGGING_LEVEL": "ERROR"})
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--size-mib", type=int, default=1024)
    parser.add_argument("--small-files", type=int, default=3000)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--workdir", type=Path)
    parser.add_argument("--keep", action="store_true")
    parser.add_argument("--child", nargs="+", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(args.child[0], args.child[1] if len(args.child) > 1 else None)
        return 0
    workdir = Path(args.workdir or tempfile.mkdtemp(prefix="guard-bench-policy-"))
    workdir.mkdir(parents=True, exist_ok=True)
    info = machine_info(("mlflow", "modelaudit-picklescan"))
    try:
        store, built = prepare(workdir, args.size_mib, args.small_files)
        policy_file = workdir / "policy.yaml"
        policy_file.write_text(POLICY)
        measure(store, None)  # warm the page cache
        rows: dict[str, list[dict]] = {"without": [], "with": []}
        for _ in range(args.repeat):
            rows["without"].append(measure(store, None))
            rows["with"].append(measure(store, str(policy_file)))
        with_policy = rows["with"][-1]
        if with_policy["status"] != "PASSED":
            print(f"unexpected: the policy check did not pass: {with_policy['policy']}", file=sys.stderr)
            return 1
        stats = ("wall_s", "cpu_s")
        med = {k: {m: statistics.median(r[m] for r in v) for m in stats} for k, v in rows.items()}
        best = {k: {m: min(r[m] for r in v) for m in stats} for k, v in rows.items()}
        result = {
            "machine": {**info, "loadavg_after": [round(x, 2) for x in os.getloadavg()]},
            "model": {"size_mib": args.size_mib, "small_files": args.small_files, **built},
            "repeat": args.repeat, "median": med, "best": best,
            "ratio_wall_median": med["with"]["wall_s"] / med["without"]["wall_s"],
            "ratio_cpu_median": med["with"]["cpu_s"] / med["without"]["cpu_s"],
            "ratio_wall_best": best["with"]["wall_s"] / best["without"]["wall_s"],
            "checks": [c["check"] for c in with_policy["policy"]["checks"]],
        }
    finally:
        if not args.keep:
            shutil.rmtree(workdir, ignore_errors=True)
    out_dir = HERE / "out"
    out_dir.mkdir(exist_ok=True)
    (out_dir / "bench_policy.json").write_text(json.dumps(result, indent=2))
    print(f"model: {args.size_mib} MiB, {built['files']} files; load average before "
          f"{info['loadavg_before']}, after {result['machine']['loadavg_after']}")
    print("| check | wall median (s) | CPU median (s) | wall best (s) |\n| --- | --- | --- | --- |")
    for k in ("without", "with"):
        print(f"| {k} policy | {med[k]['wall_s']:.3f} | {med[k]['cpu_s']:.3f} | {best[k]['wall_s']:.3f} |")
    print(f"ratio with/without: wall {result['ratio_wall_median']:.3f} (median), "
          f"{result['ratio_wall_best']:.3f} (best); CPU {result['ratio_cpu_median']:.3f} (median)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
