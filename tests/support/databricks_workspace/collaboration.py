"""Comments, transition requests and Databricks stage transitions of the workspace registry.

The request and response shapes are those ``databricks-sdk`` ``WorkspaceClient().model_registry``
sends and parses (``/api/2.0/mlflow/comments/*``, ``transition-requests/*``,
``databricks/model-versions/transition-stage``); the stage itself is kept by the backend registry.
"""

from __future__ import annotations

import itertools
import threading
import uuid
from typing import Any

from flask import request

from tests.support.databricks_workspace.backend import Backend
from tests.support.databricks_workspace.routing import ApiError, Router, body_json, need
from tests.support.databricks_workspace.webhooks import Webhooks, now_ms

STAGES = ("None", "Staging", "Production", "Archived")
FAKE_USER = "workspace-user@example.com"
REQUEST_ACTIONS = ["APPROVE_TRANSITION_REQUEST", "REJECT_TRANSITION_REQUEST", "CANCEL_TRANSITION_REQUEST"]


def need_stage(stage: Any) -> str:
    """A stage name in its canonical case, or 400."""
    for s in STAGES:
        if s.lower() == str(stage).lower():
            return s
    raise ApiError(400, "INVALID_PARAMETER_VALUE", f"Invalid stage {stage!r}; valid: {', '.join(STAGES)}")


def transitioned_events(to_stage: str) -> tuple[str, ...]:
    """The events a stage transition fires: the generic one, plus the per-stage one."""
    extra = (f"MODEL_VERSION_TRANSITIONED_TO_{to_stage.upper()}",) if to_stage != "None" else ()
    return ("MODEL_VERSION_TRANSITIONED_STAGE", *extra)


class Collaboration:
    """Comments, open transition requests and the activity log, in memory."""

    def __init__(self, backend: Backend, webhooks: Webhooks) -> None:
        self.backend, self.webhooks = backend, webhooks
        self.lock = threading.Lock()
        self.ids = itertools.count(1)
        self.comments: list[dict[str, Any]] = []
        self.open_requests: list[dict[str, Any]] = []
        self.activities: list[dict[str, Any]] = []

    # -- bookkeeping -----------------------------------------------------------------------------
    def activity(self, kind: str, name: str, version: str, **fields: Any) -> dict[str, Any]:
        act = {
            "id": str(next(self.ids)),
            "activity_type": kind,
            "creation_timestamp": now_ms(),
            "last_updated_timestamp": now_ms(),
            "user_id": FAKE_USER,
            "model_name": name,
            "version": str(version),
            **{k: v for k, v in fields.items() if v is not None},
        }
        with self.lock:
            self.activities.append(act)
        return act

    @staticmethod
    def api_view(act: dict[str, Any]) -> dict[str, Any]:
        """An Activity as the API shows it (the fake's bookkeeping fields removed)."""
        return {k: v for k, v in act.items() if k not in ("model_name", "version")}

    def fire_transitioned(self, name: str, version: str, from_stage: str, to_stage: str) -> None:
        text = f"Registered model '{name}' version {version} transitioned from {from_stage} to {to_stage}."
        self.webhooks.fire(
            transitioned_events(to_stage),
            name,
            {"version": str(version), "to_stage": to_stage, "from_stage": from_stage, "text": text},
        )

    def open_request(self, name: str, version: str, stage: str) -> dict[str, Any]:
        with self.lock:
            for r in self.open_requests:
                if r["model_name"] == name and r["version"] == str(version) and r["to_stage"] == stage:
                    return r
        raise ApiError(
            404,
            "RESOURCE_DOES_NOT_EXIST",
            f"No open transition request to {stage} for model '{name}' version {version}",
        )

    def close(self, req: dict[str, Any]) -> None:
        with self.lock:
            self.open_requests = [r for r in self.open_requests if r is not req]

    # -- endpoints -------------------------------------------------------------------------------
    def comments_create(self) -> dict[str, Any]:
        p = body_json()
        name, version, text = need(p, "name", "version", "comment")
        if not 1 <= len(text) <= 65535:
            raise ApiError(400, "INVALID_PARAMETER_VALUE", "Comment must be 1 to 65535 characters")
        self.backend.model_version(name, str(version))
        c = {
            "id": uuid.uuid4().hex,
            "comment": text,
            "creation_timestamp": now_ms(),
            "last_updated_timestamp": now_ms(),
            "user_id": FAKE_USER,
            "available_actions": ["EDIT_COMMENT", "DELETE_COMMENT"],
        }
        with self.lock:
            self.comments.append({**c, "model_name": name, "version": str(version)})
        self.webhooks.fire(
            ("COMMENT_CREATED",),
            name,
            {
                "version": str(version),
                "comment": text,
                "text": f"A user commented on registered model '{name}' version {version}.",
            },
        )
        return {"comment": c}

    def comments_update(self) -> dict[str, Any]:
        cid, text = need(body_json(), "id", "comment")
        with self.lock:
            for c in self.comments:
                if c["id"] == cid:
                    c.update(comment=text, last_updated_timestamp=now_ms())
                    return {"comment": {k: v for k, v in c.items() if k not in ("model_name", "version")}}
        raise ApiError(404, "RESOURCE_DOES_NOT_EXIST", f"Comment {cid} does not exist")

    def comments_delete(self) -> dict[str, Any]:
        (cid,) = need(dict(request.args), "id")
        with self.lock:
            self.comments = [c for c in self.comments if c["id"] != cid]
        return {}

    def tr_create(self) -> dict[str, Any]:
        p = body_json()
        name, version, stage = need(p, "name", "version", "stage")
        stage = need_stage(stage)
        current = self.backend.model_version(name, str(version)).get("current_stage", "None")
        act = self.activity(
            "REQUESTED_TRANSITION",
            name,
            version,
            from_stage=current,
            to_stage=stage,
            comment=p.get("comment"),
        )
        with self.lock:
            self.open_requests.append(act)
        extra = (f"TRANSITION_REQUEST_TO_{stage.upper()}_CREATED",) if stage != "None" else ()
        self.webhooks.fire(
            ("TRANSITION_REQUEST_CREATED", *extra),
            name,
            {
                "version": str(version),
                "to_stage": stage,
                "from_stage": current,
                "text": f"A user requested a transition of registered model '{name}' version "
                f"{version} from {current} to {stage}.",
            },
        )
        return {
            "request": {
                "creation_timestamp": act["creation_timestamp"],
                "to_stage": stage,
                "user_id": FAKE_USER,
                "comment": p.get("comment"),
                "available_actions": REQUEST_ACTIONS,
            }
        }

    def tr_approve(self) -> dict[str, Any]:
        p = body_json()
        name, version, stage = need(p, "name", "version", "stage")
        if p.get("archive_existing_versions") is None:
            raise ApiError(
                400, "INVALID_PARAMETER_VALUE", "Missing required field: archive_existing_versions"
            )
        stage = need_stage(stage)
        req = self.open_request(name, version, stage)
        before = self.backend.model_version(name, str(version)).get("current_stage", "None")
        self.backend.transition(name, str(version), stage, p["archive_existing_versions"])
        self.close(req)
        act = self.activity(
            "APPROVED_REQUEST", name, version, from_stage=before, to_stage=stage, comment=p.get("comment")
        )
        self.fire_transitioned(name, str(version), before, stage)
        return {"activity": self.api_view(act)}

    def tr_reject(self) -> dict[str, Any]:
        p = body_json()
        name, version, stage = need(p, "name", "version", "stage")
        stage = need_stage(stage)
        req = self.open_request(name, version, stage)
        self.close(req)
        act = self.activity(
            "REJECTED_REQUEST",
            name,
            version,
            from_stage=req["from_stage"],
            to_stage=stage,
            comment=p.get("comment"),
        )
        return {"activity": self.api_view(act)}

    def tr_delete(self) -> dict[str, Any]:
        p = dict(request.args)
        name, version, stage = need(p, "name", "version", "stage")
        req = self.open_request(name, version, need_stage(stage))
        self.close(req)
        act = self.activity(
            "CANCELLED_REQUEST",
            name,
            version,
            from_stage=req["from_stage"],
            to_stage=req["to_stage"],
            comment=p.get("comment"),
        )
        return {"activity": self.api_view(act)}

    def tr_list(self) -> dict[str, Any]:
        name, version = need(dict(request.args), "name", "version")
        with self.lock:
            reqs = [
                {**self.api_view(r), "available_actions": REQUEST_ACTIONS}
                for r in self.open_requests
                if r["model_name"] == name and r["version"] == str(version)
            ]
        return {"requests": reqs}

    def activities_list(self) -> dict[str, Any]:
        name, version = need(dict(request.args), "name", "version")
        with self.lock:
            acts = [
                self.api_view(a)
                for a in self.activities
                if a["model_name"] == name and a["version"] == str(version)
            ]
        return {"activities": acts}

    def transition_stage(self) -> dict[str, Any]:
        p = body_json()
        name, version, stage = need(p, "name", "version", "stage")
        stage = need_stage(stage)
        before = self.backend.model_version(name, str(version)).get("current_stage", "None")
        mv = self.backend.transition(name, str(version), stage, bool(p.get("archive_existing_versions")))
        self.activity(
            "APPLIED_TRANSITION", name, version, from_stage=before, to_stage=stage, comment=p.get("comment")
        )
        self.fire_transitioned(name, str(version), before, stage)
        return {"model_version_databricks": mv}

    def snapshot(self) -> dict[str, Any]:
        with self.lock:
            return {
                "comments": list(self.comments),
                "transition_requests": list(self.open_requests),
                "activities": list(self.activities),
            }

    def register(self, router: Router) -> None:
        area = "comments / transition requests"
        for method, path, handler in [
            ("POST", "/api/2.0/mlflow/comments/create", self.comments_create),
            ("PATCH", "/api/2.0/mlflow/comments/update", self.comments_update),
            ("DELETE", "/api/2.0/mlflow/comments/delete", self.comments_delete),
            ("POST", "/api/2.0/mlflow/transition-requests/create", self.tr_create),
            ("POST", "/api/2.0/mlflow/transition-requests/approve", self.tr_approve),
            ("POST", "/api/2.0/mlflow/transition-requests/reject", self.tr_reject),
            ("DELETE", "/api/2.0/mlflow/transition-requests/delete", self.tr_delete),
            ("GET", "/api/2.0/mlflow/transition-requests/list", self.tr_list),
            ("GET", "/api/2.0/mlflow/activities/list", self.activities_list),
            ("POST", "/api/2.0/mlflow/databricks/model-versions/transition-stage", self.transition_stage),
        ]:
            router.add(method, path, area, handler)
