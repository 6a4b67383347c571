"""The webhook listener: a Flask app factory (``gunicorn 'listener.web:create_app()'``).

HTTP only. ``webhooks`` takes deliveries (protocol parser, then intake), ``status`` shows the results,
``ops`` answers the probes and metrics. Refusals raised by the protocol parsers become HTTP answers
here, in one place.
"""

from __future__ import annotations

import logging
from typing import Any

from flask import Flask, request
from werkzeug.exceptions import HTTPException

from listener import intake
from listener.config import Settings
from listener.protocol.request import Ignored, Rejected
from listener.route_notices import announce_routes
from listener.web import ops, status, webhooks

log = logging.getLogger("listener.web")
Answer = tuple[dict[str, Any], int]  # Flask turns a (dict, status) pair into a JSON response


def create_app(config: Settings | dict[str, Any] | None = None) -> Flask:
    """Build the listener app. ``config``: Settings, a dict of Settings overrides, or None (environment)."""
    settings = config if isinstance(config, Settings) else Settings.from_env(**(config or {}))
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    app = Flask(__name__)
    app.config["GUARD_SETTINGS"] = settings
    # Belt and braces with the webhook route's own limit: werkzeug itself refuses to stream more than this.
    app.config["MAX_CONTENT_LENGTH"] = settings.max_body_bytes
    app.json.sort_keys = False
    announce_routes(settings, log)
    intake.get_huey(settings)  # open (and create) the queue now, not on the first delivery
    app.register_blueprint(webhooks.blueprint(settings))
    app.register_blueprint(status.blueprint(settings))
    app.register_blueprint(ops.blueprint(settings))

    @app.errorhandler(Rejected)
    @app.errorhandler(Ignored)
    def protocol_answer(exc: Rejected | Ignored) -> Answer:
        return exc.body, exc.status_code

    @app.errorhandler(HTTPException)
    def http_error(exc: HTTPException) -> Answer:
        return {"status": "error", "reason": exc.description or exc.name}, exc.code or 500

    @app.errorhandler(Exception)
    def unexpected_error(exc: Exception) -> Answer:
        log.exception("unhandled error on %s %s", request.method, request.path)
        return {"status": "error", "reason": "internal error"}, 500

    return app
