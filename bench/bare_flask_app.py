"""The reference for bench_webhook.py: a bare Flask app that answers every webhook POST with 200.

Served by the same gunicorn command line as the listener, so the difference between the two is what the
listener does per delivery (signature check, parsing, durable enqueue, metrics).
"""

from flask import Flask, request

app = Flask(__name__)


@app.post("/webhooks/mlflow")
def ack() -> tuple[str, int]:
    """Read the body (as any receiver must: a threaded worker drains an unread one before reusing the
    connection) and answer at once, checking nothing."""
    request.get_data()
    return "", 200
