"""Alias history (who held an alias before) and the sweep's high-water marks."""

from __future__ import annotations

from collections.abc import Callable

from listener.store import SOURCE_GUARD, SOURCE_SWEEP, SOURCE_WEBHOOK, Store


def test_previous_holder_of_an_alias(store: Store):
    assert store.alias_holder("mlflow", "churn", "champion") is None
    assert store.previous_holder("mlflow", "churn", "champion") is None
    store.record_alias("mlflow", "churn", "champion", "1", SOURCE_WEBHOOK, seen_at=100.0)
    assert store.previous_holder("mlflow", "churn", "champion") is None  # only one holder so far
    store.record_alias("mlflow", "churn", "champion", "2", SOURCE_WEBHOOK, seen_at=200.0)
    store.record_alias("mlflow", "churn", "champion", "3", SOURCE_WEBHOOK, seen_at=300.0)
    store.record_alias("mlflow", "churn", "challenger", "9", SOURCE_WEBHOOK, seen_at=400.0)
    store.record_alias("mlflow", "other", "champion", "7", SOURCE_WEBHOOK, seen_at=500.0)
    assert store.alias_holder("mlflow", "churn", "champion").version == "3"
    assert store.previous_holder("mlflow", "churn", "champion").version == "2"
    # The version that failed is skipped, wherever it sits in the history.
    assert store.previous_holder("mlflow", "churn", "champion", excluding="2").version == "3"
    # The guard moved the alias back; the version before the bad one is still known.
    store.record_alias("mlflow", "churn", "champion", "2", SOURCE_GUARD, seen_at=600.0)
    holder = store.previous_holder("mlflow", "churn", "champion")
    assert (holder.version, holder.seen_at, holder.source) == ("3", 300.0, SOURCE_WEBHOOK)
    assert [e.version for e in store.alias_history("mlflow", "churn", "champion")] == ["2", "3", "2", "1"]
    assert store.alias_history("databricks", "churn", "champion") == []


def test_removals_are_recorded_and_never_named_as_holder(store: Store):
    store.record_alias("mlflow", "m", "prod", "1", SOURCE_WEBHOOK, seen_at=1.0)
    store.record_alias("mlflow", "m", "prod", None, SOURCE_SWEEP, seen_at=2.0)
    assert store.alias_holder("mlflow", "m", "prod").version is None
    assert store.previous_holder("mlflow", "m", "prod").version == "1"
    assert store.previous_holder("mlflow", "m", "prod", excluding="1") is None


def test_sweep_observations_record_changes_only(store: Store):
    assert store.record_alias("mlflow", "m", "prod", "4", SOURCE_SWEEP, if_changed=True) is not None
    assert store.record_alias("mlflow", "m", "prod", "4", SOURCE_SWEEP, if_changed=True) is None
    event = store.record_alias("mlflow", "m", "prod", "5", SOURCE_SWEEP, if_changed=True)
    assert event is not None and event.version == "5" and event.source == SOURCE_SWEEP
    assert [e.version for e in store.alias_history("mlflow", "m", "prod")] == ["5", "4"]


def test_sweep_marks_are_shared_and_only_advance(open_store: Callable[..., Store]):
    host_a, host_b = open_store(), open_store()
    assert host_a.get_mark("catch-up") is None
    assert host_a.get_mark("catch-up", default=0.0) == 0.0
    assert host_a.advance_mark("catch-up", 1_796_000_000_123.0) == 1_796_000_000_123.0
    # A host that swept less far cannot move the shared mark back.
    assert host_b.advance_mark("catch-up", 1_795_000_000_000.0) == 1_796_000_000_123.0
    assert host_b.get_mark("catch-up") == 1_796_000_000_123.0  # epoch milliseconds stay exact
    host_b.set_mark("catch-up", 5.0)  # an explicit reset does move it back
    assert host_a.get_mark("catch-up") == 5.0
    host_a.set_mark("reverify", 7.5)
    assert (host_b.get_mark("reverify"), host_b.get_mark("catch-up")) == (7.5, 5.0)
