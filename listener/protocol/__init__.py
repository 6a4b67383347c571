"""Webhook protocols: one pure parser per registry, the shared request model and the event table.

A parser takes only the model name, the version and the alias or stage from a payload; hosts, paths and
URIs in it are never used.
"""

from listener.protocol.databricks import databricks_signature, parse_databricks_delivery
from listener.protocol.events import SEAL_AND_CHECK, EventRule, job_rule, rule_for
from listener.protocol.mlflow import mlflow_signature, parse_mlflow_delivery
from listener.protocol.request import (
    Ignored,
    Rejected,
    ValidationRequest,
    check_model_name,
    model_version,
)

__all__ = ["SEAL_AND_CHECK", "EventRule", "Ignored", "Rejected", "ValidationRequest", "check_model_name",
           "databricks_signature", "job_rule", "mlflow_signature", "model_version",
           "parse_databricks_delivery", "parse_mlflow_delivery", "rule_for"]
