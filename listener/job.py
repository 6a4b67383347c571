"""Job entry point: validate model versions named by an event, synchronously, without the listener.

For registries that cannot call an HTTP endpoint. A Databricks job webhook (workspace registry) or a
Unity Catalog model update trigger starts a job and hands it the event as the job parameter
``event_message``; this module runs the same pipeline as the queue worker (validate, store the verdict,
publish it onto the version) and exits with the verdict::

    python -m listener.job --event_message '{"model_name": "main.ml.churn", "version": "3"}'
    python -m listener.job --event_message='<json>'      # Databricks passes job parameters like this
    python -m listener.job '<json>'                      # or as one positional argument
    GUARD_EVENT_MESSAGE='<json>' python -m listener.job
    python -m listener.job --model churn --version 3     # no event at all

Accepted event shapes: a Databricks registry webhook payload (``event``, ``model_name``, ``version``,
``to_stage``), an MLflow webhook body (``entity``, ``action``, ``data``: ``name``, ``version``,
``alias``), a plain object with ``model_name``/``name``/``full_name``/``model`` and ``version``, a list of
such objects, or an object holding such a list under ``updates``/``events``. Only model name and version
(and the event name, alias or stage, for the record) are taken from it: the registry contacted is the one
configured in the environment (``MLFLOW_TRACKING_URI`` / ``MLFLOW_REGISTRY_URI``, Databricks
authentication for ``databricks``), never a host named in the event.

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
from collections.abc import Sequence
from typing import Any

# Events that mean "a new version": seal it, then check. Everything else is a promotion: check.
_CREATED = {"model_version.created", "MODEL_VERSION_CREATED", "MODEL_VERSION_READY", "model_version_ready",
            "created", "ready", "version_ready"}
_LIST_KEYS = ("updates", "events", "model_updates")
_NAME_KEYS = ("model_name", "full_name", "name", "model")


class UsageError(ValueError):
    """The event or the arguments name no usable model version."""


def _version(value: Any) -> str:
    if isinstance(value, bool) or value is None:
        raise UsageError("the event names no model version")
    text = str(value).strip()
    if not text.isdigit() or int(text) < 1 or len(text) > 10:
        raise UsageError(f"version must be a positive number, got {text[:20]!r}")
    return str(int(text))


def _one_request(item: dict[str, Any], registry: str, index: int) -> dict[str, Any]:
    from listener.events import check_model_name

    data = item.get("data") if isinstance(item.get("data"), dict) else item
    if "entity" in item and "action" in item:
        trigger = f"{item.get('entity')}.{item.get('action')}"
    else:
        trigger = str(item.get("event") or item.get("trigger") or item.get("condition") or "job")
    name = next((data[k] for k in _NAME_KEYS if isinstance(data.get(k), str) and data[k]), None)
    reason = check_model_name(name)
    if reason:
        raise UsageError(reason)
    version = _version(data.get("version", data.get("model_version")))
    alias = data.get("alias") if isinstance(data.get("alias"), str) else None
    stage = item.get("to_stage") if isinstance(item.get("to_stage"), str) else None
    action = "seal_and_check" if trigger in _CREATED else "check"
    gate = trigger.startswith("TRANSITION_REQUEST_")
    return {"registry": registry, "model": name, "version": version, "trigger": trigger[:100],
            "action": action, "to_stage": stage, "alias": alias, "gate": gate,
            "delivery_key": f"job:{uuid.uuid4().hex}:{index}", "received_at": time.time()}


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
        out.append(_one_request(item, registry, i))
    return out


def _parse_args(argv: Sequence[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m listener.job", description=__doc__.split("\n\n")[0])
    parser.add_argument("--event_message", "--event-message", dest="event_message",
                        help="the event as JSON (also GUARD_EVENT_MESSAGE / EVENT_MESSAGE)")
    parser.add_argument("positional", nargs="?", help="the event as JSON, when not given by flag")
    parser.add_argument("--model", help="validate this registered model (instead of an event)")
    parser.add_argument("--version", help="version of --model")
    parser.add_argument("--registry", choices=("mlflow", "databricks"),
                        help="registry kind (default: from MLFLOW_REGISTRY_URI / MLFLOW_TRACKING_URI)")
    parser.add_argument("--action", choices=("seal_and_check", "check"),
                        help="override the action derived from the event")
    parser.add_argument("--no-publish", action="store_true",
                        help="only print and store the verdict, do not write it onto the version")
    args, unknown = parser.parse_known_args(list(argv))
    if unknown:
        # Job runners add their own parameters; ignoring them beats failing the run.
        print(f"ignoring unknown arguments: {' '.join(u.split('=')[0] for u in unknown)}", file=sys.stderr)
    return args


class _NoPublish:
    """Wraps an adapter so the verdict is not written back (``--no-publish``)."""

    def __init__(self, inner: Any) -> None:
        self._inner = inner

    def __getattr__(self, name: str) -> Any:
        return getattr(self._inner, name)

    def publish(self, verdict: Any) -> None:
        """Do nothing: the verdict is only stored and printed."""


def run_job(request: dict[str, Any], settings: Any, adapter: Any = None,
            max_wait_s: float | None = None) -> dict[str, Any]:
    """Run one request to completion, sleeping through retries; returns the results-store row."""
    from listener.pipeline import RetryLater, process_job, results_path
    from listener.results import ResultsStore

    store = ResultsStore(results_path(settings))
    deadline = None if max_wait_s is None else time.monotonic() + max_wait_s
    while True:
        try:
            process_job(request, settings, adapter=adapter, store=store)
            break
        except RetryLater as exc:
            if deadline is not None and time.monotonic() + exc.delay > deadline:
                break
            print(f"{request['model']} version {request['version']}: {exc}; again in {exc.delay:.0f} s",
                  file=sys.stderr)
            time.sleep(exc.delay)
    row = store.get(request["delivery_key"]) or {}
    return row


def main(argv: Sequence[str] | None = None, env: dict[str, str] | None = None) -> int:
    """Command-line entry; returns the exit status (0 PASSED, 1 FAILED, 2 ERROR or unusable input)."""
    from listener.config import Settings
    from listener.registries import get_adapter

    env = dict(os.environ if env is None else env)
    args = _parse_args(sys.argv[1:] if argv is None else argv)
    try:
        settings = Settings.from_env(env)
        registry = args.registry or settings.registry_kind
        raw = (args.event_message or args.positional or env.get("GUARD_EVENT_MESSAGE")
               or env.get("EVENT_MESSAGE"))
        if args.model:
            item = {"name": args.model, "version": args.version, "event": "job"}
            requests = [_one_request(item, registry, 0)]
        elif raw:
            requests = requests_from_event(raw, registry)
        else:
            raise UsageError("give the event as --event_message JSON (or --model and --version)")
    except (UsageError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    worst = 0
    for req in requests:
        if args.action:
            req["action"] = args.action
        adapter = None
        if args.no_publish:
            try:
                adapter = _NoPublish(get_adapter(registry, settings))
            except Exception as exc:  # noqa: BLE001 - reported like any other ERROR
                print(f"error: cannot use the {registry} registry: {exc}", file=sys.stderr)
                return 2
        row = run_job(req, settings, adapter=adapter)
        status = row.get("status") or "ERROR"
        code = {"PASSED": 0, "FAILED": 1}.get(status, 2)
        worst = max(worst, code)
        print(f"{status} {req['model']} version {req['version']}: {row.get('summary') or 'no verdict'}")
        if row.get("publish_status") not in (None, "PUBLISHED") and not args.no_publish:
            print(f"warning: verdict not written onto the version: {row.get('publish_error')}",
                  file=sys.stderr)
        print(json.dumps(row.get("report") or {"status": status}, sort_keys=True))
    return worst


if __name__ == "__main__":
    sys.exit(main())
