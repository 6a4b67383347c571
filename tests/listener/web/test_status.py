"""The status page and /api/validations on a real results store: listing, filtering, escaping, links."""

from __future__ import annotations

import uuid
from urllib.parse import quote

import pytest


def test_status_page_and_api_empty_state(client):
    page = client.get("/")
    assert page.status_code == 200 and "No validations yet" in page.get_data(as_text=True)
    assert client.get("/api/validations").json == {"validations": []}


@pytest.mark.parametrize("query", ["?limit=0", "?limit=abc", "?limit=100000", "?model=a%00b"])
def test_listing_rejects_bad_parameters(client, query):
    assert client.get("/api/validations" + query).status_code == 400
    assert client.get("/" + query).status_code == 400


def test_status_page_and_api_show_results_escaped(client, settings):
    from listener.store import get_store, owner_id

    store = get_store(settings.store_url)
    hostile = "<script>alert(1)<\\script>"
    for model, version in (("fraud-model", "1"), (hostile, "2"), ("fraud-model", "3")):
        key, owner = str(uuid.uuid4()), owner_id()
        store.claim({"registry": "mlflow", "model": model, "version": version,
                     "trigger": "model_version.created", "action": "seal_and_check", "delivery_key": key},
                    owner)
        store.release(key, owner)
    rows = client.get("/api/validations").json["validations"]
    assert [r["version"] for r in rows] == ["3", "2", "1"]  # newest first
    assert rows[0]["ui_url"] == "http://mlflow.example:5000/#/models/fraud-model/versions/3"
    only = client.get("/api/validations?model=fraud-model&limit=1").json["validations"]
    assert [(r["model"], r["version"]) for r in only] == [("fraud-model", "3")]

    html = client.get("/").get_data(as_text=True)
    assert "<script>alert" not in html
    assert "&lt;script&gt;alert(1)" in html
    assert "fraud-model" in html and "model_version.created" in html
    assert 'href="http://mlflow.example:5000/#/models/fraud-model/versions/3"' in html
    filtered = client.get("/?model=" + quote(hostile)).get_data(as_text=True)
    assert "<script>alert" not in filtered and "fraud-model/versions" not in filtered


@pytest.mark.parametrize("seconds, shown", [(0.0312, "0.03 s"), (0.004, "0.004 s"), (1.234, "1.23 s"),
                                            (42.0, "42.0 s"), (600.0, "10.0 min"), (None, "")])
def test_durations_keep_a_useful_precision(seconds, shown):
    from listener.web.status import duration

    assert duration(seconds) == shown


def test_page_rows_do_not_break_names_mid_word_nor_wrap_times(client, settings):
    from listener.store import get_store, owner_id

    key, owner = "k-1", owner_id()
    get_store(settings.store_url).claim(
        {"registry": "mlflow", "model": "churn-model", "version": "1", "trigger": "model_version.created",
         "action": "seal_and_check", "delivery_key": key}, owner)
    html = client.get("/").get_data(as_text=True)
    assert "break-all" not in html
    assert '<td class="when">' in html and "td.when, td.took { white-space: nowrap; }" in html


def test_rows_name_the_alias_an_alias_event_was_about(client, settings):
    from listener.store import get_store, owner_id

    store = get_store(settings.store_url)
    for key, alias in (("k-created", None), ("k-champion", "champion"), ("k-challenger", "challenger")):
        owner = owner_id()
        trigger = "model_version_alias.created" if alias else "model_version.created"
        store.claim({"registry": "mlflow", "model": "churn-model", "version": "2", "trigger": trigger,
                     "action": "check", "alias": alias, "delivery_key": key}, owner)
        store.release(key, owner)
    rows = client.get("/api/validations").json["validations"]
    assert [r["alias"] for r in rows] == ["challenger", "champion", None]
    html = client.get("/").get_data(as_text=True)
    cells = html.split('<td class="alias">')[1:]
    assert [cell.split("</td>", 1)[0] for cell in cells] == ["@challenger", "@champion", ""]


def test_the_policy_result_is_on_the_page_and_in_the_api_apart_from_the_comparison(client, settings):
    from listener.store import get_store, owner_id
    from tests.listener.helpers import sample_verdict

    store = get_store(settings.store_url)
    policy = {"status": "FAIL", "checks": [
        {"check": "serialization", "status": "FAIL", "reason": "model.pkl is <pickle> (denied)"},
        {"check": "signature", "status": "PASS", "reason": "inputs and outputs declared"}]}
    for version, verdict_policy in (("1", None), ("2", policy)):
        key, owner = f"policy-{version}", owner_id()
        store.claim({"registry": "mlflow", "model": "churn", "version": version,
                     "trigger": "model_version.created", "action": "seal_and_check", "delivery_key": key},
                    owner)
        store.record_verdict(key, sample_verdict(version=version, n_diffs=0, policy=verdict_policy))
        store.release(key, owner)
    rows = client.get("/api/validations").json["validations"]
    assert [(r["version"], r["policy"]) for r in rows] == [("2", policy), ("1", None)]
    assert rows[0]["report"]["policy"] == policy and rows[0]["report"]["differences_total"] == 0
    html = client.get("/").get_data(as_text=True)
    assert '<span class="badge FAIL">FAIL</span>' in html
    assert "FAIL serialization: model.pkl is &lt;pickle&gt; (denied)" in html
    assert "inputs and outputs declared" not in html  # passing checks stay in the API and the report
