"""Registry event -> verdict visible on the version, on the local stack (``make run``).

Starts ``deploy/local_stack.py`` exactly as ``make run`` does (its own MLflow server, listener and
worker; fresh temporary ``GUARD_DATA_DIR``, free loopback ports), then for each of N versions of a tiny
pyfunc model (two nested artifact files) measures, with ``MlflowClient`` polling every 20 ms:

* created: from the moment ``mlflow.register_model`` returns to the moment the version's
  ``validation.status`` tag is visible;
* alias: from the moment ``set_registered_model_alias`` returns to the moment a new
  ``validation.checked_at`` is visible (the tag has one-second resolution, so the alias is only set once
  the wall clock is past the second of the previous verdict).

It also splits each latency using the worker's results store (``started_at`` = the worker claimed the
job, ``finished_at`` = verdict stored) and a 10 ms watcher on the queue's task table (the job is in the
queue = the webhook delivery was accepted): delivery, queue wait, check + publish, and the client's
polling. Everything it starts is stopped by pid; the stack's data folder is removed unless ``--keep``.

    .venv/bin/python bench/bench_event_to_verdict.py                 # 20 versions
    .venv/bin/python bench/bench_event_to_verdict.py --versions 5    # quick check
    .venv/bin/python bench/bench_event_to_verdict.py --idle 70 --versions 3   # sparse events

Results are printed as markdown and written as JSON + markdown to ``bench/out/``.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as _dt
import json
import logging
import os
import re
import shutil
import signal
import socket
import sqlite3
import subprocess
import sys
import tempfile
import threading
import time
import warnings
from pathlib import Path
from typing import Any

from machine import machine_info as _machine_info

REPO = Path(__file__).resolve().parents[1]
OUT_DIR = REPO / "bench" / "out"
TARGET_P50_S = 1.5
MODEL_NAME = "guard-bench"
ALIAS = "champion"
START_TIMEOUT_S = 240.0
PARTS = ("to_queue_s", "queue_wait_s", "to_claim_s", "check_s", "finish_to_seen_s")
STOP_TIMEOUT_S = 60.0


# ------------------------------------------------------------------------------------------ helpers


def free_ports(n: int) -> list[int]:
    """``n`` distinct free loopback ports (held open together so they differ)."""
    socks = []
    try:
        for _ in range(n):
            s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            s.bind(("127.0.0.1", 0))
            socks.append(s)
        return [s.getsockname()[1] for s in socks]
    finally:
        for s in socks:
            s.close()


def descendants(pid: int) -> list[int]:
    """Every descendant of ``pid``, from /proc."""
    parents: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            ppid = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
        except (OSError, IndexError, ValueError):
            continue
        parents.setdefault(ppid, []).append(int(entry.name))
    found, todo = [], [pid]
    while todo:
        for child in parents.get(todo.pop(), []):
            found.append(child)
            todo.append(child)
    return found


def alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return False
    return state != "Z"


def pgid_of(pid: int) -> int | None:
    try:
        return os.getpgid(pid)
    except ProcessLookupError:
        return None


def group_alive(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    # Zombies still count for killpg: look for a live member.
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
            except (OSError, IndexError):
                continue
            if int(fields[2]) == pgid and fields[0] != "Z":
                return True
    return False


def machine_info() -> dict:
    return _machine_info(("mlflow", "huey", "gunicorn"))


def quantile(values: list[float], q: float) -> float | None:
    """Linear-interpolated quantile of ``values`` (None when empty)."""
    vals = sorted(v for v in values if v is not None)
    if not vals:
        return None
    pos = (len(vals) - 1) * q
    lo = int(pos)
    hi = min(lo + 1, len(vals) - 1)
    return vals[lo] + (vals[hi] - vals[lo]) * (pos - lo)


def parse_checked_at(value: str | None) -> float | None:
    if not value:
        return None
    try:
        return _dt.datetime.fromisoformat(value.replace("Z", "+00:00")).timestamp()
    except ValueError:
        return None


# ------------------------------------------------------------------------------------------- stack


class Stack:
    """``deploy/local_stack.py`` as a subprocess in its own session, stopped by pid with SIGINT."""

    def __init__(self, data_dir: Path) -> None:
        self.data_dir = data_dir
        self.mlflow_port, self.port = free_ports(2)
        self.log_path = data_dir.parent / "local_stack.log"
        env = {k: v for k, v in os.environ.items()
               if k not in ("MLFLOW_TRACKING_URI", "MLFLOW_REGISTRY_URI", "GUARD_LISTENER_URL",
                            "GUARD_MLFLOW_SECRET", "GUARD_QUEUE")}
        env.update({"GUARD_DATA_DIR": str(data_dir), "MLFLOW_PORT": str(self.mlflow_port),
                    "PORT": str(self.port), "PYTHONUNBUFFERED": "1"})
        self._log = open(self.log_path, "ab")  # noqa: SIM115 - open for the child's life
        self.proc = subprocess.Popen([sys.executable, str(REPO / "deploy" / "local_stack.py")], env=env,
                                     cwd=REPO, stdout=self._log, stderr=subprocess.STDOUT,
                                     stdin=subprocess.DEVNULL, start_new_session=True)
        self.tracking_uri = ""
        self.listener_url = ""
        self.known: set[int] = set()

    def wait_ready(self, timeout: float = START_TIMEOUT_S) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            text = self.log_path.read_text(errors="replace")
            ui = re.search(r"MLflow UI:\s+(\S+)", text)
            lis = re.search(r"Listener:\s+(\S+)", text)
            if ui and lis and "mlflow-version-guard is running" in text:
                if "could not register the MLflow webhook" in text:
                    raise RuntimeError("the stack started without its webhook:\n" + text[-3000:])
                self.tracking_uri, self.listener_url = ui.group(1), lis.group(1)
                self.remember()
                return
            if self.proc.poll() is not None:
                raise RuntimeError(f"local_stack.py exited with {self.proc.returncode}:\n{text[-3000:]}")
            time.sleep(0.25)
        raise RuntimeError(f"the stack did not start within {timeout:.0f}s:\n"
                           + self.log_path.read_text(errors="replace")[-3000:])

    def remember(self) -> None:
        """Record the stack's process tree (its children run in sessions of their own)."""
        self.known.update(descendants(self.proc.pid))

    def stop(self) -> dict[str, Any]:
        """SIGINT the launcher by pid, wait, then make sure its group and every recorded pid are gone."""
        if self.proc.poll() is None:
            self.remember()
        pids = {self.proc.pid, *self.known}
        groups = {g for g in (pgid_of(p) for p in pids) if g is not None}
        if self.proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(self.proc.pid, signal.SIGINT)
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.proc.wait(timeout=STOP_TIMEOUT_S)
        forced = []
        for sig in (signal.SIGTERM, signal.SIGKILL):
            left = [p for p in pids if alive(p)]
            left_groups = [g for g in groups if group_alive(g)]
            if not left and not left_groups:
                break
            forced.extend(left)
            for p in left:
                with contextlib.suppress(ProcessLookupError, PermissionError):
                    os.kill(p, sig)
            for g in left_groups:
                with contextlib.suppress(ProcessLookupError, PermissionError):
                    os.killpg(g, sig)
            deadline = time.monotonic() + 5
            while time.monotonic() < deadline and (any(alive(p) for p in pids)
                                                    or any(group_alive(g) for g in groups)):
                time.sleep(0.1)
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.proc.wait(timeout=5)
        self._log.close()
        return {"launcher_exit": self.proc.returncode, "forced": sorted(set(forced)),
                "left": sorted(p for p in pids if alive(p)),
                "groups_left": sorted(g for g in groups if group_alive(g))}


class QueueWatcher(threading.Thread):
    """Records when the queue's task table goes from empty to non-empty (wall clock, 10 ms resolution)."""

    def __init__(self, db: Path, interval: float = 0.01) -> None:
        super().__init__(daemon=True)
        self.db, self.interval = db, interval
        self.appeared: list[float] = []
        self.stop_event = threading.Event()

    def run(self) -> None:
        conn = None
        previous = 0
        while not self.stop_event.wait(self.interval):
            try:
                if conn is None:
                    conn = sqlite3.connect(f"file:{self.db}?mode=ro", uri=True, timeout=1)
                count = conn.execute("select count(*) from task").fetchone()[0]
            except sqlite3.Error:
                conn = None
                continue
            if count and not previous:
                self.appeared.append(time.time())
            previous = count
        if conn is not None:
            conn.close()

    def first_between(self, start: float, end: float) -> float | None:
        return next((t for t in self.appeared if start <= t <= end), None)


# ------------------------------------------------------------------------------------------- model


def make_assets(folder: Path, i: int) -> Path:
    """Two small files in nested folders, different for every version."""
    root = folder / f"assets-{i}"
    (root / "preprocessing" / "vocab").mkdir(parents=True)
    (root / "config").mkdir()
    (root / "preprocessing" / "vocab" / "labels.txt").write_text(f"setosa\nversicolor\nvirginica\n# {i}\n")
    (root / "config" / "params.json").write_text(json.dumps({"version": i, "threshold": 0.5}))
    return root


def wait_tags(client: Any, version: str, done: Any, poll: float, timeout: float) -> tuple[float, dict]:
    """Poll the version's tags until ``done(tags)``; returns (perf_counter when seen, tags)."""
    deadline = time.perf_counter() + timeout
    tags: dict[str, str] = {}
    while time.perf_counter() < deadline:
        tags = dict(client.get_model_version(MODEL_NAME, version).tags)
        if done(tags):
            return time.perf_counter(), tags
        time.sleep(poll)
    raise TimeoutError(f"v{version}: no verdict within {timeout:.0f}s (tags: "
                       f"{ {k: v for k, v in tags.items() if k != 'validation.report'} })")


def results_rows(data_dir: Path) -> list[dict[str, Any]]:
    db = data_dir / "results.db"
    if not db.exists():
        return []
    conn = sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=5)
    conn.row_factory = sqlite3.Row
    try:
        return [dict(r) for r in conn.execute(
            "select model, version, trigger, action, status, started_at, finished_at, duration_s "
            "from validations where model=? order by id", (MODEL_NAME,))]
    finally:
        conn.close()


def run(args: argparse.Namespace, stack: Stack, watcher: QueueWatcher) -> list[dict[str, Any]]:
    import mlflow
    import mlflow.pyfunc
    from mlflow import MlflowClient

    class Tiny(mlflow.pyfunc.PythonModel):
        def predict(self, context, model_input, params=None):  # noqa: ANN001 - pyfunc signature
            return model_input

    logging.getLogger("mlflow").setLevel(logging.ERROR)
    warnings.filterwarnings("ignore", module=r"mlflow(\..*)?$")
    mlflow.set_tracking_uri(stack.tracking_uri)
    mlflow.set_registry_uri(stack.tracking_uri)
    client = MlflowClient(tracking_uri=stack.tracking_uri, registry_uri=stack.tracking_uri)
    mlflow.set_experiment("guard-bench")
    client.create_registered_model(MODEL_NAME)
    samples = []
    with tempfile.TemporaryDirectory(prefix="guard-bench-assets-") as tmp:
        for i in range(1, args.versions + 1):
            if args.idle and i > 1:
                time.sleep(args.idle)
            assets = make_assets(Path(tmp), i)
            with mlflow.start_run(run_name=f"bench-{i}"):
                info = mlflow.pyfunc.log_model(name="model", python_model=Tiny(),
                                               artifacts={"assets": str(assets)}, pip_requirements=[])
            # --- created -> validation.status visible
            mv = mlflow.register_model(info.model_uri, MODEL_NAME)
            t0, w0 = time.perf_counter(), time.time()
            seen, tags = wait_tags(client, str(mv.version), lambda t: "validation.status" in t,
                                   args.poll, args.timeout)
            sample: dict[str, Any] = {"version": str(mv.version), "created_s": seen - t0,
                                      "created_status": tags.get("validation.status"), "created_t0": w0}
            # --- alias set -> new validation.checked_at visible
            previous = tags.get("validation.checked_at")
            prev_ts = parse_checked_at(previous)
            if prev_ts is not None:  # one-second resolution: only a later second can be told apart
                time.sleep(max(0.0, prev_ts + 1.0 - time.time() + 0.01))
            client.set_registered_model_alias(MODEL_NAME, ALIAS, mv.version)
            t1, w1 = time.perf_counter(), time.time()
            def new_check(t: dict, prev: str | None = previous) -> bool:
                return t.get("validation.checked_at") not in (None, prev)

            seen, tags = wait_tags(client, str(mv.version), new_check, args.poll, args.timeout)
            sample.update({"alias_s": seen - t1, "alias_status": tags.get("validation.status"),
                           "alias_t0": w1})
            samples.append(sample)
            print(f"v{mv.version}: created {sample['created_s']:.3f}s ({sample['created_status']}), "
                  f"alias {sample['alias_s']:.3f}s ({sample['alias_status']})", flush=True)
    # Where the time went, from the worker's results store and the queue watcher.
    rows = results_rows(stack.data_dir)
    last_claim = 0.0  # events run one at a time: a job queued before the previous claim is not this one's
    for s in samples:
        mine = [r for r in rows if r["version"] == s["version"]]
        for kind, key in (("created", "created_t0"), ("alias", "alias_t0")):
            t0 = s[key]
            row = next((r for r in mine if r["started_at"] and r["started_at"] >= t0 - 1.0
                        and ("alias" in (r["trigger"] or "")) == (kind == "alias")), None)
            if row is None:
                continue
            queued = watcher.first_between(max(t0 - 5.0, last_claim + 1e-6), row["started_at"])
            last_claim = row["started_at"]
            s[f"{kind}_split"] = {
                "to_queue_s": None if queued is None else queued - t0,
                "queue_wait_s": None if queued is None else row["started_at"] - queued,
                "to_claim_s": row["started_at"] - t0,
                "check_s": (row["finished_at"] or row["started_at"]) - row["started_at"],
                "finish_to_seen_s": s[f"{kind}_s"] - ((row["finished_at"] or row["started_at"]) - t0),
                "trigger": row["trigger"],
            }
    return samples


# ------------------------------------------------------------------------------------------ report


def _fmt(v: float | None) -> str:
    return "n/a" if v is None else f"{v:.3f}"


def summarise(samples: list[dict[str, Any]]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for kind in ("created", "alias"):
        vals = [s[f"{kind}_s"] for s in samples]
        out[kind] = {"n": len(vals), "p50": quantile(vals, 0.5), "p90": quantile(vals, 0.9),
                     "max": max(vals) if vals else None}
        parts: dict[str, Any] = {}
        for part in PARTS:
            pv = [s[f"{kind}_split"][part] for s in samples
                  if f"{kind}_split" in s and s[f"{kind}_split"][part] is not None]
            parts[part] = {"n": len(pv), "p50": quantile(pv, 0.5), "p90": quantile(pv, 0.9),
                           "max": max(pv) if pv else None}
        out[f"{kind}_split"] = parts
    return out


def render_markdown(result: dict[str, Any]) -> str:
    m, s = result["machine"], result["summary"]
    lines = [
        f"## Registry event -> verdict visible on the version ({result['versions']} versions, "
        f"local stack)",
        "",
        f"Machine: {m['cpu']}, {m['cores']} cores; {m['os']}, Python {m['python']}; "
        f"{', '.join(f'{k} {v}' for k, v in m['versions'].items())}; commit {m['commit']}; {m['date_utc']}",
        f"Load average (1/5/15 min): before {m['loadavg_before']}, after {m['loadavg_after']}",
        f"Client polls `get_model_version` every {result['poll_s'] * 1000:.0f} ms"
        + (f"; {result['idle_s']:.0f} s idle before each version" if result["idle_s"] else
           "; versions back to back"),
        "",
        "| event | n | p50 (s) | p90 (s) | max (s) | target |",
        "| --- | --- | --- | --- | --- | --- |",
    ]
    for kind, label in (("created", "version created → `validation.status` visible"),
                        ("alias", "alias set → new `validation.checked_at` visible")):
        r = s[kind]
        ok = r["p50"] is not None and r["p50"] <= TARGET_P50_S
        lines.append(f"| {label} | {r['n']} | {_fmt(r['p50'])} | {_fmt(r['p90'])} | {_fmt(r['max'])} | "
                     f"p50 ≤ {TARGET_P50_S} s: {'met' if ok else 'NOT met'} |")
    lines += ["", "Where the time goes (p50 / p90 / max, seconds; from the worker's results store and a "
              "10 ms watcher on the queue; a negative first column means the delivery was queued before the "
              "client's call returned):", "",
              "| event | call returns → job in queue | in queue → job claimed (huey poll, worker set-up) "
              "| call returns → claim "
              "| claim → verdict stored (check) | stored → seen by client (publish + poll) |",
              "| --- | --- | --- | --- | --- | --- |"]
    for kind in ("created", "alias"):
        sp = s[f"{kind}_split"]
        cells = [f"{_fmt(sp[p]['p50'])} / {_fmt(sp[p]['p90'])} / {_fmt(sp[p]['max'])}"
                 for p in PARTS]
        lines.append(f"| {kind} | " + " | ".join(cells) + " |")
    statuses = sorted({x for smp in result["samples"] for x in (smp["created_status"], smp["alias_status"])})
    lines += ["", f"Verdicts seen: {', '.join(str(x) for x in statuses)}. Stack stopped: "
              f"{result['stop']}"]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    ap.add_argument("--versions", type=int, default=20, help="model versions to register (default 20)")
    ap.add_argument("--poll", type=float, default=0.02, help="client polling interval, s (default 0.02)")
    ap.add_argument("--timeout", type=float, default=60.0, help="per-verdict timeout, s (default 60)")
    ap.add_argument("--idle", type=float, default=0.0,
                    help="seconds to wait before each version after the first (sparse events; default 0)")
    ap.add_argument("--keep", action="store_true", help="keep the stack's data folder")
    args = ap.parse_args(argv)
    if not 1 <= args.versions <= 1000 or args.poll <= 0 or args.timeout <= 0 or args.idle < 0:
        ap.error("--versions 1..1000, --poll > 0, --timeout > 0, --idle >= 0")

    result: dict[str, Any] = {"machine": machine_info(), "versions": args.versions, "poll_s": args.poll,
                              "idle_s": args.idle, "target_p50_s": TARGET_P50_S}
    work = Path(tempfile.mkdtemp(prefix="guard-bench-e2v-"))
    data_dir = work / "guard"
    print(f"starting the local stack (data: {data_dir}) ...", file=sys.stderr, flush=True)
    stack = Stack(data_dir)
    watcher = QueueWatcher(data_dir / "queue.db")
    status = 0
    try:
        stack.wait_ready()
        print(f"stack up: MLflow {stack.tracking_uri}, listener {stack.listener_url}", file=sys.stderr)
        watcher.start()
        result["samples"] = run(args, stack, watcher)
    except (Exception, KeyboardInterrupt) as exc:
        print(f"benchmark failed: {type(exc).__name__}: {exc}", file=sys.stderr)
        with contextlib.suppress(OSError):
            print(stack.log_path.read_text(errors="replace")[-4000:], file=sys.stderr)
        status = 1
    finally:
        watcher.stop_event.set()
        if watcher.is_alive():
            watcher.join(timeout=5)
        result["stop"] = stack.stop()
        if args.keep:
            print(f"kept {work}", file=sys.stderr)
        else:
            shutil.rmtree(work, ignore_errors=True)
    if status:
        print(f"stack stopped: {result['stop']}", file=sys.stderr)
        return status
    result["machine"]["loadavg_after"] = [round(x, 2) for x in os.getloadavg()]
    result["summary"] = summarise(result["samples"])
    md = render_markdown(result)
    print(md)
    OUT_DIR.mkdir(parents=True, exist_ok=True)
    stamp = _dt.datetime.now(_dt.timezone.utc).strftime("%Y%m%dT%H%M%SZ")
    (OUT_DIR / f"event_to_verdict-{stamp}.json").write_text(json.dumps(result, indent=2))
    (OUT_DIR / f"event_to_verdict-{stamp}.md").write_text(md + "\n")
    return 0 if not (result["stop"]["left"] or result["stop"]["groups_left"]) else 1


if __name__ == "__main__":
    sys.exit(main())
