"""The deployment files agree with each other and with the code: Procfile, gunicorn settings, Docker,
compose, Databricks jobs. (Docker itself cannot run here; what can be checked without it is checked.)"""

from __future__ import annotations

import ast
import json
import os
import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from tests.deploy.stack import REPO_ROOT, procfile

DEPLOY = REPO_ROOT / "deploy"


def gunicorn_settings(env: dict[str, str]) -> dict:
    """Evaluate deploy/gunicorn.conf.py the way gunicorn does (exec of the file) in a clean process."""
    code = ("import json, runpy; ns = runpy.run_path('deploy/gunicorn.conf.py'); "
            "print(json.dumps({k: ns.get(k) for k in ('bind', 'workers', 'threads', 'timeout', 'accesslog', "
            "'errorlog', 'control_socket_disable', 'worker_class', 'body_timeout_s')} "
            "| {'multiproc': __import__('os').environ.get('PROMETHEUS_MULTIPROC_DIR')}))")
    cleared = ("PORT", "WEB_CONCURRENCY", "GUNICORN_WORKERS", "GUNICORN_BIND", "PROMETHEUS_MULTIPROC_DIR")
    base = {k: v for k, v in os.environ.items() if k not in cleared}
    out = subprocess.run([sys.executable, "-c", code], cwd=REPO_ROOT, env={**base, **env},
                         capture_output=True, text=True, check=True)
    return json.loads(out.stdout)


def test_procfile_runs_the_app_factory_and_the_workers_huey() -> None:
    entries = procfile()
    assert set(entries) == {"web", "worker"}
    web = shlex.split(entries["web"])
    assert web[:3] == ["gunicorn", "-c", "deploy/gunicorn.conf.py"] and web[3] == "listener.web:create_app()"
    worker = shlex.split(entries["worker"])
    assert worker[:2] == ["huey_consumer", "listener.worker.tasks.huey"]
    assert worker[worker.index("-k") + 1] == "thread"
    # The module and attribute the consumer loads exist.
    from listener import web
    from listener.worker import tasks

    assert callable(web.create_app) and tasks.huey is not None


def test_gunicorn_settings_follow_the_environment(tmp_path: Path) -> None:
    s = gunicorn_settings({"PORT": "8123", "WEB_CONCURRENCY": "3"})
    assert s["bind"] == "0.0.0.0:8123" and s["workers"] == 3
    assert s["accesslog"] == "-" and s["errorlog"] == "-" and s["control_socket_disable"] is True
    assert 0 < s["timeout"] <= 30
    # Threaded workers with a body-read timeout: clients holding a body half-sent cannot stall the intake.
    assert s["worker_class"] == "gthread" and s["threads"] >= 8 and 0 < s["body_timeout_s"] <= s["timeout"]
    # Without a configured folder, the workers get a private multiprocess folder of their own.
    assert s["multiproc"] and Path(s["multiproc"]).is_dir()
    Path(s["multiproc"]).rmdir()

    given = tmp_path / "metrics"
    s = gunicorn_settings({"GUNICORN_WORKERS": "5", "GUNICORN_BIND": "127.0.0.1:9000",
                           "PROMETHEUS_MULTIPROC_DIR": str(given)})
    assert s["bind"] == "127.0.0.1:9000" and s["workers"] == 5 and s["multiproc"] == str(given)
    assert given.is_dir()

    with pytest.raises(subprocess.CalledProcessError):
        gunicorn_settings({"WEB_CONCURRENCY": "0"})


def test_dockerfile_is_slim_non_root_with_a_healthcheck_and_runs_the_procfile_web() -> None:
    lines = [ln.strip() for ln in (DEPLOY / "Dockerfile").read_text().splitlines()]
    assert lines[[i for i, ln in enumerate(lines) if ln.startswith("FROM")][0]] == "FROM python:3.11-slim"
    users = [ln.split()[1] for ln in lines if ln.startswith("USER ")]
    assert users and users[-1] not in ("root", "0")
    assert any(ln.startswith("RUN pip install -r requirements.txt") for ln in lines)
    health = " ".join(lines[[i for i, ln in enumerate(lines) if ln.startswith("HEALTHCHECK")][0]:][:2])
    assert "/healthz" in health
    # The image's command (the HEALTHCHECK has a CMD of its own, in shell form).
    cmd = json.loads([ln for ln in lines if ln.startswith("CMD [")][-1].removeprefix("CMD "))
    assert cmd == shlex.split(procfile()["web"])
    # Everything the image copies is in the build context the ignore file lets through.
    ignore = (DEPLOY / "Dockerfile.dockerignore").read_text()
    for ln in lines:
        if ln.startswith("COPY "):
            for src in ln.split()[1:-1]:
                assert f"!{src.rstrip('/')}" in ignore, src


def test_compose_has_mlflow_redis_postgres_web_worker_wired_together() -> None:
    from listener.config import Settings

    compose = yaml.safe_load((DEPLOY / "docker-compose.yml").read_text())
    services = compose["services"]
    assert set(services) == {"mlflow", "redis", "postgres", "web", "worker"}
    web, worker, mlflow_svc = services["web"], services["worker"], services["mlflow"]
    assert web["command"] == shlex.split(procfile()["web"])
    assert worker["command"][:2] == ["huey_consumer", "listener.worker.tasks.huey"]
    for svc in (web, worker):
        env = svc["environment"]
        assert env["GUARD_QUEUE"].startswith("redis://redis:")
        assert env["MLFLOW_TRACKING_URI"] == "http://mlflow:5000"
        assert "GUARD_MLFLOW_SECRET" in env
        assert "guard-data:/data" in svc["volumes"]
        # One store for every container: each status page shows what every worker wrote.
        store = env["GUARD_STORE"].replace("${GUARD_POSTGRES_PASSWORD:?set GUARD_POSTGRES_PASSWORD in "
                                           "deploy/.env}", "pw")
        assert store == "postgresql://guard:pw@postgres:5432/guard"
        assert Settings.from_env({"GUARD_STORE": store}).store_url.startswith("postgresql+psycopg://")
        assert svc["depends_on"]["postgres"] == {"condition": "service_healthy"}
    postgres = services["postgres"]
    pg_env = postgres["environment"]
    assert (pg_env["POSTGRES_USER"], pg_env["POSTGRES_DB"]) == ("guard", "guard")
    assert "pg_isready" in postgres["healthcheck"]["test"]
    server_env = mlflow_svc["environment"]
    assert server_env["MLFLOW_WEBHOOK_ALLOW_PRIVATE_IPS"] == "true"
    assert "http" in server_env["MLFLOW_WEBHOOK_ALLOWED_SCHEMES"].split(",")
    assert "MLFLOW_WEBHOOK_SECRET_ENCRYPTION_KEY" in server_env
    assert "--serve-artifacts" in mlflow_svc["command"]


DATABRICKS = DEPLOY / "databricks"
JOB_FILES = ["job.json", "job-unity-catalog.json", "deployment-job.json"]


def job_settings(name: str):
    from databricks.sdk.service.jobs import JobSettings

    raw = json.loads((DATABRICKS / name).read_text())
    settings = JobSettings.from_dict(raw)
    # Nothing the Jobs API would not know: the SDK's model keeps every key.
    assert settings.as_dict() == raw
    return settings


def wheel_entry_points() -> set[str]:
    import tomllib

    return set(tomllib.loads((REPO_ROOT / "pyproject.toml").read_text())["project"]["scripts"])


@pytest.mark.parametrize("name", JOB_FILES)
def test_databricks_jobs_are_valid_and_reference_only_their_own_parameters(name: str) -> None:
    settings = job_settings(name)
    defined = {p.name for p in settings.parameters or []}
    text = (DATABRICKS / name).read_text()
    assert set(re.findall(r"\{\{job\.parameters\.(\w+)\}\}", text)) <= defined
    wheel_tasks = [t for t in settings.tasks if t.python_wheel_task is not None]
    assert wheel_tasks and all(t.python_wheel_task.entry_point in wheel_entry_points() for t in wheel_tasks)
    assert all(t.max_retries == 0 for t in wheel_tasks)  # FAILED is a verdict, not a fault to retry
    env = settings.job_clusters[0].new_cluster.spark_env_vars
    assert env["MLFLOW_TRACKING_URI"] == "databricks"


def test_job_webhook_job_takes_the_event_as_a_task_parameter() -> None:
    settings = job_settings("job.json")
    # A registry job webhook sends task parameters; job-level parameters would refuse them.
    assert not settings.parameters
    (task,) = settings.tasks
    assert task.python_wheel_task.entry_point == "guard-job"
    assert task.python_wheel_task.named_parameters == {"event_message": ""}
    # With MLFLOW_TRACKING_URI=databricks alone MLflow 3 reads Unity Catalog: name the workspace registry.
    assert settings.job_clusters[0].new_cluster.spark_env_vars["MLFLOW_REGISTRY_URI"] == "databricks"


def test_unity_catalog_trigger_job_passes_the_updates_as_event_message() -> None:
    settings = job_settings("job-unity-catalog.json")
    assert settings.trigger.model.condition.value == "MODEL_VERSION_READY"
    assert [(p.name, p.default) for p in settings.parameters] == \
        [("event_message", "{{job.trigger.model.updates}}")]
    (task,) = settings.tasks
    assert task.python_wheel_task.named_parameters == {"event_message": "{{job.parameters.event_message}}"}
    assert settings.job_clusters[0].new_cluster.spark_env_vars["MLFLOW_REGISTRY_URI"] == "databricks-uc"


def test_deployment_job_validates_ahead_of_the_approval_task() -> None:
    settings = job_settings("deployment-job.json")
    assert [p.name for p in settings.parameters] == ["model_name", "model_version"]
    tasks = {t.task_key: t for t in settings.tasks}
    guard = tasks["guard_validation"]
    assert not guard.depends_on
    assert guard.python_wheel_task.entry_point == "guard-job"
    assert guard.python_wheel_task.named_parameters == {"model_name": "{{job.parameters.model_name}}",
                                                        "model_version": "{{job.parameters.model_version}}"}
    approval = tasks["Approval_Check"]
    assert [d.task_key for d in approval.depends_on] == ["guard_validation"]
    assert approval.run_if.value == "ALL_SUCCESS"  # a FAILED/ERROR validation fails the run before approval
    # The approval task waits for a UC tag named after itself.
    assert approval.notebook_task.base_parameters["approval_tag_name"] == "{{task.name}}"
    deployment = [t for t in settings.tasks if t.task_key not in ("guard_validation", "Approval_Check")]
    assert deployment and all("Approval_Check" in [d.task_key for d in t.depends_on] for t in deployment)
    assert settings.job_clusters[0].new_cluster.spark_env_vars["MLFLOW_REGISTRY_URI"] == "databricks-uc"


def test_job_webhook_example_passes_the_required_access_token() -> None:
    import dataclasses

    from databricks.sdk.service.ml import JobSpec

    readme = (DATABRICKS / "README.md").read_text()
    blocks = re.findall(r"```python\n(.*?)```", readme, flags=re.S)
    calls = [node for block in blocks for node in ast.walk(ast.parse(block))
             if isinstance(node, ast.Call) and getattr(node.func, "id", None) == "JobSpec"]
    assert calls, "the README shows no JobSpec"
    fields = {f.name for f in dataclasses.fields(JobSpec)}
    required = {f.name for f in dataclasses.fields(JobSpec) if f.default is dataclasses.MISSING}
    for call in calls:
        given = {kw.arg for kw in call.keywords}
        assert required <= given and given <= fields
