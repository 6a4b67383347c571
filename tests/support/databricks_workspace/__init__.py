"""A Databricks workspace fake for the unmodified MLflow and databricks-sdk clients.

Clients run in production configuration (``MLFLOW_TRACKING_URI=databricks``, ``MLFLOW_REGISTRY_URI=
databricks`` or ``databricks-uc``, ``DATABRICKS_HOST=http://127.0.0.1:<port>``, ``DATABRICKS_TOKEN``) and
nothing else points MLflow at it. Modules, one job each:

- :mod:`.routing` route table, errors, request recorder (unknown routes: 501, recorded), fault injection;
- :mod:`.storage` DBFS in a local folder and the fake's signed URLs;
- :mod:`.backend` the ``mlflow server`` behind the fake;
- :mod:`.tracking` the tracking REST API (forwarded) and run / logged-model artifact endpoints;
- :mod:`.workspace_registry` the workspace registry, its own copy of each version, ``models:/`` reads;
- :mod:`.files_api` Files API, DBFS REST, signed-URL serving;
- :mod:`.unity_catalog` the UC registry with temporary credentials and S3 storage (moto);
- :mod:`.collaboration` comments, transition requests, Databricks stage transitions;
- :mod:`.webhooks` registry webhooks and their signed deliveries;
- :mod:`.app` the Flask app; :mod:`.process` the fake and its backend as processes.
"""

from tests.support.databricks_workspace.process import WorkspaceFake

__all__ = ["WorkspaceFake"]
