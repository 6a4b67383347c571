"""The README and docs/ name only what exists: environment variables the code reads (and every ``GUARD_*``
it reads is in docs/configuration.md), flags of the console scripts, make targets, and links that resolve.

The checker itself is tried on bad input too: each kind of name that does not exist is reported.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.docs.docs_in_step import (
    cli_problems,
    code_env_names,
    console_scripts,
    dependency_env_names,
    documents,
    env_problems,
    env_reads,
    link_problems,
    make_problems,
    make_targets,
    script_options,
)


@pytest.fixture(scope="module")
def docs() -> dict[str, str]:
    found = documents()
    assert {"README.md", "docs/configuration.md", "bench/README.md"} <= set(found)
    return found


@pytest.fixture(scope="module")
def options() -> dict[str, dict[str | None, set[str]]]:
    return {name: script_options(target) for name, target in console_scripts().items()}


def test_the_five_console_scripts_are_introspected(options: dict[str, dict[str | None, set[str]]]) -> None:
    assert set(options) == {"check-model-version", "compare-model-versions", "guard-job", "guard-sweep",
                            "guard-webhooks"}
    assert {"--seal-store", "--version-or-stage"} <= options["check-model-version"][None]
    assert "--event_message" in options["guard-job"][None]
    assert options["guard-sweep"][None] >= {"--run"}
    assert "--url" in options["guard-webhooks"]["register"]
    assert "--url" not in options["guard-webhooks"]["list"]


def test_every_variable_the_docs_name_is_read_and_every_guard_variable_read_is_documented(
        docs: dict[str, str]) -> None:
    assert env_problems(docs, code_env_names(), dependency_env_names()) == []


def test_every_console_script_and_flag_the_docs_name_exists(
        docs: dict[str, str], options: dict[str, dict[str | None, set[str]]]) -> None:
    assert cli_problems(docs, options) == []


def test_every_make_target_the_docs_name_exists(docs: dict[str, str]) -> None:
    assert make_problems(docs, make_targets()) == []


def test_every_relative_link_resolves(docs: dict[str, str]) -> None:
    assert link_problems(docs) == []


# --- the checker on bad input ---------------------------------------------------------------------------

def test_env_reads_finds_reads_and_only_reads() -> None:
    source = '''
import os
def integer(name, default):
    return int(env.get(name) or default)
a = os.environ.get("GUARD_A")
b = os.environ["GUARD_B"]
c = integer("GUARD_C", 1)
option = click.option("--x", envvar="GUARD_D")
app.config["GUARD_NOT_AN_ENV_READ"] = 1
message = "GUARD_MENTIONED_ONLY"
'''
    assert env_reads(source) == {"GUARD_A", "GUARD_B", "GUARD_C", "GUARD_D"}


def test_env_problems_names_unread_and_undocumented_variables() -> None:
    docs = {"README.md": "Set `GUARD_TYPO_SETTING`, `MLFLOW_NOT_A_SETTING` and `GUARD_A`.",
            "docs/configuration.md": "| `GUARD_A` | — | a |\n| `MLFLOW_TRACKING_URI` | — | b |"}
    problems = env_problems(docs, read_by_code={"GUARD_A", "GUARD_B"},
                            read_by_dependencies={"MLFLOW_TRACKING_URI"})
    assert problems == ["README.md: GUARD_TYPO_SETTING is read by no code",
                        "README.md: MLFLOW_NOT_A_SETTING is read by no code",
                        "docs/configuration.md: GUARD_B is read by the code but not documented"]


def test_a_guard_variable_known_only_to_a_dependency_is_still_reported() -> None:
    problems = env_problems({"docs/configuration.md": "`GUARD_X`"}, set(), {"GUARD_X"})
    assert problems == ["docs/configuration.md: GUARD_X is read by no code"]


def test_cli_problems_names_unknown_scripts_and_flags() -> None:
    options = {"check-model-version": {None: {"--model", "--report-file"}},
               "guard-webhooks": {None: {"--registry", "--url"}, "register": {"--registry", "--url"},
                                  "list": {"--registry"}}}
    docs = {"README.md": "```bash\nexport X=1\ncheck-model-version --model m \\\n    --no-such-flag 1\n"
                         "guard-frobnicate --x\n```\n"
                         "Run `guard-webhooks list --url https://x` or `--report-file F`,\n"
                         "not `--missing F`;\n"
                         "`compare-*` and `--skip-*` are patterns.",
            "bench/README.md": "Options: `--size-mib`."}
    assert cli_problems(docs, options) == [
        "README.md: check-model-version has no option --no-such-flag ('check-model-version --model m "
        "--no-such-flag 1')",
        "README.md: guard-frobnicate is not a console script ('guard-frobnicate --x')",
        "README.md: guard-webhooks has no option --url ('guard-webhooks list --url https://x')",
        "README.md: --missing is an option of no console script ('--missing F')",
    ]


def test_make_problems_names_missing_targets() -> None:
    docs = {"README.md": "```bash\nmake run\nmake nothing-here\n```\nthen `MLFLOW_PORT=1 make demo`"}
    assert make_problems(docs, {"run", "test"}) == ["README.md: make demo is not a Makefile target",
                                                     "README.md: make nothing-here is not a Makefile target"]


def test_link_problems_names_missing_files_and_headings(tmp_path: Path) -> None:
    (tmp_path / "docs").mkdir()
    (tmp_path / "docs" / "a.md").write_text("# A title\n\n## Leaving files out: `--exclude`\n")
    docs = {"README.md": "[ok](docs/a.md) [ok](docs/a.md#leaving-files-out---exclude) [web](https://x.y/z)\n"
                         "[gone](docs/missing.md) [no heading](docs/a.md#nowhere) [self](#a-title)\n"
                         "```\n[in code](not/checked.md)\n```\n",
            "docs/a.md": (tmp_path / "docs" / "a.md").read_text()}
    (tmp_path / "README.md").write_text(docs["README.md"])
    assert link_problems(docs, root=tmp_path) == [
        "README.md: link docs/missing.md leads to no file",
        "README.md: link docs/a.md#nowhere names no heading of docs/a.md",
        "README.md: link #a-title names no heading of README.md",
    ]
