"""The workspace fake as processes of its own: the fake on a free loopback port, and the ``mlflow server``
behind it (SQLite, artifact root ``dbfs:/databricks/mlflow-tracking``), each stopped by its own pid."""

from __future__ import annotations

import json
import sys
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import requests

from tests.support.procs import ManagedProcess, MlflowServer, MotoS3Server, free_port, wait_http

REPO_ROOT = Path(__file__).resolve().parents[3]
S3_CREDENTIALS = {"access_key_id": "testing", "secret_access_key": "testing"}


def workspace_backend(root: Path) -> MlflowServer:
    """The ``mlflow server`` keeping the workspace's experiments, runs, logged models and registry."""
    return MlflowServer(root, artifact_root="dbfs:/databricks/mlflow-tracking")


class WorkspaceFake(ManagedProcess):
    """A Databricks workspace for the unmodified MLflow and databricks-sdk clients.

    ``client_env`` is the production configuration a client needs (``DATABRICKS_HOST``,
    ``DATABRICKS_TOKEN``) plus the S3 endpoint of Unity Catalog storage (the cloud, not the workspace).
    """

    def __init__(
        self, root: Path, s3: MotoS3Server, *, token: str, registration_delay_s: float = 0.0
    ) -> None:
        root.mkdir(parents=True, exist_ok=True)
        self.root, self.s3, self.token = root, s3, token
        self.port = free_port()
        self.bucket = f"uc-{uuid.uuid4().hex[:12]}"
        self.backend = workspace_backend(root / "backend")
        argv = [
            sys.executable,
            "-m",
            "tests.support.databricks_workspace",
            "--root",
            str(root / "workspace"),
            "--port",
            str(self.port),
            "--token",
            token,
            "--s3-bucket",
            self.bucket,
            "--s3-credentials",
            json.dumps(S3_CREDENTIALS),
            "--registration-delay",
            str(registration_delay_s),
        ]
        self._argv_tail = argv
        super().__init__(argv, cwd=REPO_ROOT, log_path=root / "workspace.log")

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def client_env(self) -> dict[str, str]:
        """Environment of a client in production configuration, minus the MLflow URIs."""
        return {
            "DATABRICKS_HOST": self.url,
            "DATABRICKS_TOKEN": self.token,
            "AWS_ENDPOINT_URL_S3": self.s3.endpoint_url,
            "AWS_DEFAULT_REGION": "us-east-1",
        }

    def start(self, timeout: float = 60.0) -> WorkspaceFake:
        import boto3

        boto3.client(
            "s3",
            endpoint_url=self.s3.endpoint_url,
            region_name="us-east-1",
            aws_access_key_id=S3_CREDENTIALS["access_key_id"],
            aws_secret_access_key=S3_CREDENTIALS["secret_access_key"],
        ).create_bucket(Bucket=self.bucket)
        self.backend.start()
        self.argv = [*self._argv_tail, "--backend", self.backend.url]
        super().start()
        try:
            wait_http(self.url + "/fake/state", timeout=timeout, proc=self.proc)
        except Exception as exc:
            self.stop()
            raise RuntimeError(f"workspace fake did not start: {exc}\n{self.log_tail()}") from exc
        return self

    def stop(self, timeout: float = 15.0) -> None:
        super().stop(timeout=timeout)
        self.backend.stop(timeout=3)

    # -- test controls -------------------------------------------------------------------------------
    def _get(self, path: str) -> Any:
        resp = requests.get(self.url + path, timeout=10)
        resp.raise_for_status()
        return resp.json()

    def state(self) -> dict[str, Any]:
        """Comments, transition requests, activities, webhooks (no secrets), deliveries, copies, UC."""
        return self._get("/fake/state")

    def recorded_requests(self) -> list[dict[str, Any]]:
        """Every request answered so far: method, route template, status, implemented, user agent."""
        return self._get("/fake/requests")

    def unimplemented_requests(self) -> list[dict[str, Any]]:
        """Requests the fake answered 501: endpoints a client called that the fake does not implement."""
        return [r for r in self.recorded_requests() if not r["implemented"]]

    def clear_recorded_requests(self) -> None:
        requests.delete(self.url + "/fake/requests", timeout=10).raise_for_status()

    def endpoints(self) -> list[dict[str, str]]:
        """The route table: every endpoint the fake implements."""
        return self._get("/fake/endpoints")

    def inject_fault(
        self,
        method: str,
        path: str,
        status: int,
        count: int = 1,
        *,
        kind: str = "json",
        error_code: str | None = None,
        retry_after: int | None = None,
    ) -> None:
        """Answer the next ``count`` calls of ``method path`` (a route template) with a failure.

        ``kind="html"`` answers a proxy's HTML page (e.g. a 502 from a load balancer) instead of JSON.
        """
        body = {
            "method": method,
            "path": path,
            "status": status,
            "count": count,
            "kind": kind,
            "error_code": error_code,
            "retry_after": retry_after,
        }
        requests.post(self.url + "/fake/faults", json=body, timeout=10).raise_for_status()

    def clear_faults(self) -> None:
        requests.delete(self.url + "/fake/faults", timeout=10).raise_for_status()

    def dbfs_local(self, dbfs_uri: str) -> Path:
        """The local folder or file behind a ``dbfs:/`` URI of the fake (write into it to tamper)."""
        return Path(self.state()["dbfs_root"]) / dbfs_uri.removeprefix("dbfs:").lstrip("/")

    def registry_copy(self, name: str, version: str | int, timeout: float = 30.0) -> Path:
        """The local folder of the workspace registry's own copy of a version, once it is READY."""
        key = f"{name}/{version}"
        st = self.wait_for(
            lambda s: key in s["registry_copies"] and key not in s["registering"],
            timeout=timeout,
            what=f"registration of {key}",
        )
        return self.dbfs_local(st["registry_copies"][key])

    def wait_for(
        self, predicate: Callable[[dict[str, Any]], Any], timeout: float = 30.0, what: str = "condition"
    ) -> dict[str, Any]:
        """Poll the state until ``predicate(state)`` is truthy; return that state."""
        deadline = time.monotonic() + timeout
        st = self.state()
        while not predicate(st):
            if time.monotonic() > deadline:
                raise TimeoutError(
                    f"workspace fake: {what} not reached within {timeout}s; state: {json.dumps(st)[:3000]}"
                )
            time.sleep(0.2)
            st = self.state()
        return st
