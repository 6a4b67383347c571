"""The reference for bench_webhook.py: a bare Flask app that answers every webhook POST with 200.

Served by the same gunicorn command line as the listener, so the difference between the two is what the
listener does per delivery (signature check, parsing, durable enqueue, metrics).
"""

from flask import Flask

app = Flask(__name__)


@app.post("/webhooks/mlflow")
def ack() -> tuple[str, int]:
    """Answer at once, without reading or checking anything."""
    return "", 200
