"""The progress hook: totals kept under concurrency, the terminal display only on a terminal."""

from __future__ import annotations

import io
import threading
import time

from core.remote.progress import ProgressCounter
from core.remote.terminal import TerminalProgress, terminal_progress


def test_counter_totals_from_many_threads_and_restarts():
    c = ProgressCounter()
    c.planned(8, 8 * 1000)

    def work() -> None:
        c.transferred(600)
        c.restarted(600)  # a broken transfer, read again from the start
        c.transferred(1000)
        c.verified(1000)

    threads = [threading.Thread(target=work) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    s = c.snapshot()
    assert (s["files_done"], s["files_total"]) == (8, 8)
    assert s["bytes_done"] == s["bytes_verified"] == s["bytes_total"] == 8000
    assert s["restarts"] == 8


def test_no_display_when_stderr_is_not_a_terminal():
    assert terminal_progress(io.StringIO()) is None


def test_display_shows_files_bytes_and_speed_on_a_terminal():
    out = io.StringIO()
    with TerminalProgress(out, show_after_s=0, force_terminal=True) as p:
        p.planned(3, 3 << 20)
        p.transferred(1 << 20)
        p.verified(1 << 20)
        deadline = time.monotonic() + 30  # a guard against a hang, not a speed assertion
        while "1/3 files" not in out.getvalue() and time.monotonic() < deadline:
            time.sleep(0.05)
    assert "1/3 files" in out.getvalue() and "MB" in out.getvalue()


def test_short_checks_draw_nothing():
    out = io.StringIO()
    with TerminalProgress(out, show_after_s=60, force_terminal=True) as p:
        p.planned(1, 10)
        p.verified(10)
    assert out.getvalue() == ""


def test_logging_progress_counts_every_verified_byte_and_logs_at_a_low_rate(caplog):
    import logging

    from core.remote.progress import LoggingProgress

    for every_s, lines in ((3600, 0), (0, 3)):
        seen: list[int] = []
        p = LoggingProgress("model 'm' version 1", every_s=every_s, on_verified=seen.append)
        p.planned(3, 30)
        caplog.clear()
        with caplog.at_level(logging.INFO, logger="core.remote"):
            for _ in range(3):
                p.transferred(10)
                p.verified(10)
        assert seen == [10, 10, 10]
        assert len(caplog.records) == lines
    assert "model 'm' version 1: 3/3 files" in caplog.records[-1].getMessage()
