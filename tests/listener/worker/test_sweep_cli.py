"""``guard-sweep``'s command line: backfill options are checked before anything is read or written."""

from __future__ import annotations

import pytest

from listener.config_parsing import ConfigError
from listener.worker.backfill import parse_rate
from listener.worker.sweep_cli import main


def test_rates():
    assert parse_rate("30/min") == 30.0 and parse_rate("30") == 30.0 and parse_rate("2/s") == 120.0
    assert parse_rate("90/h") == 1.5 and parse_rate(" 12 / min ") == 12.0
    for bad in ("0/min", "-3/min", "fast", "3/week", ""):
        with pytest.raises(ConfigError, match="--rate"):
            parse_rate(bad)


@pytest.mark.parametrize("args", [["--since", "2026-01-01"], ["--model", "x"], ["--dry-run"],
                                  ["--limit", "3"]])
def test_backfill_options_need_backfill(args, capsys):
    with pytest.raises(SystemExit) as exc:
        main(args)
    assert exc.value.code == 2 and "need --backfill" in capsys.readouterr().err


@pytest.mark.parametrize(("args", "says"), [
    (["--since", "yesterday"], "--since must be an ISO date"),
    (["--rate", "lots"], "--rate must be a positive number"),
    (["--limit", "0"], "--limit must be at least 1"),
])
def test_unusable_backfill_options_are_named(args, says, capsys, tmp_path, monkeypatch):
    monkeypatch.setenv("GUARD_DATA_DIR", str(tmp_path / "guard"))
    assert main(["--backfill", *args]) == 2
    assert says in capsys.readouterr().err
    assert not (tmp_path / "guard").exists()  # nothing was opened, let alone written
