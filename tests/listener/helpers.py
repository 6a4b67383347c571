"""Helpers for the ingress tests: signed deliveries and queue inspection."""

from __future__ import annotations

import json
import time
import uuid
from typing import Any

from listener import intake
from listener.config import Settings
from listener.protocol import databricks_signature, mlflow_signature
from listener.verdict import Verdict

MLFLOW_SECRET = "s3cr3t"
DATABRICKS_SECRET = "dbx-secret"


def mlflow_delivery(data: dict[str, Any] | None = None, *, entity: str = "model_version",
                    action: str = "created", delivery_id: str | None = None, secret: str = MLFLOW_SECRET,
                    ts: int | None = None, raw: bytes | None = None) -> tuple[dict[str, str], bytes]:
    """(headers, body) of an MLflow delivery signed the way ``mlflow server`` signs it, stamped now."""
    if raw is None:
        payload = {"entity": entity, "action": action, "timestamp": "2026-11-27T21:42:22+00:00",
                   "data": data if data is not None else {"name": "demo-model", "version": "1"}}
        raw = json.dumps(payload).encode()
    delivery_id = delivery_id or str(uuid.uuid4())
    stamp = str(int(time.time()) if ts is None else ts)
    return ({"Content-Type": "application/json", "X-MLflow-Delivery-Id": delivery_id,
             "X-MLflow-Timestamp": stamp,
             "X-MLflow-Signature": mlflow_signature(secret, delivery_id, stamp, raw)}, raw)


def databricks_delivery(event: str = "MODEL_VERSION_CREATED", *, secret: str = DATABRICKS_SECRET,
                        **fields: Any) -> tuple[dict[str, str], bytes]:
    """(headers, body) of a Databricks registry delivery signed with ``secret``, stamped now."""
    payload = {"event": event, "webhook_id": "0123abcd", "event_timestamp": int(time.time() * 1000),
               "model_name": "Airline_Delay_SparkML", "version": "8", "to_stage": "Production",
               "from_stage": "None", "text": "example", **fields}
    raw = json.dumps(payload).encode()
    signature = databricks_signature(secret, raw)
    headers = {"Content-Type": "application/json", "X-Databricks-Signature": signature}
    return headers, raw


def queued_messages(settings: Settings) -> list[Any]:
    """The huey messages waiting in the queue, decoded."""
    instance = intake.get_huey(settings)
    return [instance.serializer.deserialize(bytes(item)) for item in instance.storage.enqueued_items()]


def sample_verdict(status: str = "FAILED", n_diffs: int = 1, **kw: Any) -> Verdict:
    """A verdict on ``churn`` version 3 with ``n_diffs`` seal differences; ``kw`` overrides any field."""
    diffs = [{"path": f"data/deep/file_{i:06d}.bin", "kind": "changed",
              "detail": {"size_sealed": 10, "size_current": 11}} for i in range(n_diffs)]
    base = {"status": status, "model": "churn", "version": "3", "registry": "mlflow",
            "trigger": "model_version_alias.created", "summary": "1 difference from the seal",
            "seal_differences": diffs, "seal_digest": "ab" * 32, "duration_s": 1.234, "action": "check"}
    base.update(kw)
    return Verdict(**base)
