"""A registry that already holds models before the guard first starts: 40 versions of 5 models, aliases.

Versions 1-4 of each model are created first, then (after :attr:`Populated.midpoint`) versions 5-8, so
a backfill's ``--since`` can split them. ``@champion`` is on version 2 of every model, ``@candidate`` on
version 6 of the first three.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass
from pathlib import Path

from mlflow import MlflowClient

from tests.listener.worker.helpers import register_model

MODELS = ("fc-alpha", "fc-beta", "fc-gamma", "fc-delta", "fc-epsilon")
VERSIONS_PER_MODEL = 8


@dataclass
class Populated:
    """What :func:`populate` created: (model, version) pairs, aliases, and the moment between the halves."""

    versions: list[tuple[str, str]]
    aliases: dict[tuple[str, str], str]
    midpoint: float


def populate(client: MlflowClient, tmp: Path) -> Populated:
    """Register the 40 versions and set the aliases (see the module docstring)."""
    versions: list[tuple[str, str]] = []
    midpoint = 0.0
    for half in (0, 1):
        if half:
            time.sleep(1.1)  # creation timestamps are in milliseconds: a clean cut between the halves
            midpoint = time.time()
            time.sleep(0.1)
        for name in MODELS:
            for _ in range(VERSIONS_PER_MODEL // 2):
                versions.append(register_model(client, tmp, name=name))
    aliases: dict[tuple[str, str], str] = {}
    for i, name in enumerate(MODELS):
        client.set_registered_model_alias(name, "champion", "2")
        aliases[(name, "champion")] = "2"
        if i < 3:
            client.set_registered_model_alias(name, "candidate", "6")
            aliases[(name, "candidate")] = "6"
    return Populated(versions, aliases, midpoint)


def guard_env(server_url: str, data_dir: Path, **extra: str) -> dict[str, str]:
    """The environment of a guard process of a new deployment (its own data folder and store)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("GUARD_", "MLFLOW_", "DATABRICKS_"))}
    env.update({"MLFLOW_TRACKING_URI": server_url, "GUARD_DATA_DIR": str(data_dir),
                "MLFLOW_DISABLE_TELEMETRY": "true", "GUARD_RETRY_BASE_S": "0.5", "GUARD_RETRY_MAX_S": "2"})
    env.update(extra)
    return env


def guard_tags(client: MlflowClient,
               versions: list[tuple[str, str]]) -> dict[tuple[str, str], dict[str, str]]:
    """The ``validation.*`` tags of each version that has any (what the guard wrote onto it)."""
    found = {}
    for name, version in versions:
        mv = client.get_model_version(name, version)
        tags = {k: v for k, v in (mv.tags or {}).items() if k.startswith("validation.")}
        if tags or "validation" in (mv.description or "").lower():
            found[(name, version)] = tags
    return found
