"""Run the workspace fake in the foreground: ``python -m tests.support.databricks_workspace ...``."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from tests.support.databricks_workspace.app import create_app


def main(argv: list[str] | None = None) -> None:
    """Command line of the fake (threaded, one process: its state is in memory)."""
    ap = argparse.ArgumentParser(description="Databricks workspace fake")
    ap.add_argument("--backend", required=True, help="URL of the mlflow server keeping runs and versions")
    ap.add_argument("--root", required=True, type=Path, help="folder of the fake's DBFS")
    ap.add_argument("--port", type=int, required=True)
    ap.add_argument("--token", default=None, help="accept only this bearer token")
    ap.add_argument("--s3-bucket", required=True, help="bucket of Unity Catalog storage (already created)")
    ap.add_argument("--s3-credentials", required=True, help="JSON: access_key_id, secret_access_key")
    ap.add_argument(
        "--registration-delay",
        type=float,
        default=0.0,
        help="seconds a new workspace version stays PENDING_REGISTRATION (0: copied at once)",
    )
    args = ap.parse_args(argv)
    from werkzeug.serving import run_simple

    app = create_app(
        args.backend,
        args.root,
        token=args.token,
        s3_bucket=args.s3_bucket,
        s3_credentials=json.loads(args.s3_credentials),
        registration_delay_s=args.registration_delay,
    )
    run_simple("127.0.0.1", args.port, app, threaded=True, use_reloader=False)


if __name__ == "__main__":
    main()
