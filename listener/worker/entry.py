"""Job entry point (``guard-job``): validate model versions named by an event, without the listener.

For registries that cannot call an HTTP endpoint. A Databricks job webhook (workspace registry) or a
Unity Catalog model update trigger starts a job and hands it the event as the job parameter
``event_message``; this runs the same job as the queue worker (validate, store the verdict, publish it
onto the version) and exits with the verdict::

    guard-job --event_message '{"model_name": "main.ml.churn", "version": "3"}'
    guard-job --event_message='<json>'      # Databricks passes job parameters like this
    guard-job '<json>'                      # or as one positional argument
    GUARD_EVENT_MESSAGE='<json>' guard-job
    guard-job --model churn --version 3     # no event at all

(or ``python -m listener.worker.entry ...``). Accepted event shapes: a Databricks registry webhook payload
(``event``, ``model_name``, ``version``, ``to_stage``), an MLflow webhook body (``entity``, ``action``,
``data``: ``name``, ``version``, ``alias``), a plain object with ``model_name``/``name``/``full_name``/
``model`` and ``version``, a list of such objects, or an object holding such a list under
``updates``/``events``. Only model name and version (and the event name, alias or stage, for the record)
are taken from it: the registry contacted is the one configured in the environment, never a host named
in the event. What an event asks for comes from the listener's own event table.

Exit status: 0 every version PASSED, 1 some version FAILED, 2 some version could not be checked (ERROR)
or the input was unusable.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
import uuid
from collections.abc import Mapping, Sequence
from typing import Any

from core.registry.stages import canonical_stage
from core.status import ERROR, EXIT_CODES
from listener.alerts.deliver import wait_for_alerts
from listener.config import Settings
from listener.protocol import Rejected, check_model_name, job_rule, model_version
from listener.protocol.events import skip_reason
from listener.protocol.request import JOB_KEY_PREFIX
from listener.store import get_store

_LIST_KEYS = ("updates", "events", "model_updates")
_NAME_KEYS = ("model_name", "full_name", "name", "model")


class UsageError(ValueError):
    """The event or the arguments name no usable model version."""


class Skipped(Exception):
    """An event item that asks for no validation (ignored event, archive, no version): not an error."""


def _trigger_of(item: dict[str, Any], data: dict[str, Any]) -> str:
    if "entity" in item and "action" in item:
        return f"{item.get('entity')}.{item.get('action')}"
    named = item.get("event") or item.get("trigger") or item.get("condition")
    if named:
        return str(named)
    if "full_name" in data:  # a Unity Catalog model update trigger item
        return "MODEL_VERSION_ALIAS_SET" if data.get("alias_name") else "MODEL_VERSION_READY"
    return "job"


def _one_request(item: dict[str, Any], registry: str, index: int) -> dict[str, Any]:
    """The validation request of one event item; :class:`Skipped` when it asks for none."""
    data = item.get("data") if isinstance(item.get("data"), dict) else item
    trigger = _trigger_of(item, data)
    rule = job_rule(trigger)
    stage = canonical_stage(item.get("to_stage")) if rule.stage_in_payload else rule.stage
    if rule.stage_in_payload and stage is None:
        stage = item.get("to_stage") if isinstance(item.get("to_stage"), str) else None
    reason = skip_reason(trigger, stage)
    if reason:
        raise Skipped(reason)
    name = next((data[k] for k in _NAME_KEYS if isinstance(data.get(k), str) and data[k]), None)
    reason = check_model_name(name)
    if reason:
        raise UsageError(reason)
    raw_version = data.get("version", data.get("model_version"))
    if raw_version is None or raw_version == "":
        # e.g. a MODEL_CREATED item of a trigger batch: a model, no version yet.
        raise Skipped(f"{trigger} for {name} names no model version")
    try:
        version = model_version(raw_version if isinstance(raw_version, (bool, int))
                                else str(raw_version).strip())
    except Rejected as exc:
        raise UsageError(exc.reason) from exc
    alias = next((data[k] for k in ("alias_name", "alias") if isinstance(data.get(k), str) and data[k]), None)
    return {"registry": registry, "model": name, "version": version, "trigger": trigger[:100],
            "action": rule.action, "to_stage": stage, "alias": alias, "gate": rule.gate,
            "delivery_key": f"{JOB_KEY_PREFIX}{uuid.uuid4().hex}:{index}", "received_at": time.time()}


def requests_from_event(event: Any, registry: str) -> list[dict[str, Any]]:
    """Validation requests (``ValidationRequest.to_dict()`` shape) for every version ``event`` names."""
    if isinstance(event, str):
        try:
            event = json.loads(event)
        except ValueError as exc:
            raise UsageError("event_message is not valid JSON") from exc
    if isinstance(event, dict):
        listed = next((event[k] for k in _LIST_KEYS if isinstance(event.get(k), list)), None)
        items = listed if listed is not None else [event]
    elif isinstance(event, list):
        items = event
    else:
        raise UsageError("event_message must be a JSON object or a list of objects")
    if not items:
        raise UsageError("event_message names no model version")
    out = []
    for i, item in enumerate(items):
        if not isinstance(item, dict):
            raise UsageError("every event in the list must be a JSON object")
        try:
            out.append(_one_request(item, registry, i))
        except Skipped as exc:
            print(f"skipped: {exc}", file=sys.stderr)
    return out


def _parse_args(argv: Sequence[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="guard-job", description=__doc__.split("\n\n")[0])
    parser.add_argument("--event_message", "--event-message", dest="event_message",
                        help="the event as JSON (also GUARD_EVENT_MESSAGE / EVENT_MESSAGE)")
    parser.add_argument("positional", nargs="?", help="the event as JSON, when not given by flag")
    parser.add_argument("--model", "--model_name", "--model-name", dest="model",
                        help="validate this registered model (instead of an event; a deployment job "
                             "passes model_name)")
    parser.add_argument("--version", "--model_version", "--model-version", dest="version",
                        help="version of --model (a deployment job passes model_version)")
    parser.add_argument("--registry", choices=("mlflow", "databricks"),
                        help="registry kind (default: from MLFLOW_REGISTRY_URI / MLFLOW_TRACKING_URI)")
    parser.add_argument("--registry_uri", "--registry-uri", dest="registry_uri",
                        help="the registry to read and write, e.g. databricks-uc (Unity Catalog) or "
                             "databricks (workspace registry); default MLFLOW_REGISTRY_URI")
    parser.add_argument("--action", choices=("seal_and_check", "check"),
                        help="override the action derived from the event")
    parser.add_argument("--no-publish", action="store_true",
                        help="only print and store the verdict, do not write it onto the version")
    args, unknown = parser.parse_known_args(list(argv))
    if unknown:
        # Job runners add their own parameters; ignoring them beats failing the run.
        print(f"ignoring unknown arguments: {' '.join(u.split('=')[0] for u in unknown)}", file=sys.stderr)
    return args


def run_job(request: dict[str, Any], settings: Settings, publish: bool = True,
            max_wait_s: float | None = None) -> dict[str, Any]:
    """Run one request to completion, sleeping through retries; returns the results-store row."""
    from listener.worker.admission import RetryLater
    from listener.worker.job import process_job

    store = get_store(settings.store_url)
    deadline = None if max_wait_s is None else time.monotonic() + max_wait_s
    while True:
        try:
            process_job(request, settings, store=store, publish=publish)
            break
        except RetryLater as exc:
            if deadline is not None and time.monotonic() + exc.delay > deadline:
                break
            print(f"{request['model']} version {request['version']}: {exc}; again in {exc.delay:.0f} s",
                  file=sys.stderr)
            time.sleep(exc.delay)
    return store.get(request["delivery_key"]) or {}


def main(argv: Sequence[str] | None = None, env: Mapping[str, str] | None = None) -> int:
    """Command-line entry; returns the exit status (0 PASSED, 1 FAILED, 2 ERROR or unusable input)."""
    args = _parse_args(sys.argv[1:] if argv is None else argv)
    try:
        if args.registry_uri:
            env = {**(os.environ if env is None else env), "MLFLOW_REGISTRY_URI": args.registry_uri}
        settings = Settings.from_env(env)
        registry = args.registry or settings.registry_kind
        raw = args.event_message or args.positional or settings.event_message
        if args.model:
            if not args.version:
                raise UsageError("--model_name needs --model_version")
            item = {"name": args.model, "version": args.version, "event": "job"}
            requests = [_one_request(item, registry, 0)]
        elif raw:
            requests = requests_from_event(raw, registry)
        else:
            raise UsageError("give the event as --event_message JSON (or --model_name and --model_version)")
    except Skipped as exc:
        print(f"skipped: {exc}", file=sys.stderr)
        return 0
    except (UsageError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    worst = 0
    for req in requests:
        if args.action:
            req["action"] = args.action
        row = run_job(req, settings, publish=not args.no_publish)
        status = row.get("status") or ERROR
        worst = max(worst, EXIT_CODES.get(status, EXIT_CODES[ERROR]))
        print(f"{status} {req['model']} version {req['version']}: {row.get('summary') or 'no verdict'}")
        if row.get("publish_status") not in (None, "PUBLISHED") and not args.no_publish:
            print(f"warning: verdict not written onto the version: {row.get('publish_error')}",
                  file=sys.stderr)
        print(json.dumps(row.get("report") or {"status": status}, sort_keys=True))
    wait_for_alerts()
    return worst


def cli() -> None:
    """The ``guard-job`` console script: exits with :func:`main`'s status.

    A Databricks ``python_wheel_task`` calls the entry point and ignores what it returns: only the
    process's exit status fails the run on FAILED or ERROR.
    """
    sys.exit(main())


if __name__ == "__main__":
    cli()
