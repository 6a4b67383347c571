"""The one event table: the webhook parsers and the job entry point read the same rules."""

from __future__ import annotations

import pytest

from listener.protocol.events import CHECK, SEAL_AND_CHECK, job_rule, rule_for
from listener.worker.entry import requests_from_event


@pytest.mark.parametrize("event, action, gate, stage", [
    ("model_version.created", SEAL_AND_CHECK, False, None),
    ("model_version_alias.created", CHECK, False, None),
    ("MODEL_VERSION_CREATED", SEAL_AND_CHECK, False, None),
    ("MODEL_VERSION_TRANSITIONED_TO_PRODUCTION", CHECK, False, "Production"),
    ("TRANSITION_REQUEST_TO_STAGING_CREATED", CHECK, True, "Staging"),
    ("TRANSITION_REQUEST_CREATED", CHECK, True, None),
])
def test_webhook_events_and_the_job_follow_one_rule(event, action, gate, stage):
    rule = rule_for(event)
    assert (rule.action, rule.gate, rule.stage) == (action, gate, stage)
    assert job_rule(event) == rule
    [request] = requests_from_event({"event": event, "model_name": "m", "version": "1"}, "databricks")
    assert (request["action"], request["gate"]) == (action, gate)


@pytest.mark.parametrize("event", ["MODEL_VERSION_READY", "model_version_ready", "ready", "created"])
def test_a_version_becoming_ready_is_sealed_by_the_job_but_is_no_webhook_event(event):
    assert rule_for(event) is None and job_rule(event).action == SEAL_AND_CHECK


@pytest.mark.parametrize("event", ["COMMENT_CREATED", "MODEL_VERSION_TAG_SET", "model_version_tag.set", "job",
                                   "MODEL_VERSION_TRANSITIONED_TO_LIMBO"])
def test_other_events_trigger_no_webhook_validation_and_a_plain_check_in_a_job(event):
    assert rule_for(event) is None
    assert (job_rule(event).action, job_rule(event).gate) == (CHECK, False)


def test_webhooks_are_subscribed_to_exactly_the_events_that_trigger_a_check():
    from listener.protocol.events import webhook_events

    assert webhook_events("mlflow") == ("model_version.created", "model_version_alias.created")
    assert set(webhook_events("databricks")) == {"MODEL_VERSION_CREATED", "MODEL_VERSION_TRANSITIONED_STAGE",
                                                 "TRANSITION_REQUEST_CREATED"}
    assert all(rule_for(e) is not None for r in ("mlflow", "databricks") for e in webhook_events(r))
