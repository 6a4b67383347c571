"""The Databricks environment table of docs/databricks.md ("The environment, exactly"), read so tests can
prove that the environment they run the listener and ``guard-job`` with is the one the docs give a user."""

from __future__ import annotations

import re
from pathlib import Path

DOC = Path(__file__).resolve().parents[2] / "docs" / "databricks.md"
# What a test sets besides the documented variables, and why it may:
TEST_ONLY = {
    "PATH", "HOME",  # an empty home folder: no ~/.databrickscfg profile can change the workspace
    # where the fake's cloud storage (moto) is; on Databricks the temporary credentials name the real store
    "AWS_ENDPOINT_URL_S3", "AWS_DEFAULT_REGION",
    # pacing, documented with the listener's configuration: tests wait seconds, not minutes
    "GUARD_RETRY_BASE_S", "GUARD_RETRY_MAX_S", "GUARD_DATABRICKS_RETRY_TIMEOUT", "GUARD_SWEEP_INTERVAL",
    # the process runner (gunicorn / Procfile conventions) and MLflow's telemetry
    "GUNICORN_BIND", "WEB_CONCURRENCY", "GUNICORN_GRACEFUL_TIMEOUT", "PROMETHEUS_MULTIPROC_DIR",
    "MLFLOW_DISABLE_TELEMETRY",
}
_VARIABLE = re.compile(r"^[A-Z][A-Z0-9_]+(=.*)?$")


def documented_rows() -> dict[str, dict[str, str | None]]:
    """Per row of the table (its first cell): variable -> the value as written (None: no value given)."""
    text = DOC.read_text(encoding="utf-8")
    section = text.split("\n## The environment, exactly", 1)[1].split("\n## ", 1)[0]
    rows: dict[str, dict[str, str | None]] = {}
    for line in section.splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if len(cells) < 2 or set(cells[0]) <= {"-", " "} or cells[0] == "where":
            continue
        variables: dict[str, str | None] = {}
        for item in re.findall(r"`([^`]+)`", cells[1]):
            if _VARIABLE.match(item):
                name, _, value = item.partition("=")
                variables[name] = value if "=" in item else None
        rows[cells[0].replace("`", "")] = variables
    return rows


def row(label: str) -> dict[str, str | None]:
    """The one row whose first cell contains ``label``."""
    [found] = [v for k, v in documented_rows().items() if label in k]
    return found


def value_matches(written: str | None, actual: str) -> bool:
    """``actual`` has the shape of the documented value: literal text equal, each ``<placeholder>`` any text.

    ``https://`` also accepts ``http://``: the fake serves plain HTTP on loopback.
    """
    if written is None:
        return bool(actual)
    pattern = re.escape(written).replace("https://", "https?://")
    pattern = re.sub(r"<[^>]*>", ".+", pattern)
    return re.fullmatch(pattern, actual) is not None


def mismatches(label: str, envs: list[dict[str, str]]) -> list[str]:
    """How the environments one path's tests use differ from the documented row ``label`` (empty: none).

    Every variable a test sets is in the row (or in :data:`TEST_ONLY`) with the row's value shape, and
    every variable of the row is set by one of the tests.
    """
    documented = row(label)
    problems = []
    for env in envs:
        for name, value in env.items():
            if name in TEST_ONLY:
                continue
            if name not in documented:
                problems.append(f"{name} is set by the tests but not in the documented row {label!r}")
            elif not value_matches(documented[name], value):
                problems.append(f"{name}={value!r} does not have the documented shape {documented[name]!r}")
    used = set().union(*(set(env) for env in envs))
    problems += [f"{name} is in the documented row {label!r} but no test sets it" for name in documented
                 if name not in used]
    return problems
