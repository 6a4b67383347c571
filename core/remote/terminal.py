"""Progress of long transfers on a terminal: files, bytes, throughput and ETA on stderr (rich).

Nothing is drawn for a check that ends within :data:`SHOW_AFTER_S`, and nothing at all when
stderr is not a terminal (:func:`terminal_progress` then returns None), so reports, pipes and
CI logs are unaffected. The display is transient: it disappears when the check ends.
"""

from __future__ import annotations

import sys
import threading
from typing import Any, TextIO

from core.remote.progress import ProgressCounter

SHOW_AFTER_S = 2.0
REFRESH_S = 0.25


class TerminalProgress(ProgressCounter):
    """A :class:`ProgressCounter` drawn on ``stream`` once the transfers have run ``show_after_s``."""

    def __init__(self, stream: TextIO | None = None, *, show_after_s: float = SHOW_AFTER_S,
                 force_terminal: bool | None = None) -> None:
        super().__init__()
        from rich.console import Console

        self._console = Console(file=stream or sys.stderr, force_terminal=force_terminal)
        self._show_after = show_after_s
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="guard-progress", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        if self._stop.wait(self._show_after):
            return
        from rich.progress import (
            BarColumn,
            DownloadColumn,
            Progress,
            TextColumn,
            TimeRemainingColumn,
            TransferSpeedColumn,
        )

        columns = (TextColumn("{task.fields[files]}"), BarColumn(), DownloadColumn(), TransferSpeedColumn(),
                   TimeRemainingColumn())
        with Progress(*columns, console=self._console, transient=True) as bar:
            task = bar.add_task("reading", total=None, files="")
            while True:
                self._draw(bar, task)
                if self._stop.wait(REFRESH_S):
                    break

    def _draw(self, bar: Any, task: Any) -> None:
        s = self.snapshot()
        bar.update(task, total=s["bytes_total"] or None, completed=max(0, s["bytes_done"]),
                   files=f"{s['files_done']:.0f}/{s['files_total']:.0f} files")

    def close(self) -> None:
        """Stop drawing and remove the display."""
        self._stop.set()
        self._thread.join(timeout=5)

    def __enter__(self) -> TerminalProgress:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def terminal_progress(stream: TextIO | None = None) -> TerminalProgress | None:
    """A :class:`TerminalProgress` on ``stream`` (stderr) when it is a terminal, else None."""
    stream = stream or sys.stderr
    try:
        interactive = stream.isatty()
    except (AttributeError, ValueError):
        interactive = False
    return TerminalProgress(stream) if interactive else None
