"""Run the client flows against the workspace fake and record which endpoints each one calls.

``python -m tests.databricks.endpoint_record`` starts moto and the fake, runs every flow of
``client_flows.py`` in its own process in production configuration, and rewrites
``tests/databricks/fixtures/client-endpoints.json`` and ``tests/databricks/ENDPOINTS.md`` from what the
clients really called. The tests run the same flows and fail when a client calls an endpoint that the
fake does not implement or that the fixture does not list.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import os
import subprocess
import sys
import tempfile
import urllib.request
from pathlib import Path
from typing import Any

from tests.support.databricks_workspace import WorkspaceFake

HERE = Path(__file__).resolve().parent
REPO_ROOT = HERE.parents[1]
FLOWS_SCRIPT = HERE / "client_flows.py"
FIXTURE = HERE / "fixtures" / "client-endpoints.json"
DOCUMENT = HERE / "ENDPOINTS.md"
TOKEN = "dapi-workspace-fake-token"
WEBHOOK_SECRET = "fake-webhook-secret"
WORKSPACE_MODEL = "guard-workspace-model"
UC_MODEL = "main.guard.uc_model"
FILES_API_ROUTES = [
    ("HEAD", "/api/2.0/fs/directories{path}"),
    ("GET", "/api/2.0/fs/directories{path}"),
    ("PUT", "/api/2.0/fs/files{path}"),
    ("GET", "/api/2.0/fs/files{path}"),
    ("HEAD", "/api/2.0/fs/files{path}"),
    ("POST", "/api/2.0/fs/create-download-url"),
]


def production_env(fake: WorkspaceFake, registry_uri: str) -> dict[str, str]:
    """Exactly what a user sets for a workspace (plus PATH and an empty HOME): nothing else."""
    home = tempfile.mkdtemp(prefix="dbx-home-")
    return {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "HOME": home,
        "MLFLOW_TRACKING_URI": "databricks",
        "MLFLOW_REGISTRY_URI": registry_uri,
        **fake.client_env,
    }


def run_flow(fake: WorkspaceFake, registry_uri: str, flow: str, *args: str) -> dict[str, Any]:
    """One flow of ``client_flows.py`` in its own process; its JSON result (or a failure with its log)."""
    proc = subprocess.run(
        [sys.executable, str(FLOWS_SCRIPT), flow, *args],
        env=production_env(fake, registry_uri),
        cwd=tempfile.mkdtemp(prefix="dbx-flow-"),
        capture_output=True,
        text=True,
        timeout=600,
    )
    if proc.returncode != 0:
        raise AssertionError(
            f"flow {flow} failed ({proc.returncode}):\n{proc.stderr[-6000:]}\n"
            f"workspace log:\n{fake.log_tail()}"
        )
    return json.loads(proc.stdout.strip().splitlines()[-1])


def readiness_probe(fake: WorkspaceFake) -> dict[str, Any]:
    """What a readiness check calls today: ``GET <DATABRICKS_HOST>/`` without credentials."""
    with urllib.request.urlopen(fake.url + "/", timeout=10) as resp:  # noqa: S310 - loopback
        return {"status": resp.status}


def record_all(fake: WorkspaceFake, webhook_url: str) -> dict[str, dict[str, Any]]:
    """Run every flow; per flow its result and the requests the fake recorded during it."""
    plan: list[tuple[str, str, str, tuple[str, ...]]] = [
        ("workspace registry", "databricks", "workspace", ("/Shared/guard-workspace", WORKSPACE_MODEL)),
        ("unity catalog", "databricks-uc", "unity-catalog", ("/Shared/guard-uc", UC_MODEL)),
    ]
    out: dict[str, dict[str, Any]] = {}
    for label, registry_uri, flow, args in plan:
        fake.clear_recorded_requests()
        out[label] = {"result": run_flow(fake, registry_uri, flow, *args)}
        out[label]["requests"] = fake.recorded_requests()
    fake.clear_recorded_requests()
    version = out["workspace registry"]["result"]["version"]
    out["databricks-sdk model_registry"] = {
        "result": run_flow(fake, "databricks", "sdk", WORKSPACE_MODEL, version, webhook_url, WEBHOOK_SECRET)
    }
    out["databricks-sdk model_registry"]["requests"] = fake.recorded_requests()
    fake.clear_recorded_requests()
    for method, path in FILES_API_ROUTES:  # the Files API refusing: MLflow falls back to signed URLs
        fake.inject_fault(method, path, 403, count=10_000)
    try:
        out["fallback when the Files API refuses"] = {
            "result": run_flow(fake, "databricks", "log-model", "/Shared/guard-fallback")
        }
    finally:
        fake.clear_faults()
    out["fallback when the Files API refuses"]["requests"] = fake.recorded_requests()
    fake.clear_recorded_requests()
    out["readiness probe"] = {"result": readiness_probe(fake), "requests": fake.recorded_requests()}
    return out


def endpoint_table(
    recordings: dict[str, dict[str, Any]], implemented: list[dict[str, str]]
) -> list[dict[str, Any]]:
    """One row per (method, path template) a client called: which flows, implemented or not, area."""
    area = {(e["method"], e["path"]): e["area"] for e in implemented}
    rows: dict[tuple[str, str], dict[str, Any]] = {}
    for flow, rec in recordings.items():
        for r in rec["requests"]:
            key = (r["method"], r["path"])
            row = rows.setdefault(
                key,
                {
                    "method": r["method"],
                    "path": r["path"],
                    "area": area.get(key, "—"),
                    "implemented": key in area,
                    "flows": [],
                },
            )
            if flow not in row["flows"]:
                row["flows"].append(flow)
    return sorted(rows.values(), key=lambda r: (r["area"], r["path"], r["method"]))


def render_markdown(table: list[dict[str, Any]], implemented: list[dict[str, str]]) -> str:
    """The endpoint document: what the clients call, and what the fake implements besides."""
    called = {(r["method"], r["path"]) for r in table}
    lines = [
        "# Databricks endpoints the clients call",
        "",
        "Recorded from MLflow 3.17.2 and databricks-sdk 0.162.0, unmodified, in production configuration",
        "(`MLFLOW_TRACKING_URI=databricks`, `MLFLOW_REGISTRY_URI=databricks` | `databricks-uc`,",
        "`DATABRICKS_HOST`, `DATABRICKS_TOKEN`) against the workspace fake",
        "(`tests/support/databricks_workspace/`). Regenerate with",
        "`.venv/bin/python -m tests.databricks.endpoint_record`.",
        "",
        "| method | path | area | implemented | called by |",
        "| --- | --- | --- | --- | --- |",
    ]
    for r in table:
        lines.append(
            f"| {r['method']} | `{r['path']}` | {r['area']} | {'yes' if r['implemented'] else '**no**'} "
            f"| {', '.join(r['flows'])} |"
        )
    extra = [
        e for e in implemented if (e["method"], e["path"]) not in called and "forwarded" not in e["area"]
    ]
    lines += [
        "",
        "## Implemented by the fake, not called by these flows",
        "",
        "| method | path | area |",
        "| --- | --- | --- |",
    ]
    lines += [f"| {e['method']} | `{e['path']}` | {e['area']} |" for e in extra]
    forwarded = sum(1 for e in implemented if "forwarded" in e["area"])
    lines += [
        "",
        f"Besides these, the fake forwards the {forwarded} other endpoints of MLflow's tracking and",
        "registry REST services (`MlflowService`, `ModelRegistryService`) to the `mlflow server` behind it.",
        "",
        "## Refused by the client itself (no request)",
        "",
        "- `MlflowClient.set_registered_model_alias` / aliases on the workspace registry: MLflow raises",
        "  `Method 'set_registered_model_alias' is unsupported for models in the Workspace Model Registry`.",
        "",
    ]
    return "\n".join(lines)


def signature_ok(secret: str, raw: bytes, header: str | None) -> bool:
    """True when ``header`` is the workspace's signature of ``raw``."""
    return header is not None and hmac.compare_digest(
        hmac.new(secret.encode(), raw, hashlib.sha256).hexdigest(), header
    )


def main() -> None:
    """Record the flows and rewrite the fixture and the endpoint document."""
    from tests.support.procs import MotoS3Server
    from tests.support.receiver import Receiver

    root = Path(tempfile.mkdtemp(prefix="dbx-record-"))
    s3 = MotoS3Server(root / "moto").start()
    fake = WorkspaceFake(root / "fake", s3, token=TOKEN)
    receiver = Receiver()
    try:
        fake.start()
        recordings = record_all(fake, receiver.url)
        implemented = fake.endpoints()
    finally:
        receiver.close()
        fake.stop()
        s3.stop()
    table = endpoint_table(recordings, implemented)
    FIXTURE.parent.mkdir(parents=True, exist_ok=True)
    FIXTURE.write_text(
        json.dumps(
            {
                "_about": "Endpoints MLflow 3.17.2 and databricks-sdk 0.162.0 call in the "
                "flows of tests/databricks/client_flows.py (see ENDPOINTS.md).",
                "endpoints": table,
            },
            indent=1,
        )
        + "\n"
    )
    DOCUMENT.write_text(render_markdown(table, implemented))
    print(f"{len(table)} endpoints; {sum(not r['implemented'] for r in table)} not implemented")


if __name__ == "__main__":
    main()
