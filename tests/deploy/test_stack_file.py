"""``stack.json``: a stack still up is recognised by its processes' identities; a dead one is forgotten."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

from deploy.stack_file import read_stack, stale_or_running, stop_stack, write_stack
from deploy.stack_processes import identity_alive, process_identity


def _exited_pid() -> int:
    proc = subprocess.Popen(["true"])
    proc.wait()
    return proc.pid


def test_a_stack_file_whose_processes_are_gone_is_forgotten_silently(tmp_path: Path):
    pid = _exited_pid()
    write_stack(tmp_path, {"pid": pid, "processes": {"launcher": f"{pid}:1", "web": f"{pid}:2"}})
    assert stale_or_running(tmp_path) == []
    assert read_stack(tmp_path) is None


def test_a_live_stack_is_named_by_its_pids_and_kept(tmp_path: Path):
    write_stack(tmp_path, {"pid": os.getpid(), "processes": {"launcher": process_identity(os.getpid())}})
    assert stale_or_running(tmp_path) == [os.getpid()]
    assert json.loads((tmp_path / "stack.json").read_text())["pid"] == os.getpid()


def test_a_reused_pid_is_not_taken_for_the_stacks_process(tmp_path: Path):
    ident = process_identity(os.getpid())
    pid, start = ident.split(":")
    assert identity_alive(ident) and not identity_alive(f"{pid}:{int(start or 0) + 1}")


def test_stop_ends_the_recorded_processes_and_removes_the_file(tmp_path: Path):
    child = subprocess.Popen(["sleep", "300"], start_new_session=True)
    try:
        write_stack(tmp_path, {"pid": child.pid, "processes": {"web": process_identity(child.pid)}})
        assert stop_stack(tmp_path, timeout=5) == [child.pid]
        assert child.wait(timeout=10) != 0
        assert read_stack(tmp_path) is None
    finally:
        if child.poll() is None:
            child.kill()
