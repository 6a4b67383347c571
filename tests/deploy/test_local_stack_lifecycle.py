"""`make run` owns its processes: a closed terminal, a console that goes away, `make stop` end them all.

Each test starts ``deploy/local_stack.py`` as ``make run`` does (its own mlflow server, gunicorn, the huey
consumer), follows every process that was ever a descendant of it, and checks that none is left.
"""

from __future__ import annotations

import fcntl
import json
import os
import select
import subprocess
import sys
import termios
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from tests.deploy.launcher import (
    LAUNCHER,
    REPO_ROOT,
    Launcher,
    TreeWatch,
    assert_all_gone,
    launcher_env,
    run_command,
    wait_for_banner,
)
from tests.support.procs import free_port

pytestmark = pytest.mark.e2e
BANNER_END = "`make status` shows this again"


def _take_the_terminal() -> None:
    # In the child, after setsid: the pseudo-terminal on stdin becomes its controlling terminal, as a
    # shell's job in a terminal window has one.
    fcntl.ioctl(0, termios.TIOCSCTTY, 0)


def _stale_stack_file(data_dir: Path) -> None:
    """A stack file left by a launcher that was killed: its processes are gone."""
    gone = subprocess.Popen(["true"])
    gone.wait()
    data_dir.mkdir(parents=True)
    (data_dir / "stack.json").write_text(json.dumps({
        "pid": gone.pid, "tracking_uri": "http://127.0.0.1:1", "listener_url": "http://127.0.0.1:2",
        "data_dir": str(data_dir), "processes": {"launcher": f"{gone.pid}:1"}}))


def test_closing_the_terminal_stops_every_process_and_forgets_the_stack(tmp_path: Path) -> None:
    data_dir = tmp_path / "guard"
    _stale_stack_file(data_dir)
    master, slave = os.openpty()
    proc = subprocess.Popen([sys.executable, *LAUNCHER], cwd=REPO_ROOT,
                            env=launcher_env(data_dir, free_port(), free_port()), stdin=slave, stdout=slave,
                            stderr=slave, start_new_session=True, preexec_fn=_take_the_terminal)
    os.close(slave)
    tree = TreeWatch(proc.pid)
    seen = bytearray()

    def output() -> str:
        while select.select([master], [], [], 0)[0]:
            try:
                chunk = os.read(master, 65536)
            except OSError:
                break
            if not chunk:
                break
            seen.extend(chunk)
        return seen.decode(errors="replace")

    try:
        text = wait_for_banner(output, proc)
        deadline = time.monotonic() + 10
        while BANNER_END not in text and time.monotonic() < deadline:
            text = output()
        # The stale file of a stack whose processes are gone was forgotten without a word.
        assert "still up" not in text, text
        assert len(tree.seen) >= 4, tree.seen
        os.close(master)  # the terminal window closes: the kernel hangs up the session (SIGHUP)
        master = -1
        proc.wait(timeout=120)
    finally:
        if master >= 0:
            os.close(master)
        if proc.poll() is None:
            proc.kill()
        assert_all_gone(tree.stop() | {proc.pid}, "the hang-up", seen.decode(errors="replace"))
    assert not (data_dir / "stack.json").exists()
    assert "stopped" in (data_dir / "logs" / "stack.log").read_text()


@pytest.mark.parametrize("reader", [
    ["head", "-1"],  # `make run | head -1`: the reader goes while the stack is still starting
    [sys.executable, "-c", "import sys\nfor line in sys.stdin:\n    print(line, end='', flush=True)\n"
     f"    if {BANNER_END!r} in line:\n        break\n"],  # a reader that goes once the stack is up
], ids=["head-1", "after-the-banner"])
def test_a_console_that_goes_away_stops_every_process(tmp_path: Path, reader: list[str]) -> None:
    data_dir = tmp_path / "guard"
    launcher = subprocess.Popen([sys.executable, *LAUNCHER], cwd=REPO_ROOT,
                                env=launcher_env(data_dir, free_port(), free_port()), stdout=subprocess.PIPE,
                                stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, start_new_session=True)
    tree = TreeWatch(launcher.pid)
    read_log = tmp_path / "reader.out"
    with open(read_log, "wb") as out:
        reading = subprocess.Popen(reader, stdin=launcher.stdout, stdout=out)
    launcher.stdout.close()  # the reader holds the pipe's only read end
    try:
        reading.wait(timeout=300)
        code = launcher.wait(timeout=180)
    finally:
        for proc in (reading, launcher):
            if proc.poll() is None:
                proc.kill()
        assert_all_gone(tree.stop() | {launcher.pid}, f"{reader[0]} exited", read_log.read_text())
    assert code == 0
    assert not (data_dir / "stack.json").exists()
    stack_log = (data_dir / "logs" / "stack.log").read_text()
    assert "stopped" in stack_log, stack_log


def test_a_second_run_refuses_while_the_first_is_up_and_make_stop_ends_it(tmp_path: Path) -> None:
    data_dir = tmp_path / "guard"
    env = launcher_env(data_dir, free_port(), free_port())
    first = Launcher(env, tmp_path / "first.log")
    try:
        banner = first.wait_ready()
        second = subprocess.run([sys.executable, *LAUNCHER], cwd=REPO_ROOT, env=env, capture_output=True,
                                text=True, timeout=120)
        assert second.returncode != 0
        assert "a stack from an earlier run is still up (pids " in second.stdout, second.stdout
        assert "stop it with `make stop`, or reuse it" in second.stdout
        assert str(first.proc.pid) in second.stdout
        stack = json.loads((data_dir / "stack.json").read_text())
        assert stack["pid"] == first.proc.pid  # left alone
        # The alert receiver is one of the stack's own processes, recorded with the others.
        receiver_pid = int(stack["processes"]["alert receiver"].split(":", 1)[0])
        with urllib.request.urlopen(f"{stack['alert_receiver']}/alerts", timeout=10) as resp:
            assert json.loads(resp.read()) == {"alerts": []}

        status = run_command(env, "status")
        assert status.returncode == 0
        assert [line for line in status.stdout.splitlines() if "Status page:" in line] == \
            [line for line in banner.splitlines() if "Status page:" in line]

        stopped = run_command(env, "stop")
        assert stopped.returncode == 0 and "stopped the local stack" in stopped.stdout, stopped.stdout
        assert first.proc.wait(timeout=60) == 0
        assert_all_gone(first.tree.stop() | {first.proc.pid}, "make stop", first.output())
        assert str(receiver_pid) in stopped.stdout
        with pytest.raises(urllib.error.URLError):
            urllib.request.urlopen(f"{stack['alert_receiver']}/alerts", timeout=5)
        assert not (data_dir / "stack.json").exists()
        again = run_command(env, "status")
        assert again.returncode == 1 and "no local stack is running" in again.stdout
    finally:
        first.kill()
