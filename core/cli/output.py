"""What the command-line tools print and write: the verdict line, differences, the report file, progress.

Shared by ``check-model-version`` and ``compare-model-versions`` (:mod:`core.cli.commands`).
"""

from __future__ import annotations

import contextlib
import os
import sys
import traceback
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import click


def print_differences(title: str, diffs: list[Any], limit: int = 50) -> None:
    """List up to ``limit`` differences under ``title`` (nothing when there are none)."""
    if not diffs:
        return
    click.echo(f"{title}:")
    for d in diffs[:limit]:
        click.echo(f"  {d.describe()}")
    if len(diffs) > limit:
        click.echo(f"  … and {len(diffs) - limit} more (see the report file)")


def print_policy(policy: Any) -> None:
    """The policy's checks as a table (nothing without a policy): status, check, reason."""
    if policy is None:
        return
    click.echo(f"policy: {policy.status}")
    width = max((len(c.check) for c in policy.checks), default=0)
    for c in policy.checks:
        click.echo(f"  {c.status:<4}  {c.check:<{width}}  {c.reason}")


def write_report_file(report: dict[str, Any], report_file: str | None, verbose: bool) -> bool:
    """Write ``report`` to ``report_file`` if one was asked for; False (said on stderr) when that fails."""
    if not report_file:
        return True
    from core.report import write_report

    try:
        write_report(report, Path(report_file))
        return True
    except OSError as exc:
        click.echo(f"error: cannot write report {report_file}: {exc}", err=True)
        if verbose:
            traceback.print_exc()
        return False


def print_headline(result: Any, verbose: bool) -> None:
    """The verdict line on stdout, or the error on stderr (with its traceback when ``verbose``)."""
    if result.status == "ERROR":
        click.echo(f"error: {result.error}", err=True)
        if verbose and result.exception is not None:
            traceback.print_exception(result.exception, file=sys.stderr)
    else:
        click.echo(f"{result.status}: {result.summary}")


def finish(result: Any, report_file: str | None, verbose: bool) -> None:
    """Write the report, name it, exit with the result's status (2 when a pass's report cannot be written)."""
    if not write_report_file(result.report, report_file, verbose) and result.exit_code == 0:
        sys.exit(2)
    if report_file:
        click.echo(f"report: {report_file}", err=result.status == "ERROR")
    sys.exit(result.exit_code)


def fail_early(message: str, report_file: str | None, verbose: bool) -> None:
    """Exit 2 with ``message`` before any check ran, still writing the report asked for."""
    from core.report import system_info

    report = {"System": system_info("compare-model-versions"),
              "Result": {"status": "ERROR", "exit_code": 2, "summary": f"could not compare: {message}",
                         "error": message, "transient": False}, "equals": None}
    click.echo(f"error: {message}", err=True)
    if verbose:
        traceback.print_exc()
    if write_report_file(report, report_file, verbose) and report_file:
        click.echo(f"report: {report_file}", err=True)
    sys.exit(2)


@contextlib.contextmanager
def transfer_progress() -> Iterator[Any]:
    """Progress of remote transfers on stderr when it is a terminal (None otherwise)."""
    from core.remote.terminal import terminal_progress

    progress = terminal_progress()
    try:
        yield progress
    finally:
        if progress is not None:
            progress.close()


def quiet_unless_verbose(verbose: bool) -> None:
    """Keep MLflow's INFO chatter and warnings off the terminal unless --verbose."""
    import logging
    import warnings

    if not verbose:
        os.environ.setdefault("MLFLOW_LOGGING_LEVEL", "ERROR")
        warnings.filterwarnings("ignore")
        import mlflow  # noqa: F401  (configures its logger on import; lower it afterwards)

        logging.getLogger("mlflow").setLevel(logging.ERROR)
