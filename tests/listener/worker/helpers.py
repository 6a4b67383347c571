"""Helpers for worker tests: register small models with nested artifacts on a real tracking server."""

from __future__ import annotations

import contextlib
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

from mlflow import MlflowClient

NESTED_FILES = {
    "MLmodel": "artifact_path: model\nflavors: {}\n",
    "requirements.txt": "numpy\n",
    "data/weights.bin": "0123456789" * 100,
    "data/deep/nested/layer.bin": "abcdef" * 50,
    "code/util.py": "def f():\n    return 1\n",
}


def write_model_dir(root: Path, files: dict[str, str] | None = None) -> Path:
    """Write a small model folder with nested sub-folders under ``root``."""
    for rel, text in (files or NESTED_FILES).items():
        p = root / rel
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_text(text)
    return root


def register_model(client: MlflowClient, tmp: Path, name: str | None = None,
                   files: dict[str, str] | None = None) -> tuple[str, str]:
    """Log a run with a nested model folder and register it; returns (model name, version)."""
    name = name or f"m-{uuid.uuid4().hex[:8]}"
    exp = client.get_experiment_by_name("worker-tests")
    exp_id = exp.experiment_id if exp else client.create_experiment("worker-tests")
    run = client.create_run(exp_id)
    src = write_model_dir(tmp / f"src-{uuid.uuid4().hex[:6]}", files)
    client.log_artifacts(run.info.run_id, str(src), "model")
    client.set_terminated(run.info.run_id)
    with contextlib.suppress(Exception):  # already registered
        client.create_registered_model(name)
    mv = client.create_model_version(name, f"{run.info.artifact_uri}/model", run_id=run.info.run_id)
    return name, str(mv.version)


def local_model_path(client: MlflowClient, name: str, version: str) -> Path:
    """The version's stored files on disk (the server uses a local artifact root)."""
    uri = client.get_model_version_download_uri(name, version)
    parsed = urlparse(uri)
    return Path(parsed.path if parsed.scheme == "file" else uri)


def wait_for(predicate, timeout: float = 60.0, interval: float = 0.2, what: str = "condition"):
    """Poll ``predicate`` until it returns something truthy; fail after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        last = predicate()
        if last:
            return last
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout}s waiting for {what}; last value: {last!r}")


@contextlib.contextmanager
def verdict_writes(store: Any) -> Iterator[list[str]]:
    """The verdicts written into ``store`` while the block runs, as the database received them: every
    UPDATE of the journal that sets a verdict, one entry each."""
    from sqlalchemy import event

    written: list[str] = []

    def seen(conn, cursor, statement, parameters, context, executemany):  # noqa: ANN001 - SQLAlchemy's hook
        head = " ".join(statement.split()).upper()
        if head.startswith("UPDATE VALIDATIONS SET") and " VERDICT=" in head.replace(" = ", "="):
            written.append(head)

    event.listen(store.engine, "before_cursor_execute", seen)
    try:
        yield written
    finally:
        event.remove(store.engine, "before_cursor_execute", seen)
