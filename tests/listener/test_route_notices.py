"""What the listener tells an operator about its webhook routes, once per process."""

from __future__ import annotations

import logging

from listener.config import Settings
from listener.route_notices import announce_routes, route_notices


def test_an_mlflow_only_listener_says_its_databricks_route_is_off_once(tmp_path, caplog):
    settings = Settings(data_dir=tmp_path, mlflow_secrets=["s"])
    [(level, message)] = route_notices(settings)
    assert level == logging.INFO and message.startswith("POST /webhooks/databricks is off")
    assert "GUARD_DATABRICKS_SECRET" in message
    unsigned = Settings(data_dir=tmp_path, allow_unsigned_mlflow=True, registry_kind="databricks")
    assert [(lvl, m.split(" ", 2)[1]) for lvl, m in route_notices(unsigned)] == [
        (logging.WARNING, "/webhooks/mlflow"), (logging.WARNING, "/webhooks/databricks")]
    logger = logging.getLogger("test.notices")
    with caplog.at_level("INFO", logger="test.notices"):
        announce_routes(settings, logger)
        announce_routes(Settings(data_dir=tmp_path, mlflow_secrets=["s"]), logger)
    assert caplog.text.count("is off") == 1
