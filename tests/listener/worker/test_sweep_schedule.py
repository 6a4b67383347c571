"""Re-verification scheduling and the sweep's settings, on a real SQLite store."""

from __future__ import annotations

from pathlib import Path

import pytest

from listener.config import Settings
from listener.config_parsing import ConfigError
from listener.store import Store
from listener.worker.sweep import reverify_due, sweep_key

INTERVAL = 100.0


def test_each_version_is_due_once_per_interval_and_the_turns_are_spread(tmp_path: Path):
    store = Store(f"sqlite:///{tmp_path / 'store.db'}")
    versions = [str(v) for v in range(1, 101)]
    start = 1_000_000.0
    # First sighting: nothing is due yet (the version's own alias event was just checked).
    assert [v for v in versions if reverify_due(store, "mlflow", "m", v, INTERVAL, start) is not None] == []
    handed: dict[str, int] = {v: 0 for v in versions}
    per_sweep = []
    for step in range(1, 21):  # two intervals, one sweep every tenth of one
        due = [v for v in versions
               if reverify_due(store, "mlflow", "m", v, INTERVAL, start + step * INTERVAL / 10) is not None]
        per_sweep.append(len(due))
        for v in due:
            handed[v] += 1
    assert set(handed.values()) == {2}  # exactly once per interval, twice in two
    # Spread: no sweep gets more than a quarter of the versions (all at once would be 100).
    assert max(per_sweep) < len(versions) / 4, per_sweep
    # Sweeping twice at the same moment hands nothing out the second time.
    now = start + 25 * INTERVAL
    first = [v for v in versions if reverify_due(store, "mlflow", "m", v, INTERVAL, now) is not None]
    again = [v for v in versions if reverify_due(store, "mlflow", "m", v, INTERVAL, now) is not None]
    assert first and again == []
    store.dispose()


def test_sweep_keys_are_deterministic():
    assert sweep_key("mlflow", "churn", "3", "model_version.created") == \
        "sweep:mlflow:churn:3:model_version.created"


def test_settings_of_the_sweep_and_protected_aliases():
    settings = Settings.from_env({"GUARD_PROTECTED_ALIASES": "champion, production",
                                  "GUARD_SWEEP_INTERVAL": "60", "GUARD_REVERIFY_INTERVAL": "3600",
                                  "GUARD_REVERIFY": "all"})
    assert settings.protected_aliases == ["champion", "production"]
    assert (settings.sweep_interval_s, settings.reverify_interval_s, settings.reverify_scope) == \
        (60.0, 3600.0, "all")
    default = Settings.from_env({})
    assert default.protected_aliases == [] and default.sweep_interval_s == 300.0
    assert default.reverify_interval_s == 21600.0 and default.reverify_scope == "protected"
    assert Settings.from_env({"GUARD_REVERIFY": "Production-Stage"}).reverify_scope == "production-stage"
    with pytest.raises(ConfigError, match="GUARD_REVERIFY"):
        Settings.from_env({"GUARD_REVERIFY": "sometimes"})
    with pytest.raises(ConfigError, match="GUARD_SWEEP_INTERVAL"):
        Settings.from_env({"GUARD_SWEEP_INTERVAL": "0"})
