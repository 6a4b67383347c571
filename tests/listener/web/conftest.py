"""The listener app on a real SQLite huey queue, reached the two ways a request body can be delimited."""

from __future__ import annotations

import pytest

from listener.config import Settings
from listener.web import create_app


@pytest.fixture(params=["werkzeug-delimited", "server-delimited"])
def client(request, settings: Settings):
    """The app's test client, once with werkzeug delimiting the body and once with the server doing it.

    gunicorn delimits request bodies itself (``wsgi.input_terminated``) and hands over what arrived;
    werkzeug delimits them by Content-Length otherwise. Every webhook test runs both ways.
    """
    test_client = create_app(settings).test_client()
    if request.param == "server-delimited":
        test_client.environ_base["wsgi.input_terminated"] = True
    return test_client
