"""Settings from the environment."""

from __future__ import annotations

from pathlib import Path

import pytest

from listener.config import Settings
from listener.config_parsing import ConfigError


def test_defaults():
    s = Settings.from_env({})
    assert s.data_dir == Path(".guard")
    assert s.queue_url == "sqlite:///.guard/queue.db"
    assert s.mlflow_secrets == [] and s.databricks_secrets == []
    assert not s.allow_unsigned_mlflow and not s.allow_unsigned_databricks
    assert s.timestamp_tolerance_s == 300 and s.max_body_bytes == 1 << 20
    assert s.registry_kind == "mlflow" and s.gate_transitions is False


def test_everything_from_the_environment(tmp_path):
    env = {
        "MLFLOW_TRACKING_URI": "http://127.0.0.1:5000", "MLFLOW_REGISTRY_URI": "http://127.0.0.1:5001",
        "GUARD_MLFLOW_SECRET": " new , old ,", "GUARD_DATABRICKS_SECRET": "d1",
        "GUARD_DATABRICKS_AUTHORIZATION": "Bearer t", "GUARD_ALLOW_UNSIGNED": "Databricks",
        "GUARD_QUEUE": "redis://localhost:6379/2", "GUARD_DATA_DIR": str(tmp_path),
        "GUARD_GATE_TRANSITIONS": "TRUE", "GUARD_TIMESTAMP_TOLERANCE": "60", "GUARD_MAX_BODY_BYTES": "4096",
        "GUARD_READY_TIMEOUT": "7.5", "GUARD_MAX_RETRIES": "0", "GUARD_RETRY_BASE_S": "0.5",
        "GUARD_RETRY_MAX_S": "3", "GUARD_DATABRICKS_TAG_LIMIT": "1000", "GUARD_DATABRICKS_RETRY_TIMEOUT": "5",
        "GUARD_DATABRICKS_HTTP_TIMEOUT": "6", "DATABRICKS_HOST": "https://w.example", "EVENT_MESSAGE": "{}",
    }
    s = Settings.from_env(env)
    assert s.mlflow_secrets == ["new", "old"] and s.databricks_secrets == ["d1"]
    assert s.databricks_authorization == "Bearer t"
    assert s.allow_unsigned_databricks and not s.allow_unsigned_mlflow
    # A configured secret wins: the route is not unsigned after all.
    assert not s.allows_unsigned("databricks")
    assert s.queue_url == "redis://localhost:6379/2" and s.data_dir == tmp_path
    assert s.gate_transitions and s.timestamp_tolerance_s == 60 and s.max_body_bytes == 4096
    assert s.ui_base_url == "http://127.0.0.1:5000"
    assert "new" not in repr(s) and "Bearer t" not in repr(s)
    assert (s.ready_timeout_s, s.max_retries, s.retry_base_s, s.retry_max_s) == (7.5, 0, 0.5, 3.0)
    assert [s.retry_delay(n) for n in (1, 2, 3, 4)] == [0.5, 1.0, 2.0, 3.0]
    assert (s.databricks_tag_limit, s.databricks_retry_timeout_s, s.databricks_http_timeout_s) == (1000, 5, 6)
    assert s.databricks_host == "https://w.example" and s.event_message == "{}"


def test_overrides_win_and_queue_follows_data_dir(tmp_path):
    s = Settings.from_env({"GUARD_DATA_DIR": "/nowhere"}, data_dir=tmp_path, gate_transitions=True)
    assert s.queue_url == f"sqlite:///{tmp_path / 'queue.db'}" and s.gate_transitions


def test_databricks_registry_kind_and_ui():
    s = Settings.from_env({"MLFLOW_TRACKING_URI": "databricks", "MLFLOW_REGISTRY_URI": "databricks",
                           "DATABRICKS_HOST": "https://x.cloud.databricks.com", "GUARD_UI_URL": ""})
    assert s.registry_kind == "databricks" and s.ui_base_url == "https://x.cloud.databricks.com"
    assert Settings.from_env({"GUARD_UI_URL": "https://ui.example"}).ui_base_url == "https://ui.example"


@pytest.mark.parametrize("env", [
    {"GUARD_ALLOW_UNSIGNED": "mlflow,github"}, {"GUARD_GATE_TRANSITIONS": "maybe"},
    {"GUARD_TIMESTAMP_TOLERANCE": "five"}, {"GUARD_MAX_BODY_BYTES": "0"}, {"GUARD_QUEUE": "amqp://x"},
    {"GUARD_READY_TIMEOUT": "soon"}, {"GUARD_RETRY_BASE_S": "-1"}, {"GUARD_RETRY_MAX_S": "nan"},
    {"GUARD_MAX_RETRIES": "-1"}, {"GUARD_DATABRICKS_TAG_LIMIT": "big"},
    {"GUARD_DATABRICKS_HTTP_TIMEOUT": "0"},
])
def test_bad_values_are_named(env):
    with pytest.raises(ConfigError, match=next(iter(env))):
        Settings.from_env(env)


def test_sqlite_queue_durability_option(tmp_path):
    from listener import intake

    assert intake.sqlite_path("sqlite:///a/b.db?fsync=full") == Path("a/b.db")
    try:
        for suffix, expected in (("", 1), ("?fsync=full", 2)):
            s = Settings(data_dir=tmp_path, queue_url=f"sqlite:///{tmp_path}/q{len(suffix)}.db{suffix}")
            conn = intake.get_huey(s).storage.conn
            assert conn.execute("pragma synchronous").fetchone()[0] == expected
            assert conn.execute("pragma journal_mode").fetchone()[0] == "wal"
        with pytest.raises(ValueError, match="fsync"):
            intake.get_huey(Settings(data_dir=tmp_path, queue_url=f"sqlite:///{tmp_path}/x.db?fsync=maybe"))
    finally:
        intake.close_all()


@pytest.mark.parametrize("env, says", [
    ({"MLFLOW_TRACKING_URI": "databricks"}, "needs MLFLOW_REGISTRY_URI"),
    ({"MLFLOW_TRACKING_URI": "databricks", "MLFLOW_REGISTRY_URI": "http://127.0.0.1:5000"}, "is not"),
    ({"MLFLOW_TRACKING_URI": "http://127.0.0.1:5000", "MLFLOW_REGISTRY_URI": "databricks-uc"},
     "MLFLOW_TRACKING_URI=databricks"),
])
def test_databricks_route_must_name_its_registry(env, says):
    with pytest.raises(ConfigError) as err:
        Settings.from_env(env)
    assert says in str(err.value) and "databricks-uc" in str(err.value)


def test_databricks_registries_are_accepted():
    for registry in ("databricks", "databricks-uc", "databricks-uc://prof"):
        s = Settings.from_env({"MLFLOW_TRACKING_URI": "databricks", "MLFLOW_REGISTRY_URI": registry})
        assert s.registry_kind == "databricks" and s.unity_catalog == registry.startswith("databricks-uc")


def test_seal_keys_and_store_from_the_environment(tmp_path):
    from core.seal.keys import generate_key_pair

    key = generate_key_pair(tmp_path / "k.pem", tmp_path / "k.pub.pem")
    other = generate_key_pair(tmp_path / "o.pem", tmp_path / "o.pub.pem")
    s = Settings.from_env({"GUARD_SIGNING_KEY": str(tmp_path / "k.pem"),
                           "GUARD_DATA_DIR": str(tmp_path / "d")})
    assert s.signing_key.key_id == key.key_id and [t.key_id for t in s.trusted_keys] == [key.key_id]
    # No GUARD_SEAL_STORE: the seals live in the store's own database, shared wherever the store is.
    assert s.open_seal_store().uri == f"sqlite:///{tmp_path / 'd' / 'results.db'}"
    assert not (tmp_path / "d" / "seals").exists()
    assert "PRIVATE" not in repr(s) and "<set>" in repr(s)
    both = Settings.from_env({"GUARD_SIGNING_KEY": str(tmp_path / "k.pem"),
                              "GUARD_TRUSTED_KEYS": f"{tmp_path / 'k.pub.pem'}, {tmp_path / 'o.pub.pem'}",
                              "GUARD_SEAL_STORE": str(tmp_path / "elsewhere")})
    assert [t.key_id for t in both.trusted_keys] == [key.key_id, other.key_id]
    assert both.seal_store_uri == str(tmp_path / "elsewhere")
    assert Settings.from_env({}).signing_key is None


@pytest.mark.parametrize("name", ["GUARD_SIGNING_KEY", "GUARD_TRUSTED_KEYS"])
def test_unusable_seal_key_files_are_named(tmp_path, name):
    bad = tmp_path / "bad.pem"
    bad.write_text("not a key")
    with pytest.raises(ConfigError, match=name):
        Settings.from_env({name: str(bad)})


def test_sweep_start_and_alerts_from_the_environment():
    defaults = Settings.from_env({})
    assert defaults.sweep_since is None and defaults.notify_urls == []
    assert defaults.notify_on == ["ERROR", "FAILED"]
    settings = Settings.from_env({
        "GUARD_SWEEP_SINCE": "2026-11-01",
        "GUARD_NOTIFY": "json://127.0.0.1:8099/a, mailtos://u:pw@smtp.example.com?to=a@example.com,b@example.com"
                        " slack://T/B/C",
        "GUARD_NOTIFY_ON": "passed, FAILED", "GUARD_NOTIFY_RETRIES": "2", "GUARD_NOTIFY_RETRY_BASE_S": "0.5"})
    assert settings.sweep_since == 1793491200.0
    assert settings.notify_urls == ["json://127.0.0.1:8099/a",
                                    "mailtos://u:pw@smtp.example.com?to=a@example.com,b@example.com",
                                    "slack://T/B/C"]
    assert settings.notify_on == ["FAILED", "PASSED"] and settings.notify_retries == 2
    assert [settings.notify_retry_delay(n) for n in (1, 2, 3)] == [0.5, 1.0, 2.0]
    assert "pw@" not in repr(settings) and "slack://" not in repr(settings)
    assert Settings.from_env({"GUARD_SWEEP_SINCE": "ALL"}).sweep_since == 0.0
    assert Settings.from_env({"GUARD_SWEEP_SINCE": "2026-11-01T08:00:00+02:00"}).sweep_since == 1793512800.0


@pytest.mark.parametrize("env", [{"GUARD_SWEEP_SINCE": "last tuesday"}, {"GUARD_NOTIFY_ON": "failed,warn"},
                                 {"GUARD_NOTIFY_RETRIES": "-1"}])
def test_bad_sweep_start_and_alert_settings_are_named(env):
    with pytest.raises(ConfigError, match=next(iter(env))):
        Settings.from_env(env)


def test_a_shared_store_with_a_per_host_seal_folder_is_refused_at_start(tmp_path):
    shared = {"GUARD_STORE": "postgresql://guard:pw@db.example:5432/guard", "GUARD_DATA_DIR": str(tmp_path)}
    for folder in (str(tmp_path / "seals"), f"file://{tmp_path / 'seals'}"):
        with pytest.raises(ConfigError, match="GUARD_SEAL_STORE is a folder of this host") as refused:
            Settings.from_env({**shared, "GUARD_SEAL_STORE": folder})
        assert "pw" not in str(refused.value)
    # Shared places are fine, and so is a folder beside an embedded (one-host) store.
    for shared_place in ("s3://bucket/seals", "postgresql://guard@db.example/seals"):
        assert Settings.from_env({**shared, "GUARD_SEAL_STORE": shared_place}).seal_store_uri == shared_place
    assert Settings.from_env({"GUARD_SEAL_STORE": str(tmp_path / "seals")}).seal_store_uri
    assert Settings.from_env(shared).open_seal_store().uri.startswith("postgresql+psycopg://guard:***@")


def test_guard_policy_is_loaded_and_validated_at_start(tmp_path):
    good = tmp_path / "policy.yaml"
    good.write_text("version: 1\ndefault:\n  signature: required\n")
    s = Settings.from_env({"GUARD_POLICY": str(good)})
    assert s.policy_path == str(good) and s.policy.effective("m").get("signature") == "required"
    assert "<loaded>" in repr(s)
    assert Settings.from_env({}).policy is None


def test_a_broken_guard_policy_is_one_line_naming_the_file_line_and_key(tmp_path):
    bad = tmp_path / "policy.yaml"
    bad.write_text("version: 1\ndefault:\n  signature: required\n  serialization:\n    deny: [pickel]\n")
    with pytest.raises(ConfigError) as info:
        Settings.from_env({"GUARD_POLICY": str(bad)})
    message = str(info.value)
    assert "\n" not in message
    assert message.startswith(f"GUARD_POLICY: {bad}:5: default.serialization.deny: unknown format family")
    with pytest.raises(ConfigError, match="cannot read the policy file"):
        Settings.from_env({"GUARD_POLICY": str(tmp_path / "missing.yaml")})
