"""The local stack's console: one line per verdict from the results store, and a console that goes away."""

from __future__ import annotations

import os
import sys
from pathlib import Path

from deploy.stack_console import Console, VerdictFollower, verdict_line
from listener.store import get_store, owner_id
from tests.listener.store.helpers import request, verdict


def test_a_verdict_line_names_version_alias_duration_and_why_it_failed():
    row = {"status": "PASSED", "model": "guard-demo", "version": "1", "alias": "champion",
           "duration_s": 0.031}
    assert verdict_line(row) == "PASSED guard-demo v1 @champion 0.03 s"
    assert verdict_line(row, colour=True) == "\033[32mPASSED\033[0m guard-demo v1 @champion 0.03 s"
    failed = {**row, "status": "FAILED", "alias": None, "summary": "1 difference from the seal\nmore"}
    assert verdict_line(failed) == "FAILED guard-demo v1 0.03 s  1 difference from the seal"


def test_the_follower_prints_each_new_verdict_once_and_none_from_before(tmp_path: Path):
    store_url = f"sqlite:///{tmp_path / 'results.db'}"
    store = get_store(store_url)

    def finish(key: str, status: str, alias: str | None = None) -> None:
        owner = owner_id()
        store.claim({**request(key, model="churn", version="3"), "alias": alias}, owner)
        store.record_verdict(key, verdict(status, model="churn", version="3"))
        store.release(key, owner)

    finish("before", "PASSED")
    lines: list[str] = []
    follower = VerdictFollower(store_url, lines.append, colour=False)
    follower.poll()
    assert lines == []  # verdicts reached before the stack was up are not news
    finish("after", "FAILED", alias="champion")
    follower.poll()
    follower.poll()
    assert len(lines) == 1 and lines[0].startswith("FAILED churn v3 @champion"), lines


def test_a_console_whose_reader_is_gone_says_so_once_and_writes_the_log_only(tmp_path: Path, monkeypatch):
    read_end, write_end = os.pipe()
    stdout = os.fdopen(write_end, "w")
    monkeypatch.setattr(sys, "stdout", stdout)
    calls: list[str] = []
    console = Console(tmp_path / "stack.log")
    console.on_gone = lambda: calls.append("gone")
    console.say("first line")
    assert os.read(read_end, 100) == b"first line\n"
    assert not console.gone()
    os.close(read_end)  # `| head -1` is done
    assert console.gone() and calls == ["gone"]
    console.say("stopping")  # no BrokenPipeError: the line goes to the log file
    assert calls == ["gone"]
    log = (tmp_path / "stack.log").read_text()
    assert "first line" in log and "stopping" in log
    stdout.close()
