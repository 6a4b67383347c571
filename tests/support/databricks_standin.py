"""A stand-in for the Databricks workspace model registry, run as its own process in tests.

Databricks cannot be reached from the test machine, so this small Flask app behaves like the parts of a
workspace this project uses:

- The MLflow REST API (``/api/2.0/mlflow/...`` and ``/ajax-api/2.0/mlflow/...``) is forwarded to a real
  local ``mlflow server`` (local artifact root), so ``MlflowClient(tracking_uri=<stand-in url>)`` works.
- Like Databricks, the registry keeps its OWN copy of each new version's files (Databricks copies them to
  ``dbfs:/databricks/mlflow-registry/...``): on model-version creation the version's files are copied to
  ``<root>/mlflow-registry/<id>/models`` and ``get-download-uri`` answers with that copy. Tampering with
  the copy therefore makes run model and registry model really differ.
- The Databricks-only endpoints used through ``databricks-sdk`` ``WorkspaceClient().model_registry``
  (comments, transition requests, registry webhooks, Databricks stage transitions) keep their state in
  memory, with the request and response shapes of the SDK.
- Registry webhooks are delivered by the stand-in itself, as Databricks does: a JSON POST of the
  documented payload, ``X-Databricks-Signature`` = lowercase hex HMAC-SHA256(secret, raw body) and the
  configured ``Authorization`` header, in order, from one background thread, with a few retries.

Test helpers: ``GET /standin/state`` (comments, transition requests, activities, webhooks without their
secrets, deliveries, registry copies), ``POST /standin/faults`` (answer the next N calls of a path with a
given HTTP status, to exercise error handling) and ``DELETE /standin/faults``.

Run: ``python -m tests.support.databricks_standin --backend URL --root DIR --port PORT``, or from pytest
through :class:`DatabricksStandIn`.
"""

from __future__ import annotations

import argparse
import hashlib
import hmac
import itertools
import json
import queue
import shutil
import sys
import threading
import time
import uuid
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlparse

import requests
from flask import Flask, Response, request

from core.stages import STAGES, canonical_stage
from tests.support.procs import ManagedProcess, MlflowServer, free_port, wait_http

REPO_ROOT = Path(__file__).resolve().parents[2]
# Headers that must not be copied between the two HTTP hops of the forwarder.
HOP_HEADERS = {"host", "content-length", "transfer-encoding", "connection", "keep-alive", "accept-encoding",
               "content-encoding"}
STANDIN_USER = "standin-user@example.com"
WORKSPACE_ID = "1234567890123456"


def now_ms() -> int:
    """Current time in epoch milliseconds, the unit of every Databricks timestamp."""
    return int(time.time() * 1000)


def sign(secret: str, body: bytes) -> str:
    """The ``X-Databricks-Signature`` value: lowercase hex HMAC-SHA256 of the raw body."""
    return hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


class ApiError(Exception):
    """An error answered in the Databricks REST shape ``{"error_code", "message"}``."""

    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(message)
        self.status, self.code, self.message = status, code, message


def _local_path(uri: str) -> Path | None:
    """The local directory behind an artifact URI, when it is one."""
    if uri.startswith("file://"):
        return Path(unquote(urlparse(uri).path))
    if uri.startswith("/"):
        return Path(uri)
    return None


class StandInState:
    """Everything the stand-in keeps in memory. One lock: requests are few and small."""

    def __init__(self, root: Path, backend: str) -> None:
        self.root = root
        self.backend = backend.rstrip("/")
        self.lock = threading.RLock()
        self.ids = itertools.count(1)
        self.comments: list[dict[str, Any]] = []
        self.requests: list[dict[str, Any]] = []        # open transition requests
        self.activities: list[dict[str, Any]] = []      # everything that happened to versions
        self.webhooks: dict[str, dict[str, Any]] = {}   # id -> webhook incl. secret
        self.deliveries: list[dict[str, Any]] = []
        self.registry_copies: dict[str, str] = {}        # "name/version" -> local path of the copy
        self.registering: dict[str, str] = {}            # "name/version" -> PENDING_/FAILED_REGISTRATION
        self.faults: list[dict[str, Any]] = []
        self.session = requests.Session()
        self.outbox: queue.Queue[tuple[dict[str, Any], dict[str, Any]] | None] = queue.Queue()
        threading.Thread(target=self._deliver_loop, name="webhook-delivery", daemon=True).start()

    # -- webhooks -------------------------------------------------------------------------------
    def fire(self, base_event: str, model_name: str, payload: dict[str, Any],
             extra_events: tuple[str, ...] = ()) -> None:
        """Queue deliveries of ``payload`` to every active webhook subscribed to one of the events."""
        with self.lock:
            hooks = list(self.webhooks.values())
        for event in (base_event, *extra_events):
            for hook in hooks:
                if hook["status"] != "ACTIVE" or event not in hook["events"]:
                    continue
                if hook.get("model_name") and hook["model_name"] != model_name:
                    continue
                body = {"event": event, "webhook_id": hook["id"], "event_timestamp": now_ms(),
                        "model_name": model_name, **payload}
                self.outbox.put((hook, body))

    def deliver_now(self, hook: dict[str, Any], body: dict[str, Any], attempts: int = 1) -> dict[str, Any]:
        """POST one delivery (with retries on connection errors and 5xx) and record it."""
        raw = json.dumps(body).encode()
        spec = hook.get("http_url_spec") or {}
        headers = {"Content-Type": "application/json", "User-Agent": "databricks-standin-webhook/1"}
        if spec.get("secret"):
            headers["X-Databricks-Signature"] = sign(spec["secret"], raw)
        if spec.get("authorization"):
            headers["Authorization"] = spec["authorization"]
        record: dict[str, Any] = {"webhook_id": hook["id"], "event": body["event"], "url": spec.get("url"),
                                  "model_name": body.get("model_name"), "version": body.get("version"),
                                  "payload": body, "status_code": None, "response": None, "error": None,
                                  "attempts": 0}
        for attempt in range(1, attempts + 1):
            record["attempts"] = attempt
            try:
                resp = self.session.post(spec["url"], data=raw, headers=headers, timeout=10)
                record["status_code"], record["response"], record["error"] = resp.status_code, resp.text, None
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
            item = self.outbox.get()
            if item is None:
                return
            try:
                self.deliver_now(*item, attempts=4)
            except Exception as exc:  # a delivery bug must not kill the thread that does all deliveries
                print(f"delivery failed: {exc!r}", file=sys.stderr, flush=True)

    # -- registry copies --------------------------------------------------------------------------
    def start_registration(self, name: str, version: str, delay_s: float) -> None:
        """Copy the version's files into a folder of the registry's own, in the background.

        Like Databricks, the version is ``PENDING_REGISTRATION`` until its copy is complete (at least
        ``delay_s`` seconds), then ``READY``; ``FAILED_REGISTRATION`` if the copy fails.
        """
        key = f"{name}/{version}"
        dest = self.root / "mlflow-registry" / uuid.uuid4().hex / "models"
        with self.lock:
            self.registry_copies[key] = str(dest)
            self.registering[key] = "PENDING_REGISTRATION"

        def copy() -> None:
            try:
                time.sleep(delay_s)
                self._copy_files(name, version, dest)
            except Exception as exc:
                print(f"registration of {key} failed: {exc!r}", file=sys.stderr, flush=True)
                with self.lock:
                    self.registering[key] = "FAILED_REGISTRATION"
                return
            with self.lock:
                self.registering.pop(key, None)

        threading.Thread(target=copy, name=f"register-{key}", daemon=True).start()

    def _copy_files(self, name: str, version: str, dest: Path) -> None:
        resp = self.session.get(f"{self.backend}/api/2.0/mlflow/model-versions/get-download-uri",
                                params={"name": name, "version": version}, timeout=30)
        resp.raise_for_status()
        source_uri = resp.json()["artifact_uri"]
        dest.parent.mkdir(parents=True)
        src = _local_path(source_uri)
        if src is not None:
            shutil.copytree(src, dest, symlinks=True)
        else:
            # Artifacts behind HTTP: fetch them the way any MLflow client would.
            import mlflow.artifacts

            mlflow.artifacts.download_artifacts(artifact_uri=source_uri, dst_path=str(dest),
                                                tracking_uri=self.backend)

    def registration_status(self, mv: dict[str, Any]) -> None:
        """Overlay the stand-in's registration status on a model version dict from the backend."""
        with self.lock:
            status = self.registering.get(f"{mv.get('name')}/{mv.get('version')}")
        if status:
            mv["status"] = status

    def snapshot(self) -> dict[str, Any]:
        """A JSON-able view of the state, without webhook secrets or authorization values."""
        with self.lock:
            hooks = [public_webhook(h) for h in self.webhooks.values()]
            return {"comments": list(self.comments), "transition_requests": list(self.requests),
                    "activities": list(self.activities), "webhooks": hooks,
                    "deliveries": list(self.deliveries), "registry_copies": dict(self.registry_copies),
                    "registering": dict(self.registering),
                    "pending_deliveries": self.outbox.qsize()}


def public_webhook(hook: dict[str, Any]) -> dict[str, Any]:
    """A webhook as the API returns it: ``http_url_spec`` without secret and authorization."""
    out = {k: v for k, v in hook.items() if k != "http_url_spec"}
    spec = hook.get("http_url_spec")
    if spec:
        out["http_url_spec"] = {k: v for k, v in spec.items() if k in ("url", "enable_ssl_verification")}
    return out


def create_app(backend: str, root: Path, token: str | None = None,
               registration_delay_s: float = 0.3) -> Flask:
    """The stand-in Flask app, forwarding MLflow calls to ``backend`` and keeping files under ``root``.

    ``token``: the only bearer token accepted on Databricks endpoints (any non-empty one when None).
    ``registration_delay_s``: how long a new version stays PENDING_REGISTRATION at least.
    """
    app = Flask("databricks_standin")
    state = StandInState(root, backend)
    app.config["STANDIN_STATE"] = state

    def body_json() -> dict[str, Any]:
        data = request.get_json(silent=True, force=True)
        if not isinstance(data, dict):
            raise ApiError(400, "MALFORMED_REQUEST", "Request body must be a JSON object")
        return data

    def params() -> dict[str, Any]:
        """Fields of a request: the JSON body for POST/PATCH, the query string otherwise."""
        if request.method in ("POST", "PATCH", "PUT"):
            return body_json()
        return {k: v for k, v in request.args.items()}

    def need(p: dict[str, Any], *names: str) -> list[Any]:
        missing = [n for n in names if p.get(n) in (None, "")]
        if missing:
            raise ApiError(400, "INVALID_PARAMETER_VALUE", f"Missing required field: {missing[0]}")
        return [p[n] for n in names]

    def need_stage(stage: str) -> str:
        canonical = canonical_stage(stage)
        if canonical is not None:
            return canonical
        raise ApiError(400, "INVALID_PARAMETER_VALUE", f"Invalid stage {stage!r}; valid: {', '.join(STAGES)}")

    def require_auth() -> None:
        """Databricks-only endpoints need a bearer token, as the SDK sends with PAT auth."""
        auth = request.headers.get("Authorization", "")
        if not auth.startswith("Bearer ") or not auth[7:].strip():
            raise ApiError(401, "UNAUTHENTICATED", "Credential was not sent or was of an unsupported type")
        if token is not None and not hmac.compare_digest(auth[7:].strip(), token):
            raise ApiError(403, "PERMISSION_DENIED", "Invalid access token")

    def forward(path: str, body: bytes | None = None) -> requests.Response:
        headers = {k: v for k, v in request.headers.items() if k.lower() not in HOP_HEADERS}
        headers.pop("Authorization", None)  # the local server needs none; never pass tokens on
        return state.session.request(request.method, f"{state.backend}{path}",
                                     params=list(request.args.items(multi=True)),
                                     data=request.get_data() if body is None else body, headers=headers,
                                     timeout=60)

    def relay(resp: requests.Response) -> Response:
        return Response(resp.content, status=resp.status_code,
                        content_type=resp.headers.get("Content-Type", "application/json"))

    def model_version(name: str, version: str) -> dict[str, Any]:
        resp = state.session.get(f"{state.backend}/api/2.0/mlflow/model-versions/get",
                                 params={"name": name, "version": version}, timeout=30)
        if resp.status_code != 200:
            raise ApiError(404, "RESOURCE_DOES_NOT_EXIST", f"Model version {name!r} {version} does not exist")
        return resp.json()["model_version"]

    def backend_transition(name: str, version: str, stage: str, archive: bool) -> dict[str, Any]:
        resp = state.session.post(f"{state.backend}/api/2.0/mlflow/model-versions/transition-stage",
                                  json={"name": name, "version": version, "stage": stage,
                                        "archive_existing_versions": bool(archive)}, timeout=30)
        if resp.status_code != 200:
            raise ApiError(resp.status_code, "INVALID_STATE", resp.text)
        return resp.json()["model_version"]

    def fire_transitioned(name: str, version: str, from_stage: str, to_stage: str) -> None:
        text = (f"Registered model '{name}' version {version} transitioned from {from_stage} to {to_stage}.")
        state.fire("MODEL_VERSION_TRANSITIONED_STAGE", name,
                   {"version": str(version), "to_stage": to_stage, "from_stage": from_stage, "text": text},
                   extra_events=(f"MODEL_VERSION_TRANSITIONED_TO_{to_stage.upper()}",)
                   if to_stage != "None" else ())

    def activity(kind: str, name: str, version: str, **fields: Any) -> dict[str, Any]:
        act = {"id": str(next(state.ids)), "activity_type": kind, "creation_timestamp": now_ms(),
               "last_updated_timestamp": now_ms(), "user_id": STANDIN_USER, "model_name": name,
               "version": str(version), **{k: v for k, v in fields.items() if v is not None}}
        with state.lock:
            state.activities.append(act)
        return act

    def api_view(act: dict[str, Any]) -> dict[str, Any]:
        """An Activity as the API shows it (our bookkeeping fields removed)."""
        return {k: v for k, v in act.items() if k not in ("model_name", "version", "open")}

    # -- intercepted MLflow endpoints ---------------------------------------------------------------
    def mv_create(path: str) -> Response:
        resp = forward(path)
        if resp.status_code != 200:
            return relay(resp)
        data = resp.json()
        mv = data["model_version"]
        state.start_registration(mv["name"], mv["version"], registration_delay_s)
        state.registration_status(mv)
        # Delivered at creation, while the version may still be PENDING_REGISTRATION: receivers must wait.
        text = f"A new version {mv['version']} of registered model '{mv['name']}' was created."
        state.fire("MODEL_VERSION_CREATED", mv["name"], {"version": str(mv["version"]), "text": text})
        return Response(json.dumps(data), status=200, content_type="application/json")

    def mv_read(path: str) -> Response:
        """Reads of versions: the backend's answer with the registration status overlaid."""
        resp = forward(path)
        if resp.status_code != 200:
            return relay(resp)
        data = resp.json()
        for mv in [data.get("model_version") or {}, *(data.get("model_versions") or []),
                   *((data.get("registered_model") or {}).get("latest_versions") or [])]:
            if mv:
                state.registration_status(mv)
        return Response(json.dumps(data), status=200, content_type="application/json")

    def mv_download_uri(path: str) -> Response:
        name, version = need(dict(request.args), "name", "version")
        with state.lock:
            copy = state.registry_copies.get(f"{name}/{version}")
        if copy is None:  # versions created before the stand-in started: no copy of ours
            return relay(forward(path))
        return Response(json.dumps({"artifact_uri": copy}), status=200, content_type="application/json")

    def mv_set_tag(path: str) -> Response:
        p = body_json()
        resp = forward(path)
        if resp.status_code == 200:
            name, version = p.get("name", ""), str(p.get("version"))
            state.fire("MODEL_VERSION_TAG_SET", name,
                       {"version": version, "tags": [{"key": p.get("key"), "value": p.get("value")}],
                        "text": f"A user set a tag on registered model '{name}' version {version}."})
        return relay(resp)

    def mv_transition_oss(path: str) -> Response:
        p = body_json()
        name, version, stage = need(p, "name", "version", "stage")
        before = model_version(name, version).get("current_stage", "None")
        resp = forward(path)
        if resp.status_code == 200:
            activity("APPLIED_TRANSITION", name, version, from_stage=before, to_stage=need_stage(stage))
            fire_transitioned(name, str(version), before, need_stage(stage))
        return relay(resp)

    # -- Databricks-only endpoints ---------------------------------------------------------------
    def comments_create() -> dict[str, Any]:
        p = body_json()
        name, version, text = need(p, "name", "version", "comment")
        if not 1 <= len(text) <= 65535:
            raise ApiError(400, "INVALID_PARAMETER_VALUE", "Comment must be 1 to 65535 characters")
        model_version(name, version)
        c = {"id": uuid.uuid4().hex, "comment": text, "creation_timestamp": now_ms(),
             "last_updated_timestamp": now_ms(), "user_id": STANDIN_USER,
             "available_actions": ["EDIT_COMMENT", "DELETE_COMMENT"]}
        with state.lock:
            state.comments.append({**c, "model_name": name, "version": str(version)})
        state.fire("COMMENT_CREATED", name,
                   {"version": str(version), "comment": text,
                    "text": f"A user commented on registered model '{name}' version {version}."})
        return {"comment": c}

    def comments_update() -> dict[str, Any]:
        cid, text = need(body_json(), "id", "comment")
        with state.lock:
            for c in state.comments:
                if c["id"] == cid:
                    c.update(comment=text, last_updated_timestamp=now_ms())
                    return {"comment": {k: v for k, v in c.items() if k not in ("model_name", "version")}}
        raise ApiError(404, "RESOURCE_DOES_NOT_EXIST", f"Comment {cid} does not exist")

    def comments_delete() -> dict[str, Any]:
        (cid,) = need(dict(request.args), "id")
        with state.lock:
            state.comments = [c for c in state.comments if c["id"] != cid]
        return {}

    def tr_create() -> dict[str, Any]:
        p = body_json()
        name, version, stage = need(p, "name", "version", "stage")
        stage = need_stage(stage)
        current = model_version(name, version).get("current_stage", "None")
        act = activity("REQUESTED_TRANSITION", name, version, from_stage=current, to_stage=stage,
                       comment=p.get("comment"))
        act["open"] = True
        with state.lock:
            state.requests.append(act)
        state.fire("TRANSITION_REQUEST_CREATED", name,
                   {"version": str(version), "to_stage": stage, "from_stage": current,
                    "text": f"A user requested a transition of registered model '{name}' version {version} "
                            f"from {current} to {stage}."},
                   extra_events=(f"TRANSITION_REQUEST_TO_{stage.upper()}_CREATED",)
                   if stage != "None" else ())
        return {"request": {"creation_timestamp": act["creation_timestamp"], "to_stage": stage,
                            "user_id": STANDIN_USER, "comment": p.get("comment"),
                            "available_actions": ["APPROVE_TRANSITION_REQUEST", "REJECT_TRANSITION_REQUEST",
                                                  "CANCEL_TRANSITION_REQUEST"]}}

    def open_request(name: str, version: str, stage: str) -> dict[str, Any]:
        with state.lock:
            for r in state.requests:
                if r["model_name"] == name and r["version"] == str(version) and r["to_stage"] == stage:
                    return r
        raise ApiError(404, "RESOURCE_DOES_NOT_EXIST",
                       f"No open transition request to {stage} for model '{name}' version {version}")

    def close_request(req: dict[str, Any]) -> None:
        with state.lock:
            state.requests = [r for r in state.requests if r is not req]

    def tr_approve() -> dict[str, Any]:
        p = body_json()
        name, version, stage = need(p, "name", "version", "stage")
        if p.get("archive_existing_versions") is None:
            raise ApiError(400, "INVALID_PARAMETER_VALUE",
                           "Missing required field: archive_existing_versions")
        stage = need_stage(stage)
        req = open_request(name, version, stage)
        before = model_version(name, version).get("current_stage", "None")
        backend_transition(name, version, stage, p["archive_existing_versions"])
        close_request(req)
        act = activity("APPROVED_REQUEST", name, version, from_stage=before, to_stage=stage,
                       comment=p.get("comment"))
        fire_transitioned(name, str(version), before, stage)
        return {"activity": api_view(act)}

    def tr_reject() -> dict[str, Any]:
        p = body_json()
        name, version, stage = need(p, "name", "version", "stage")
        stage = need_stage(stage)
        req = open_request(name, version, stage)
        close_request(req)
        act = activity("REJECTED_REQUEST", name, version, from_stage=req["from_stage"], to_stage=stage,
                       comment=p.get("comment"))
        return {"activity": api_view(act)}

    def tr_delete() -> dict[str, Any]:
        p = dict(request.args)
        name, version, stage = need(p, "name", "version", "stage")
        req = open_request(name, version, need_stage(stage))
        close_request(req)
        act = activity("CANCELLED_REQUEST", name, version, from_stage=req["from_stage"],
                       to_stage=req["to_stage"], comment=p.get("comment"))
        return {"activity": api_view(act)}

    def tr_list() -> dict[str, Any]:
        name, version = need(dict(request.args), "name", "version")
        with state.lock:
            reqs = [api_view(r) for r in state.requests
                    if r["model_name"] == name and r["version"] == str(version)]
        return {"requests": reqs}

    def transition_stage_dbx() -> dict[str, Any]:
        p = body_json()
        name, version, stage = need(p, "name", "version", "stage")
        stage = need_stage(stage)
        before = model_version(name, version).get("current_stage", "None")
        mv = backend_transition(name, version, stage, bool(p.get("archive_existing_versions")))
        activity("APPLIED_TRANSITION", name, version, from_stage=before, to_stage=stage,
                 comment=p.get("comment"))
        fire_transitioned(name, str(version), before, stage)
        return {"model_version_databricks": mv}

    def wh_create() -> dict[str, Any]:
        p = body_json()
        (events,) = need(p, "events")
        if not isinstance(events, list) or not all(isinstance(e, str) for e in events):
            raise ApiError(400, "INVALID_PARAMETER_VALUE", "events must be a list of event names")
        spec = p.get("http_url_spec")
        if not spec or not spec.get("url"):
            raise ApiError(400, "INVALID_PARAMETER_VALUE",
                           "http_url_spec.url is required (job_spec is not supported here)")
        hook = {"id": uuid.uuid4().hex, "events": events, "http_url_spec": spec,
                "model_name": p.get("model_name"), "status": p.get("status", "ACTIVE"),
                "description": p.get("description"), "creation_timestamp": now_ms(),
                "last_updated_timestamp": now_ms()}
        hook = {k: v for k, v in hook.items() if v is not None}
        with state.lock:
            state.webhooks[hook["id"]] = hook
        return {"webhook": public_webhook(hook)}

    def wh_update() -> dict[str, Any]:
        p = body_json()
        (wid,) = need(p, "id")
        with state.lock:
            hook = state.webhooks.get(wid)
            if hook is None:
                raise ApiError(404, "RESOURCE_DOES_NOT_EXIST", f"Webhook {wid} does not exist")
            for key in ("events", "http_url_spec", "status", "description"):
                if key in p:
                    hook[key] = p[key]
            hook["last_updated_timestamp"] = now_ms()
            return {"webhook": public_webhook(hook)}

    def wh_list() -> dict[str, Any]:
        events = set(request.args.getlist("events"))
        model = request.args.get("model_name")
        with state.lock:
            hooks = [public_webhook(h) for h in state.webhooks.values()
                     if (not events or events & set(h["events"]))
                     and (not model or h.get("model_name") == model)]
        return {"webhooks": hooks}

    def wh_delete() -> dict[str, Any]:
        (wid,) = need(dict(request.args), "id")
        with state.lock:
            if state.webhooks.pop(wid, None) is None:
                raise ApiError(404, "RESOURCE_DOES_NOT_EXIST", f"Webhook {wid} does not exist")
        return {}

    def wh_test() -> dict[str, Any]:
        p = body_json()
        (wid,) = need(p, "id")
        with state.lock:
            hook = state.webhooks.get(wid)
        if hook is None:
            raise ApiError(404, "RESOURCE_DOES_NOT_EXIST", f"Webhook {wid} does not exist")
        event = p.get("event") or hook["events"][0]
        body = {"event": event, "webhook_id": wid, "event_timestamp": now_ms(),
                "model_name": hook.get("model_name") or "test-model", "version": "1",
                "text": "This is a test webhook delivery."}
        if event.startswith(("TRANSITION_REQUEST", "MODEL_VERSION_TRANSITIONED")):
            body.update(to_stage="Staging", from_stage="None")
        record = state.deliver_now(hook, body)
        if record["status_code"] is None:
            raise ApiError(400, "INVALID_PARAMETER_VALUE", f"Webhook URL unreachable: {record['error']}")
        return {"body": record["response"], "status_code": record["status_code"]}

    handlers = {
        ("POST", "/api/2.0/mlflow/comments/create"): comments_create,
        ("PATCH", "/api/2.0/mlflow/comments/update"): comments_update,
        ("DELETE", "/api/2.0/mlflow/comments/delete"): comments_delete,
        ("POST", "/api/2.0/mlflow/transition-requests/create"): tr_create,
        ("POST", "/api/2.0/mlflow/transition-requests/approve"): tr_approve,
        ("POST", "/api/2.0/mlflow/transition-requests/reject"): tr_reject,
        ("DELETE", "/api/2.0/mlflow/transition-requests/delete"): tr_delete,
        ("GET", "/api/2.0/mlflow/transition-requests/list"): tr_list,
        ("POST", "/api/2.0/mlflow/databricks/model-versions/transition-stage"): transition_stage_dbx,
        ("POST", "/api/2.0/mlflow/registry-webhooks/create"): wh_create,
        ("PATCH", "/api/2.0/mlflow/registry-webhooks/update"): wh_update,
        ("GET", "/api/2.0/mlflow/registry-webhooks/list"): wh_list,
        ("DELETE", "/api/2.0/mlflow/registry-webhooks/delete"): wh_delete,
        ("POST", "/api/2.0/mlflow/registry-webhooks/test"): wh_test,
    }
    mlflow_hooks = {
        ("POST", "/api/2.0/mlflow/model-versions/create"): mv_create,
        ("GET", "/api/2.0/mlflow/model-versions/get-download-uri"): mv_download_uri,
        ("GET", "/api/2.0/mlflow/model-versions/get"): mv_read,
        ("GET", "/api/2.0/mlflow/model-versions/search"): mv_read,
        ("GET", "/api/2.0/mlflow/registered-models/get"): mv_read,
        ("GET", "/api/2.0/mlflow/registered-models/get-latest-versions"): mv_read,
        ("POST", "/api/2.0/mlflow/registered-models/get-latest-versions"): mv_read,
        ("POST", "/api/2.0/mlflow/model-versions/set-tag"): mv_set_tag,
        ("POST", "/api/2.0/mlflow/model-versions/transition-stage"): mv_transition_oss,
    }

    def injected_fault(path: str) -> Response | None:
        with state.lock:
            for f in state.faults:
                if f["path"] == path and f["count"] > 0:
                    f["count"] -= 1
                    body = {"error_code": f.get("error_code", "TEMPORARILY_UNAVAILABLE"),
                            "message": f.get("message", "injected by the stand-in")}
                    return Response(json.dumps(body), status=f["status"], content_type="application/json")
        return None

    @app.errorhandler(ApiError)
    def on_api_error(exc: ApiError) -> Response:
        return Response(json.dumps({"error_code": exc.code, "message": exc.message}), status=exc.status,
                        content_type="application/json")

    @app.get("/.well-known/databricks-config")
    def well_known() -> dict[str, Any]:
        # The SDK probes this on start-up; a workspace answers with its identity.
        return {"oidc_endpoint": f"{request.host_url.rstrip('/')}/oidc", "workspace_id": WORKSPACE_ID}

    @app.get("/health")
    def health() -> str:
        return "OK"

    @app.get("/standin/state")
    def get_state() -> dict[str, Any]:
        return state.snapshot()

    @app.delete("/standin/faults")
    def clear_faults() -> dict[str, Any]:
        with state.lock:
            state.faults.clear()
        return {"ok": True}

    @app.post("/standin/faults")
    def add_fault() -> dict[str, Any]:
        p = body_json()
        path, status = need(p, "path", "status")
        with state.lock:
            state.faults.append({"path": path, "status": int(status), "count": int(p.get("count", 1)),
                                 **{k: p[k] for k in ("error_code", "message") if k in p}})
        return {"ok": True}

    @app.route("/<path:path>", methods=["GET", "POST", "PATCH", "DELETE", "PUT"])
    def dispatch(path: str) -> Any:
        full = "/" + path
        canonical = "/api/" + full[len("/ajax-api/"):] if full.startswith("/ajax-api/") else full
        fault = injected_fault(canonical)
        if fault is not None:
            return fault
        handler = handlers.get((request.method, canonical))
        if handler is not None:
            require_auth()
            return handler()
        hook = mlflow_hooks.get((request.method, canonical))
        if hook is not None:
            return hook(full)
        if full.startswith(("/api/", "/ajax-api/")):
            return relay(forward(full))
        raise ApiError(404, "ENDPOINT_NOT_FOUND", f"No API found for '{request.method} {full}'")

    return app


class DatabricksStandIn(ManagedProcess):
    """The stand-in as a process on a free loopback port, forwarding to ``mlflow_server``."""

    def __init__(self, root: Path, mlflow_server: MlflowServer | str, *, port: int | None = None,
                 token: str | None = None, registration_delay_s: float = 0.3) -> None:
        root.mkdir(parents=True, exist_ok=True)
        self.root = root
        self.port = port or free_port()
        backend = mlflow_server if isinstance(mlflow_server, str) else mlflow_server.url
        argv = [sys.executable, "-m", "tests.support.databricks_standin", "--backend", backend,
                "--root", str(root), "--port", str(self.port),
                "--registration-delay", str(registration_delay_s)]
        if token is not None:
            argv += ["--token", token]
        super().__init__(argv, cwd=REPO_ROOT, log_path=root / "standin.log")

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self, timeout: float = 30.0) -> DatabricksStandIn:
        super().start()
        try:
            wait_http(self.url + "/health", timeout=timeout, proc=self.proc)
        except Exception as exc:
            self.stop()
            raise RuntimeError(f"Databricks stand-in did not start: {exc}\n{self.log_tail()}") from exc
        return self

    def state(self) -> dict[str, Any]:
        """The stand-in's in-memory state (see ``GET /standin/state``)."""
        resp = requests.get(self.url + "/standin/state", timeout=10)
        resp.raise_for_status()
        return resp.json()

    def registry_copy(self, name: str, version: str | int) -> Path:
        """The folder holding the registry's own copy of a version (once READY): write into it to tamper."""
        key = f"{name}/{version}"
        st = self.wait_for(lambda s: key not in s["registering"], what=f"registration of {key}")
        return Path(st["registry_copies"][key])

    def inject_fault(self, path: str, status: int, count: int = 1, error_code: str | None = None) -> None:
        """Answer the next ``count`` calls of API ``path`` with HTTP ``status``."""
        body: dict[str, Any] = {"path": path, "status": status, "count": count}
        if error_code:
            body["error_code"] = error_code
        requests.post(self.url + "/standin/faults", json=body, timeout=10).raise_for_status()

    def clear_faults(self) -> None:
        """Forget every injected fault not yet used up."""
        requests.delete(self.url + "/standin/faults", timeout=10).raise_for_status()

    def wait_for(self, predicate, timeout: float = 30.0, what: str = "condition") -> dict[str, Any]:
        """Poll the state until ``predicate(state)`` is truthy; return that state."""
        deadline = time.monotonic() + timeout
        st = self.state()
        while not predicate(st):
            if time.monotonic() > deadline:
                raise TimeoutError(f"stand-in: {what} not reached within {timeout}s; state: "
                                   f"{json.dumps(st)[:3000]}")
            time.sleep(0.2)
            st = self.state()
        return st


def main(argv: list[str] | None = None) -> None:
    """Command line: run the stand-in in the foreground (threaded, single process: state is in memory)."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--backend", required=True, help="URL of the real mlflow server to forward to")
    ap.add_argument("--root", required=True, type=Path, help="folder for the registry copies")
    ap.add_argument("--port", type=int, default=0)
    ap.add_argument("--token", default=None, help="accept only this bearer token on Databricks endpoints")
    ap.add_argument("--registration-delay", type=float, default=0.3,
                    help="seconds a new version stays PENDING_REGISTRATION at least")
    args = ap.parse_args(argv)
    from werkzeug.serving import run_simple

    app = create_app(args.backend, args.root, args.token, args.registration_delay)
    run_simple("127.0.0.1", args.port or free_port(), app, threaded=True, use_reloader=False)


if __name__ == "__main__":
    main()
