"""What the documentation names, checked against what exists: environment variables, CLI flags, make
targets, console scripts and relative links.

Each ``*_problems`` function takes the documents as ``{path: text}`` (and what the code offers) and
returns one line per name or link that does not exist, so the checker can be tried on bad input too.
"""

from __future__ import annotations

import argparse
import ast
import re
from collections.abc import Iterable, Mapping
from contextlib import contextmanager
from importlib import import_module
from pathlib import Path
from typing import Any
from unittest import mock

import click

try:
    import tomllib
except ModuleNotFoundError:  # Python 3.10: pytest depends on tomli there
    import tomli as tomllib

ROOT = Path(__file__).resolve().parents[2]
# The code whose environment reads count: the packages, the launchers in deploy/ and the Procfile.
CODE_DIRS = ("core", "listener", "deploy")
# The modules that read the settings (listener/config.py is the only place the environment is read).
SETTINGS_MODULES = ("listener/config.py", "listener/config_parsing.py")
ENV_NAME = re.compile(r"\b((?:GUARD|MLFLOW|DATABRICKS)_[A-Z0-9_]*[A-Z0-9])\b")
_UPPER_NAME = re.compile(r"^[A-Z][A-Z0-9]*(?:_[A-Z0-9]+)+$")
_FENCE = re.compile(r"^```[^\n]*\n(.*?)^```", re.S | re.M)
_INLINE = re.compile(r"`([^`]+)`")
_LINK = re.compile(r"(?<!!)\[[^\]]*\]\(([^)\s]+)\)")
_FLAG = re.compile(r"--[A-Za-z0-9][A-Za-z0-9_-]*")
_SCRIPT_LIKE = re.compile(r"^(?:guard|check|compare)-[a-z]+(?:-[a-z]+)*$")
_ASSIGNMENT = re.compile(r"^[A-Z_][A-Z0-9_]*=")


def documents(root: Path = ROOT) -> dict[str, str]:
    """README.md, docs/*.md and bench/README.md, by path relative to ``root``."""
    paths = [root / "README.md", *sorted((root / "docs").glob("*.md")), root / "bench" / "README.md"]
    return {str(p.relative_to(root)): p.read_text(encoding="utf-8") for p in paths if p.is_file()}


# --- code pieces of a document -------------------------------------------------------------------------

def code_pieces(text: str) -> list[str]:
    """Each line of every fenced block (continued lines joined) and every inline code span."""
    pieces = []
    for block in _FENCE.findall(text):
        pieces += block.replace("\\\n", " ").splitlines()
    pieces += _INLINE.findall(_FENCE.sub("", text))
    return [" ".join(piece.split()) for piece in pieces if piece.strip()]


def command_words(piece: str) -> list[str]:
    """The words of a command line from its command on: leading ``$``, ``VAR=value`` and ``(`` dropped."""
    words = piece.split()
    while words and (words[0] in ("$", "(") or _ASSIGNMENT.match(words[0])):
        words = words[1:]
    return words


def _flags(words: Iterable[str]) -> set[str]:
    """``--name`` of every option word (``--name=value`` too); a pattern such as ``--skip-*`` is none."""
    found = set()
    for word in words:
        match = _FLAG.match(word)
        if match and not word[match.end():].startswith("*"):
            found.add(match.group(0).rstrip("-"))
    return found


# --- what exists --------------------------------------------------------------------------------------

def console_scripts(root: Path = ROOT) -> dict[str, str]:
    """``[project.scripts]`` of pyproject.toml: name -> ``module:attribute``."""
    with (root / "pyproject.toml").open("rb") as fh:
        return dict(tomllib.load(fh)["project"]["scripts"])


def make_targets(root: Path = ROOT) -> set[str]:
    """The targets the Makefile defines."""
    text = (root / "Makefile").read_text(encoding="utf-8")
    return {m.group(1) for m in re.finditer(r"^([A-Za-z0-9_.-]+)\s*:(?!=)", text, re.M)} - {".PHONY"}


class _Parsed(Exception):
    def __init__(self, parser: argparse.ArgumentParser) -> None:
        self.parser = parser


@contextmanager
def _capturing_parser() -> Any:
    """Stop an argparse entry point at its parse and hand back the parser it built."""
    def capture(self: argparse.ArgumentParser, *args: Any, **kwargs: Any) -> Any:
        raise _Parsed(self)

    with mock.patch.object(argparse.ArgumentParser, "parse_known_args", capture):
        yield


def _click_options(command: click.Command) -> dict[str | None, set[str]]:
    options: set[str] = set()
    for param in command.params:
        if isinstance(param, click.Option):
            options.update(o for o in (*param.opts, *param.secondary_opts) if o.startswith("--"))
    found: dict[str | None, set[str]] = {None: options}
    if isinstance(command, click.Group):
        for name, sub in command.commands.items():
            found[name] = _click_options(sub)[None] | options
            found[None] = found[None] | found[name]
    return found


def script_options(target: str) -> dict[str | None, set[str]]:
    """The ``--`` options of a console script: ``{None: all of them, subcommand: its own}``.

    A click command is read from its parameters; an argparse entry point is run up to its parse.
    """
    module, _, attribute = target.partition(":")
    entry = getattr(import_module(module), attribute)
    if isinstance(entry, click.Command):
        return _click_options(entry)
    main = getattr(import_module(module), "main", entry)
    with _capturing_parser():
        try:
            main([])
        except _Parsed as parsed:
            return {None: {o for o in parsed.parser._option_string_actions if o.startswith("--")}}
    raise AssertionError(f"{target} built no argparse parser")


def env_reads(source: str) -> set[str]:
    """Upper-case names this Python source reads from the environment.

    A read is ``X.get("NAME")``/``getenv``/``setdefault``, ``environ["NAME"]``, ``envvar="NAME"``, or a
    call passing ``"NAME"`` to a function of the same module that reads its parameter that way.
    """
    tree = ast.parse(source)
    readers: dict[str, set[int]] = {}
    for fn in (n for n in ast.walk(tree) if isinstance(n, ast.FunctionDef)):
        params = [a.arg for a in fn.args.args]
        for call in (n for n in ast.walk(fn) if isinstance(n, ast.Call)):
            if (isinstance(call.func, ast.Attribute) and call.func.attr in ("get", "getenv") and call.args
                    and isinstance(call.args[0], ast.Name) and call.args[0].id in params):
                readers.setdefault(fn.name, set()).add(params.index(call.args[0].id))
    names = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Call):
            func = node.func
            fname = func.attr if isinstance(func, ast.Attribute) else getattr(func, "id", "")
            positions = {0} if fname in ("get", "getenv", "setdefault", "pop") else readers.get(fname, set())
            values = [a for i, a in enumerate(node.args) if i in positions]
            values += [k.value for k in node.keywords if k.arg == "envvar"]
            names.update(v.value for v in values if isinstance(v, ast.Constant) and isinstance(v.value, str))
        elif (isinstance(node, ast.Subscript) and ast.unparse(node.value).endswith("environ")
              and isinstance(node.slice, ast.Constant)):
            names.add(node.slice.value)
    return {n for n in names if isinstance(n, str) and _UPPER_NAME.match(n)}


def code_env_names(root: Path = ROOT) -> set[str]:
    """Every environment variable the project's code reads (Python sources and the Procfile).

    In the settings modules every upper-case name is a variable, however it is read.
    """
    names = set(re.findall(r"\$\{?([A-Z][A-Z0-9_]*)", (root / "Procfile").read_text(encoding="utf-8")))
    for folder in CODE_DIRS:
        for path in (root / folder).rglob("*.py"):
            names |= env_reads(path.read_text(encoding="utf-8"))
    for path in SETTINGS_MODULES:
        tree = ast.parse((root / path).read_text(encoding="utf-8"))
        names |= {n.value for n in ast.walk(tree) if isinstance(n, ast.Constant) and isinstance(n.value, str)
                  and _UPPER_NAME.match(n.value)}
    return names


def dependency_env_names() -> set[str]:
    """The variables MLflow and the Databricks SDK themselves read (their documented settings)."""
    import mlflow.environment_variables as mlflow_env
    from databricks.sdk.config import Config

    names = {v.name for v in vars(mlflow_env).values() if hasattr(v, "name") and hasattr(v, "get")}
    for attribute in Config.attributes():
        names.add(attribute.env)
        names.update(getattr(attribute, "env_aliases", None) or [])
    return {n for n in names if n}


# --- the checks -----------------------------------------------------------------------------------------

def env_problems(docs: Mapping[str, str], read_by_code: set[str], read_by_dependencies: set[str],
                 configuration: str = "docs/configuration.md") -> list[str]:
    """Variables the docs name that nothing reads; ``GUARD_*`` variables read but not in ``configuration``."""
    problems = []
    for path, text in docs.items():
        for name in sorted(set(ENV_NAME.findall(text))):
            known = read_by_code if name.startswith("GUARD_") else read_by_code | read_by_dependencies
            if name not in known:
                problems.append(f"{path}: {name} is read by no code")
    documented = set(ENV_NAME.findall(docs.get(configuration, "")))
    problems += [f"{configuration}: {name} is read by the code but not documented"
                 for name in sorted(read_by_code) if name.startswith("GUARD_") and name not in documented]
    return problems


def cli_problems(docs: Mapping[str, str], options: Mapping[str, Mapping[str | None, set[str]]]) -> list[str]:
    """Console scripts the docs run that do not exist, and flags they give a script that it lacks.

    An inline ``--flag`` standing alone must be an option of some console script (except in
    bench/README.md, which documents the benchmark scripts' own flags).
    """
    every = set().union(*(opts[None] for opts in options.values())) if options else set()
    problems = []
    for path, text in docs.items():
        for piece in code_pieces(text):
            words = command_words(piece)
            if words and words[0].startswith("--") and not path.startswith("bench/"):
                problems += [f"{path}: {flag} is an option of no console script ({piece!r})"
                             for flag in sorted(_flags(words[:1]) - every)]
                continue
            if not words or not _SCRIPT_LIKE.match(words[0]):
                continue
            script = words[0]
            if script not in options:
                problems.append(f"{path}: {script} is not a console script ({piece!r})")
                continue
            sub = words[1] if len(words) > 1 and words[1] in options[script] else None
            problems += [f"{path}: {script} has no option {flag} ({piece!r})"
                         for flag in sorted(_flags(words[1:]) - options[script][sub])]
    return problems


def make_problems(docs: Mapping[str, str], targets: set[str]) -> list[str]:
    """``make TARGET`` in the docs' code whose target the Makefile lacks."""
    problems = []
    for path, text in docs.items():
        for piece in code_pieces(text):
            for target in re.findall(r"(?:^|\s)make\s+([a-z][\w-]*)", piece):
                if target not in targets:
                    problems.append(f"{path}: make {target} is not a Makefile target")
    return sorted(set(problems))


def slug(heading: str) -> str:
    """The anchor GitHub gives a heading."""
    text = re.sub(r"[^\w\- ]", "", heading.strip().lower().replace("`", ""))
    return text.replace(" ", "-")


def anchors(text: str) -> set[str]:
    """The anchors of a markdown document's headings (duplicates numbered as GitHub does)."""
    seen: dict[str, int] = {}
    found = set()
    for heading in re.findall(r"^#{1,6} (.+)$", _FENCE.sub("", text), re.M):
        base = slug(heading)
        found.add(base if base not in seen else f"{base}-{seen[base]}")
        seen[base] = seen.get(base, 0) + 1
    return found


def link_problems(docs: Mapping[str, str], root: Path = ROOT) -> list[str]:
    """Relative links (and their anchors) that lead nowhere."""
    problems = []
    for path, text in docs.items():
        for target in _LINK.findall(_FENCE.sub("", text)):
            if re.match(r"^[a-z][a-z0-9+.-]*:", target):
                continue  # http:, https:, mailto:: not ours to check
            file_part, _, anchor = target.partition("#")
            resolved = (root / path).parent / file_part if file_part else root / path
            if not resolved.exists():
                problems.append(f"{path}: link {target} leads to no file")
            elif anchor and resolved.suffix == ".md":
                rel = str(resolved.resolve().relative_to(root.resolve()))
                content = docs.get(rel) or resolved.read_text(encoding="utf-8")
                if anchor not in anchors(content):
                    problems.append(f"{path}: link {target} names no heading of {rel}")
    return problems
