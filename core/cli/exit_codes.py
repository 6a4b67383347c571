"""How the command-line tools end: at once, once their output is out, without the interpreter's teardown."""

from __future__ import annotations

import os
import sys
from typing import Any

import click


class FastExitCommand(click.Command):
    """A click command that, run as a program, ends without tearing the interpreter down.

    Once ``import mlflow`` has loaded some 1,700 modules, Python's own finalization (clearing every
    module and collecting every object) takes about 0.4 s of CPU time at exit, after the result is
    printed and the report written. Run as a program (``command()``), the command flushes its
    output, waits for any thread still running, runs the ``atexit`` handlers (MLflow's and
    logging's included) and then ends the process with the same exit status, skipping only that
    teardown. Called through ``main()`` (click's test runner, other Python code) it behaves as
    any click command.
    """

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        try:
            return self.main(*args, **kwargs)
        except SystemExit as exc:
            exit_now(exc.code)


def exit_now(code: Any) -> None:
    """End the process with ``code``, as ``sys.exit`` would, after threads and ``atexit`` handlers.

    Only the interpreter's teardown is skipped (see :class:`FastExitCommand`).
    """
    if code is None:
        status = 0
    elif isinstance(code, int):
        status = code
    else:  # sys.exit("message") prints the message and exits 1
        print(code, file=sys.stderr)
        status = 1
    import atexit
    import threading

    # What Python does at exit, up to the teardown: threading's own shutdown (stops idle pool
    # workers such as MLflow's download threads, then waits for every non-daemon thread), then the
    # atexit handlers. CPython internals: anywhere else, exit the ordinary way.
    shutdown_threads = getattr(threading, "_shutdown", None)
    run_exitfuncs = getattr(atexit, "_run_exitfuncs", None)
    if shutdown_threads is None or run_exitfuncs is None:
        sys.exit(status)
    shutdown_threads()
    run_exitfuncs()
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (OSError, ValueError, AttributeError):
            # Closed or broken stdout (e.g. piped into `head`): as Python itself does at exit.
            status = status or 120
    os._exit(status)
