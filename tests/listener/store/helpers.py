"""Requests, verdicts and owners as the worker writes them."""

from __future__ import annotations

import socket
import subprocess
import sys
import time
from typing import Any

from listener.verdict import Verdict


def request(key: str, model: str = "churn", version: str = "1") -> dict[str, Any]:
    """A journaled request (``ValidationRequest.to_dict()`` shape)."""
    return {"registry": "mlflow", "model": model, "version": version, "trigger": "model_version.created",
            "action": "seal_and_check", "to_stage": None, "alias": None, "gate": False, "delivery_key": key,
            "received_at": time.time()}


def verdict(status: str, model: str = "churn", version: str = "1", **kw: Any) -> Verdict:
    """A verdict of ``status`` for ``model`` version ``version``."""
    if status == "ERROR":
        return Verdict.error_verdict(model=model, version=version, registry="mlflow", trigger="t", **kw)
    return Verdict(status=status, model=model, version=version, registry="mlflow", trigger="t",
                   summary=f"{status.lower()} summary", **kw)


def dead_local_owner() -> str:
    """The owner token of a worker on this host whose process has exited."""
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return f"{socket.gethostname()}:{proc.pid}:deadbeef"


def other_host_owner(host: str = "host-b") -> str:
    """The owner token a worker on another host writes (its pid means nothing here)."""
    return f"{host}.invalid:4242:0123456789ab"
