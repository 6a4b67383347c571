"""Gunicorn settings for the listener, all from the environment (Procfile / container convention).

Used by the Procfile's ``web`` process: ``gunicorn -c deploy/gunicorn.conf.py 'listener.web:create_app()'``.

Workers are threaded (gthread): a connection waiting for its first bytes waits in the worker's poller, not
in a thread, and every read of a request body gives up after ``GUNICORN_BODY_TIMEOUT`` seconds. So clients
that open connections and hold a body half-sent occupy a thread for that long at most, and with the
default there are more threads than a burst of such clients: ``/healthz`` and genuine deliveries
keep being answered meanwhile.

Environment:
    PORT                          listen port (default 8000); bound on 0.0.0.0 like every Procfile platform
    GUNICORN_BIND                 full bind address instead (e.g. ``127.0.0.1:8000`` on a laptop)
    WEB_CONCURRENCY / GUNICORN_WORKERS   worker processes (default 2)
    GUNICORN_THREADS              threads per worker (default 64: more than the slow clients one worker
                                  should outlast; each holds a thread for GUNICORN_BODY_TIMEOUT at most)
    GUNICORN_BODY_TIMEOUT         seconds one read of a request body may wait for the client (default 10);
                                  a client that stalls longer is answered 400 and nothing is queued
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
worker_class = "gthread"
threads = _int_env("GUNICORN_THREADS", default=64)
body_timeout_s = _int_env("GUNICORN_BODY_TIMEOUT", default=10)

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


def on_starting(server) -> None:
    """Refuse to start, in the master and before any worker, on unusable settings (a broken policy file):
    one line saying why, instead of every worker failing to boot with a traceback."""
    import sys

    from listener.config import ConfigError, Settings

    try:
        Settings.from_env()
    except ConfigError as exc:
        server.log.error("refusing to start: %s", exc)
        sys.exit(1)


def when_ready(server) -> None:
    """Say once, in the master, what the webhook routes accept (workers inherit it and stay quiet)."""
    from listener.config import Settings
    from listener.route_notices import announce_routes

    announce_routes(Settings.from_env(), server.log)


def pre_request(worker, req) -> None:
    """Bound every read of this request's body: a client that stops sending mid-body frees the thread."""
    sock = getattr(req.unreader, "sock", None)
    if sock is not None:
        sock.settimeout(body_timeout_s)


def child_exit(server, worker) -> None:
    """Drop a dead worker's live gauges so /metrics does not keep reporting them."""
    from prometheus_client import multiprocess

    multiprocess.mark_process_dead(worker.pid)


def on_exit(server) -> None:
    """Remove the metrics folder this master created (an operator-given one is left alone)."""
    if _owned_multiproc_dir:
        shutil.rmtree(_owned_multiproc_dir, ignore_errors=True)
