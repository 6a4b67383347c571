"""Gunicorn settings for the listener, all from the environment (Procfile / container convention).

Used by the Procfile's ``web`` process: ``gunicorn -c deploy/gunicorn.conf.py 'listener.app:create_app()'``.

Environment:
    PORT                          listen port (default 8000); bound on 0.0.0.0 like every Procfile platform
    GUNICORN_BIND                 full bind address instead (e.g. ``127.0.0.1:8000`` on a laptop)
    WEB_CONCURRENCY / GUNICORN_WORKERS   worker processes (default 2)
    GUNICORN_THREADS              threads per worker (default 1; more than 1 selects the gthread worker)
    GUNICORN_TIMEOUT              seconds a request may take before the worker is replaced (default 30)
    GUNICORN_LOG_LEVEL            info by default
    FORWARDED_ALLOW_IPS           read by gunicorn: proxies trusted for X-Forwarded-* (deploy/TLS.md)
    PROMETHEUS_MULTIPROC_DIR      prometheus-client multiprocess folder shared by the workers (and the huey
                                  consumer, to see its counters too); a private temporary one when unset
"""

from __future__ import annotations

import os
import shutil
import tempfile


def _int_env(*names: str, default: int) -> int:
    """First of ``names`` that is set to a positive integer, else ``default``."""
    for name in names:
        value = os.environ.get(name, "").strip()
        if value:
            number = int(value)
            if number < 1:
                raise ValueError(f"{name} must be at least 1, got {number}")
            return number
    return default


bind = os.environ.get("GUNICORN_BIND") or f"0.0.0.0:{_int_env('PORT', default=8000)}"
workers = _int_env("WEB_CONCURRENCY", "GUNICORN_WORKERS", default=2)
threads = _int_env("GUNICORN_THREADS", default=1)

# A webhook must be answered well inside MLflow's 30 s request timeout; the listener only verifies and
# enqueues, so a request that takes this long means a stuck worker, which gunicorn then replaces.
timeout = _int_env("GUNICORN_TIMEOUT", default=30)
graceful_timeout = _int_env("GUNICORN_GRACEFUL_TIMEOUT", default=20)
keepalive = 5

# Logs go to stdout/stderr: the platform (honcho, Docker, systemd, Heroku-like routers) collects them.
accesslog = "-"
errorlog = "-"
loglevel = os.environ.get("GUNICORN_LOG_LEVEL", "info")
access_log_format = '%(h)s "%(r)s" %(s)s %(b)s %(L)ss'

# No runtime control socket: several listeners on one host would share its default path in $HOME, and
# nothing here manages gunicorn at run time (signals do: TERM stops, HUP reloads, TTIN/TTOU resize).
control_socket_disable = True

# Worker heartbeat files on tmpfs where there is one: a disk-backed /tmp can stall heartbeats in containers.
if os.path.isdir("/dev/shm"):
    worker_tmp_dir = "/dev/shm"

_owned_multiproc_dir: str | None = None
if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
    # Given by the operator (possibly shared with the worker process): created if missing, never wiped here,
    # because the huey consumer may already be writing into it.
    os.makedirs(os.environ["PROMETHEUS_MULTIPROC_DIR"], exist_ok=True)
else:
    # Several workers each count their own requests; without a shared folder /metrics would show whichever
    # worker answered the scrape. A private folder for this master's workers, removed on exit. Set in the
    # master before any worker imports prometheus-client, so every worker starts in multiprocess mode.
    _owned_multiproc_dir = tempfile.mkdtemp(prefix="guard-metrics-")
    os.environ["PROMETHEUS_MULTIPROC_DIR"] = _owned_multiproc_dir


def child_exit(server, worker) -> None:
    """Drop a dead worker's live gauges so /metrics does not keep reporting them."""
    from prometheus_client import multiprocess

    multiprocess.mark_process_dead(worker.pid)


def on_exit(server) -> None:
    """Remove the metrics folder this master created (an operator-given one is left alone)."""
    if _owned_multiproc_dir:
        shutil.rmtree(_owned_multiproc_dir, ignore_errors=True)
