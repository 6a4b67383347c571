"""Registry webhooks of the workspace: their store and their real, signed deliveries.

Deliveries are JSON POSTs of the documented payload (``event, webhook_id, event_timestamp, model_name,
version, ...``) with ``X-Databricks-Signature`` = lowercase hex HMAC-SHA256(secret, raw body) and the
webhook's configured ``Authorization`` header, sent in order from one background thread, with a few
retries on 429 / 5xx / connection errors, like the workspace does.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import queue
import sys
import threading
import time
import uuid
from typing import Any

import requests

from tests.support.databricks_workspace.routing import ApiError


def now_ms() -> int:
    """Current time in epoch milliseconds, the unit of every Databricks timestamp."""
    return int(time.time() * 1000)


def sign(secret: str, body: bytes) -> str:
    """The ``X-Databricks-Signature`` value: lowercase hex HMAC-SHA256 of the raw body."""
    return hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


def public_webhook(hook: dict[str, Any]) -> dict[str, Any]:
    """A webhook as the API returns it: ``http_url_spec`` without secret and authorization."""
    out = {k: v for k, v in hook.items() if k != "http_url_spec"}
    spec = hook.get("http_url_spec")
    if spec:
        out["http_url_spec"] = {k: v for k, v in spec.items() if k in ("url", "enable_ssl_verification")}
    return out


class Webhooks:
    """Registered webhooks (secrets included), the delivery queue and the log of deliveries."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.hooks: dict[str, dict[str, Any]] = {}
        self.deliveries: list[dict[str, Any]] = []
        self.session = requests.Session()
        self.outbox: queue.Queue[tuple[dict[str, Any], dict[str, Any]]] = queue.Queue()
        threading.Thread(target=self._deliver_loop, name="webhook-delivery", daemon=True).start()

    def create(self, p: dict[str, Any]) -> dict[str, Any]:
        events = p.get("events")
        if not isinstance(events, list) or not events or not all(isinstance(e, str) for e in events):
            raise ApiError(400, "INVALID_PARAMETER_VALUE", "events must be a non-empty list of event names")
        spec = p.get("http_url_spec")
        if not (spec and spec.get("url")) and not p.get("job_spec"):
            raise ApiError(400, "INVALID_PARAMETER_VALUE", "One of http_url_spec or job_spec is required")
        hook = {
            "id": uuid.uuid4().hex,
            "events": events,
            "http_url_spec": spec,
            "job_spec": p.get("job_spec"),
            "model_name": p.get("model_name"),
            "status": p.get("status", "ACTIVE"),
            "description": p.get("description"),
            "creation_timestamp": now_ms(),
            "last_updated_timestamp": now_ms(),
        }
        hook = {k: v for k, v in hook.items() if v is not None}
        with self.lock:
            self.hooks[hook["id"]] = hook
        return hook

    def get(self, webhook_id: str) -> dict[str, Any]:
        with self.lock:
            hook = self.hooks.get(webhook_id)
        if hook is None:
            raise ApiError(404, "RESOURCE_DOES_NOT_EXIST", f"Webhook {webhook_id} does not exist")
        return hook

    def update(self, p: dict[str, Any]) -> dict[str, Any]:
        hook = self.get(str(p.get("id")))
        with self.lock:
            for key in ("events", "http_url_spec", "job_spec", "status", "description"):
                if key in p:
                    hook[key] = p[key]
            hook["last_updated_timestamp"] = now_ms()
        return hook

    def delete(self, webhook_id: str) -> None:
        self.get(webhook_id)
        with self.lock:
            self.hooks.pop(webhook_id, None)

    def listing(self, events: set[str], model_name: str | None) -> list[dict[str, Any]]:
        with self.lock:
            return [
                public_webhook(h)
                for h in self.hooks.values()
                if (not events or events & set(h["events"]))
                and (not model_name or h.get("model_name") == model_name)
            ]

    def fire(self, events: tuple[str, ...], model_name: str, payload: dict[str, Any]) -> None:
        """Queue deliveries of ``payload`` to every active HTTP webhook subscribed to one of ``events``."""
        with self.lock:
            hooks = list(self.hooks.values())
        for event in events:
            for hook in hooks:
                if hook["status"] != "ACTIVE" or event not in hook["events"] or not hook.get("http_url_spec"):
                    continue
                if hook.get("model_name") and hook["model_name"] != model_name:
                    continue
                body = {
                    "event": event,
                    "webhook_id": hook["id"],
                    "event_timestamp": now_ms(),
                    "model_name": model_name,
                    **payload,
                }
                self.outbox.put((hook, body))

    def deliver_now(self, hook: dict[str, Any], body: dict[str, Any], attempts: int = 1) -> dict[str, Any]:
        """POST one delivery (retrying connection errors, 429 and 5xx) and record it."""
        raw = json.dumps(body).encode()
        spec = hook.get("http_url_spec") or {}
        headers = {"Content-Type": "application/json", "User-Agent": "Databricks-Webhook/1.0"}
        if spec.get("secret"):
            headers["X-Databricks-Signature"] = sign(spec["secret"], raw)
        if spec.get("authorization"):
            headers["Authorization"] = spec["authorization"]
        record: dict[str, Any] = {
            "webhook_id": hook["id"],
            "event": body["event"],
            "url": spec.get("url"),
            "model_name": body.get("model_name"),
            "version": body.get("version"),
            "payload": body,
            "status_code": None,
            "response": None,
            "error": None,
            "attempts": 0,
        }
        for attempt in range(1, attempts + 1):
            record["attempts"] = attempt
            try:
                resp = self.session.post(spec["url"], data=raw, headers=headers, timeout=10)
                record.update(status_code=resp.status_code, response=resp.text, error=None)
                if resp.status_code < 500 and resp.status_code != 429:
                    break
            except requests.RequestException as exc:
                record["error"] = f"{type(exc).__name__}: {exc}"
            time.sleep(0.3 * attempt)
        with self.lock:
            self.deliveries.append(record)
        return record

    def _deliver_loop(self) -> None:
        while True:
            hook, body = self.outbox.get()
            try:
                self.deliver_now(hook, body, attempts=4)
            except Exception as exc:  # a delivery bug must not kill the thread that does all deliveries
                print(f"delivery failed: {exc!r}", file=sys.stderr, flush=True)

    def test_delivery(self, webhook_id: str, event: str | None) -> dict[str, Any]:
        """``registry-webhooks/test``: one synchronous delivery of an example payload."""
        hook = self.get(webhook_id)
        if not hook.get("http_url_spec"):
            raise ApiError(400, "INVALID_PARAMETER_VALUE", "Only HTTP webhooks can be tested")
        # Like the workspace: without an event, one of the webhook's own events is chosen.
        event = event or hook["events"][0]
        if event not in hook["events"]:
            raise ApiError(
                400, "INVALID_PARAMETER_VALUE", f"Webhook {webhook_id} is not subscribed to {event}"
            )
        body: dict[str, Any] = {
            "event": event,
            "webhook_id": webhook_id,
            "event_timestamp": now_ms(),
            "model_name": hook.get("model_name") or "Airline_Delay_SparkML",
            "version": "8",
            "text": "This is a webhook test.",
        }
        if "TRANSITION" in event:
            body.update(to_stage="Production", from_stage="None")
        if event == "COMMENT_CREATED":
            body["comment"] = "Raw text content of the comment"
        if event == "MODEL_VERSION_TAG_SET":
            body["tags"] = [{"key": "key1", "value": "value1"}]
        record = self.deliver_now(hook, body)
        if record["status_code"] is None:
            raise ApiError(400, "INVALID_PARAMETER_VALUE", f"Webhook URL unreachable: {record['error']}")
        return {"body": record["response"], "status_code": record["status_code"]}

    def snapshot(self) -> dict[str, Any]:
        with self.lock:
            return {
                "webhooks": [public_webhook(h) for h in self.hooks.values()],
                "deliveries": list(self.deliveries),
                "pending_deliveries": self.outbox.qsize(),
            }
