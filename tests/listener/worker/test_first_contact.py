"""First contact with a registry that already holds models: the first sweep writes nothing, later ones watch.

A real ``mlflow server`` holds 40 versions of 5 models with aliases before the guard first starts. The
guard runs as its console scripts (``guard-sweep``), with a data folder and store of its own: a new
deployment. No listener runs, so every webhook is lost and the sweep is the only way in.
"""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from mlflow import MlflowClient

from listener.config import Settings
from listener.store import SOURCE_SWEEP, first_contact_mark, get_store
from listener.worker.sweep import CREATED_EVENT, sweep_key
from tests.listener.helpers import queued_messages
from tests.listener.worker.helpers import register_model
from tests.support.populated_registry import Populated, guard_env, guard_tags, populate
from tests.support.procs import MlflowServer

BIN = Path(sys.executable).parent


@pytest.fixture(scope="module")
def registry(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[MlflowServer, Populated]]:
    server = MlflowServer(tmp_path_factory.mktemp("first-contact")).start()
    try:
        yield server, populate(MlflowClient(server.url), tmp_path_factory.mktemp("models"))
    finally:
        server.stop()


def _guard(command: str, *args: str, env: dict[str, str]) -> dict:
    done = subprocess.run([str(BIN / command), *args], env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stdout + done.stderr
    return json.loads(done.stdout.strip().splitlines()[-1])


def test_first_sweep_writes_nothing_and_the_next_catches_up_a_lost_webhook(registry, tmp_path: Path):
    server, populated = registry
    client = MlflowClient(server.url)
    data_dir = tmp_path / "guard"
    env = guard_env(server.url, data_dir)
    settings = Settings(tracking_uri=server.url, data_dir=data_dir)

    first = _guard("guard-sweep", env=env)

    assert first["caught_up"] == [] and first["aliases_changed"] == [] and first["reverified"] == []
    assert queued_messages(settings) == []
    assert guard_tags(client, populated.versions) == {}
    store = get_store(settings.store_url)
    start = store.get_mark(first_contact_mark("mlflow"))
    assert start is not None
    # The aliases found are the starting point of their history, recorded and not validated.
    expected = sorted(f"{m}@{a}={v}" for (m, a), v in populated.aliases.items())
    assert sorted(first["aliases_recorded"]) == expected
    holder = store.alias_holder("mlflow", "fc-alpha", "champion")
    assert holder is not None and holder.version == "2" and holder.source == SOURCE_SWEEP
    assert store.recent(limit=100) == []

    # A deliberate backfill would take exactly the 40, and a dry run of it writes nothing.
    dry = _guard("guard-sweep", "--backfill", "--dry-run", env=env)
    listed = {(v["model"], v["version"]) for v in dry["versions"]}
    assert listed == set(populated.versions) and dry["total_versions"] == 40
    assert dry["models"] == {name: 8 for name in {m for m, _ in populated.versions}}
    assert dry["total_bytes"] > 0 and dry["bytes_unknown"] == 0
    assert dry["handed_out"] == [] and store.backfilled("mlflow") == {}
    assert queued_messages(settings) == [] and guard_tags(client, populated.versions) == {}
    assert store.get_mark(first_contact_mark("mlflow")) == start

    # A version created now: its webhook is lost (no listener runs); the next sweep catches it up.
    name, version = register_model(client, tmp_path, name="fc-late")
    client.set_registered_model_alias("fc-alpha", "champion", "8")  # changed after first contact
    second = _guard("guard-sweep", "--run", env=env)

    assert second["caught_up"] == [sweep_key("mlflow", name, version, CREATED_EVENT)]
    assert second["aliases_changed"] == [
        "sweep:mlflow:fc-alpha:8:model_version_alias.created:champion"]
    assert client.get_model_version(name, version).tags["validation.status"] == "PASSED"
    touched = guard_tags(client, populated.versions)
    assert list(touched) == [("fc-alpha", "8")]  # the alias set after first contact was checked
    assert "validation.seal_note" not in client.get_model_version(name, version).tags
    # The starting mark never moves, and a backfill still sees the 40 minus the one checked since.
    assert store.get_mark(first_contact_mark("mlflow")) == start
    again = _guard("guard-sweep", "--backfill", "--dry-run", env=env)
    listed = {(v["model"], v["version"]) for v in again["versions"]}
    assert listed == set(populated.versions) - {("fc-alpha", "8")}
    assert again["already_checked"] == 1


def test_guard_sweep_since_all_catches_up_everything_as_before(registry, tmp_path: Path):
    server, populated = registry
    data_dir = tmp_path / "guard"
    report = _guard("guard-sweep", env=guard_env(server.url, data_dir, GUARD_SWEEP_SINCE="all"))
    expected = {sweep_key("mlflow", m, v, CREATED_EVENT) for m, v in populated.versions}
    assert expected <= set(report["caught_up"])
    assert len(report["aliases_changed"]) >= len(populated.aliases) and report["aliases_recorded"] == []
    settings = Settings(tracking_uri=server.url, data_dir=data_dir)
    assert len(queued_messages(settings)) == len(report["caught_up"]) + len(report["aliases_changed"])


def test_guard_sweep_since_a_date_starts_there(registry, tmp_path: Path):
    server, populated = registry
    from datetime import datetime, timezone

    since = datetime.fromtimestamp(populated.midpoint, timezone.utc).isoformat()
    report = _guard("guard-sweep", env=guard_env(server.url, tmp_path / "guard", GUARD_SWEEP_SINCE=since))
    caught = {tuple(k.split(":")[2:4]) for k in report["caught_up"]}
    second_half = {(m, v) for m, v in populated.versions if int(v) > 4}
    assert second_half <= caught and not caught & {(m, v) for m, v in populated.versions if int(v) <= 4}
    # @candidate sits on version 6 (created after the date): validated; @champion on version 2: recorded.
    champion_moved = "sweep:mlflow:fc-alpha:8:model_version_alias.created:champion"  # by the test above
    assert all(key.endswith(":candidate") for key in report["aliases_changed"] if key != champion_moved)
    assert any("@champion=2" in item for item in report["aliases_recorded"])
