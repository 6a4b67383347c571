"""The parsers' outcomes as the web layer answers them, and the delivery fixtures."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from listener import protocol
from listener.protocol import Ignored, Rejected, ValidationRequest


@dataclass(frozen=True)
class Decision:
    """A parser's outcome as the web layer answers it: status, JSON body, the request to enqueue."""

    status_code: int
    body: dict
    request: ValidationRequest | None = None


def _decide(parse, *args, **kwargs) -> Decision:
    try:
        request = parse(*args, **kwargs)
    except (Rejected, Ignored) as exc:
        return Decision(exc.status_code, exc.body)
    return Decision(202, {"status": "queued", "id": None}, request)


def parse_mlflow_delivery(*args, **kwargs) -> Decision:
    return _decide(protocol.parse_mlflow_delivery, *args, **kwargs)


def parse_databricks_delivery(*args, **kwargs) -> Decision:
    return _decide(protocol.parse_databricks_delivery, *args, **kwargs)

# Real deliveries captured from an MLflow 3.18 server (webhook secret "s3cr3t") and the documented
# Databricks example payloads.
FIXTURES = Path(__file__).parent / "fixtures"


def load_mlflow_deliveries() -> list[dict]:
    lines = (FIXTURES / "mlflow-deliveries.jsonl").read_text().splitlines()
    return [json.loads(line) for line in lines if line.strip()]


def load_databricks_payloads() -> dict[str, dict]:
    return {k: v for k, v in json.loads((FIXTURES / "databricks-payloads.json").read_text()).items()
            if not k.startswith("_")}
