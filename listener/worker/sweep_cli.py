"""``guard-sweep``: one sweep now (catch-up, re-verification, re-publish), or a deliberate backfill.

    guard-sweep                      # hand the jobs to the worker's queue
    guard-sweep --run                # run them in this process (no worker needed)
    guard-sweep --backfill --dry-run # what a backfill of the versions older than the deployment would check
    guard-sweep --backfill --since 2026-01-01 --model 'fraud-*' --limit 100 --rate 20/min

Exit status 0 when it ran, 2 when the registry or the store could not be read or an option is unusable.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from typing import Any

from listener.alerts.deliver import wait_for_alerts
from listener.config import Settings
from listener.config_parsing import ConfigError, parse_since
from listener.worker.backfill import DEFAULT_RATE_PER_MIN, BackfillOptions, parse_rate, run_backfill
from listener.worker.sweep import Dispatch, run_sweep


def inline_dispatch(settings: Settings) -> Dispatch:
    """Run each job in this process to its end (``--run``: no worker needed)."""
    from listener.worker.entry import run_job

    def dispatch(request: dict[str, Any], fresh: bool) -> None:
        run_job(request, settings)
    return dispatch


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="guard-sweep", description=__doc__.split("\n\n")[0])
    parser.add_argument("--run", action="store_true",
                        help="run the jobs in this process instead of handing them to the worker's queue")
    backfill = parser.add_argument_group("backfill (versions created before the guard first started)")
    backfill.add_argument("--backfill", action="store_true",
                          help="check versions older than the deployment, sealed on first sight")
    backfill.add_argument("--since", metavar="DATE",
                          help="only versions created on or after DATE (ISO date or date-time, UTC)")
    backfill.add_argument("--model", metavar="GLOB", action="append", default=[],
                          help="only models whose name matches GLOB (repeatable)")
    backfill.add_argument("--limit", metavar="N", type=int, help="at most N versions this run")
    backfill.add_argument("--rate", metavar="N/min", default=f"{DEFAULT_RATE_PER_MIN:g}/min",
                          help="hand out at most N versions a minute (default %(default)s)")
    backfill.add_argument("--dry-run", action="store_true",
                          help="list what the backfill would check (versions, models, bytes); write nothing")
    return parser


def main(argv: list[str] | None = None) -> int:
    """``guard-sweep``; returns the exit status."""
    parser = _parser()
    args = parser.parse_args(sys.argv[1:] if argv is None else argv)
    if not args.backfill and (args.since or args.model or args.limit is not None or args.dry_run):
        parser.error("--since, --model, --limit and --dry-run need --backfill")
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    try:
        settings = Settings.from_env()
        if args.backfill:
            if args.limit is not None and args.limit < 1:
                raise ConfigError("--limit must be at least 1")
            options = BackfillOptions(since=parse_since("--since", args.since), models=list(args.model),
                                      limit=args.limit, rate_per_min=parse_rate(args.rate),
                                      dry_run=args.dry_run, run_inline=args.run)
            dispatch = inline_dispatch(settings) if args.run and not args.dry_run else None
            print(json.dumps(run_backfill(settings, options, dispatch).to_dict(), sort_keys=True))
            wait_for_alerts()
            return 0
        report = run_sweep(settings, inline_dispatch(settings) if args.run else None)
    except ConfigError as exc:
        print(f"error: refusing to start: {exc}", file=sys.stderr)
        return 2
    except Exception as exc:  # noqa: BLE001 - the reason is the answer
        print(f"error: sweep not done: {exc}", file=sys.stderr)
        return 2
    print(json.dumps({"versions_scanned": report.versions_scanned, "caught_up": report.caught_up,
                      "aliases_changed": report.aliases_changed, "reverified": report.reverified,
                      "republished": report.republished, "aliases_recorded": report.aliases_recorded,
                      "duration_s": round(report.duration_s, 3)}, sort_keys=True))
    wait_for_alerts()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
