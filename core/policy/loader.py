"""Read and validate a policy file; merge its sections for one version.

The file is validated as a YAML node tree, so that every error names the file, the line and the
key: ``policy.yaml:7: default.serialization.deny: unknown format family 'pickel'``. Nothing in a
policy is ignored: an unknown key, a wrong type or an unknown value is an error, never skipped.
The format is documented in ``docs/policies.md``.
"""

from __future__ import annotations

import copy
import fnmatch
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from core.policy.formats import FAMILIES

LEVELS = ("required", "warn", "off")
FORBID_KINDS = ("index-url", "vcs", "local-path", "url")
ENV_MANAGERS = ("local", "virtualenv", "uv")
STAGES = ("none", "staging", "production", "archived")
_SIZE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(B|KiB|MiB|GiB|TiB)?\s*$")
_UNITS = {None: 1, "B": 1, "KiB": 1 << 10, "MiB": 1 << 20, "GiB": 1 << 30, "TiB": 1 << 40}


class PolicyError(ValueError):
    """A policy file that cannot be used; the message is one line: ``FILE:LINE: KEY: what is wrong``."""


class _Invalid(Exception):
    def __init__(self, node: yaml.Node, key: str, message: str) -> None:
        super().__init__(message)
        self.node, self.key, self.message = node, key, message


Validator = Callable[[yaml.Node, str], Any]


def _scalar(node: yaml.Node) -> Any:
    if not isinstance(node, yaml.ScalarNode):
        return node  # the caller's type check names what it found
    return yaml.SafeLoader("").construct_object(node, deep=True)


def _is_off(node: yaml.Node) -> bool:
    value = _scalar(node)
    return value is False or (isinstance(value, str) and value.strip().lower() == "off")


def _kind(value: Any) -> str:
    if isinstance(value, yaml.MappingNode):
        return "a mapping"
    if isinstance(value, yaml.SequenceNode):
        return "a list"
    return f"{type(value).__name__} {value!r}"


def _enum(choices: tuple[str, ...]) -> Validator:
    def check(node: yaml.Node, key: str) -> str:
        value = "off" if "off" in choices and _is_off(node) else _scalar(node)
        if not isinstance(value, str) or value not in choices:
            raise _Invalid(node, key, f"expected one of {', '.join(choices)}, got {_kind(value)}")
        return value
    return check


def _bool(node: yaml.Node, key: str) -> bool:
    value = _scalar(node)
    if not isinstance(value, bool):
        raise _Invalid(node, key, f"expected true or false, got {_kind(value)}")
    return value


def _number(node: yaml.Node, key: str) -> float:
    value = _scalar(node)
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise _Invalid(node, key, f"expected a number, got {_kind(value)}")
    return value


def _positive(node: yaml.Node, key: str) -> float:
    value = _number(node, key)
    if value <= 0:
        raise _Invalid(node, key, f"expected a number above 0, got {value!r}")
    return value


def _count(node: yaml.Node, key: str) -> int | None:
    if _is_off(node):
        return None
    value = _scalar(node)
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise _Invalid(node, key, f"expected a whole number ≥ 0 or off, got {_kind(value)}")
    return value


def parse_size(text: Any) -> int:
    """Bytes in ``text``: a whole number of bytes, or a number with B, KiB, MiB, GiB or TiB."""
    if isinstance(text, int) and not isinstance(text, bool) and text >= 0:
        return text
    m = _SIZE.match(text) if isinstance(text, str) else None
    if m is None:
        raise ValueError(f"bad size {text!r}: use bytes or a number with KiB, MiB, GiB or TiB")
    return int(float(m.group(1)) * _UNITS[m.group(2)])


def _size(node: yaml.Node, key: str) -> int | None:
    if _is_off(node):
        return None
    try:
        return parse_size(_scalar(node))
    except ValueError as exc:
        raise _Invalid(node, key, str(exc)) from None


def _string(node: yaml.Node, key: str) -> str:
    value = _scalar(node)
    if not isinstance(value, str) or not value.strip():
        raise _Invalid(node, key, f"expected a non-empty string, got {_kind(value)}")
    return value


def _alias_ref(node: yaml.Node, key: str) -> str:
    value = _string(node, key)
    if not value.startswith("@") or len(value) < 2:
        raise _Invalid(node, key, f"expected an alias such as \"@champion\", got {value!r}")
    return value


def _list_of(item: Validator) -> Validator:
    def check(node: yaml.Node, key: str) -> list[Any]:
        if not isinstance(node, yaml.SequenceNode):
            raise _Invalid(node, key, f"expected a list, got {_kind(_scalar(node))}")
        return [item(n, key) for n in node.value]
    return check


def _family(node: yaml.Node, key: str) -> str:
    value = _scalar(node)
    if not isinstance(value, str) or value not in FAMILIES:
        raise _Invalid(node, key, f"unknown format family {value!r} (known: {', '.join(FAMILIES)})")
    return value


def _pairs(node: yaml.Node, key: str) -> list[tuple[yaml.Node, str, yaml.Node]]:
    """``(key node, key text, value node)`` of a mapping; duplicate keys are an error."""
    if not isinstance(node, yaml.MappingNode):
        raise _Invalid(node, key, f"expected a mapping, got {_kind(_scalar(node))}")
    seen: set[str] = set()
    out = []
    for k, v in node.value:
        name = _scalar(k)
        if not isinstance(name, str | int | float) or isinstance(name, bool):
            raise _Invalid(k, key, f"expected a name as key, got {_kind(name)}")
        name = str(name)
        if name in seen:
            raise _Invalid(k, f"{key}.{name}" if key else name, "given twice")
        seen.add(name)
        out.append((k, name, v))
    return out


def _mapping(fields: dict[str, Validator]) -> Validator:
    def check(node: yaml.Node, key: str) -> dict[str, Any]:
        out = {}
        for k, name, v in _pairs(node, key):
            where = f"{key}.{name}"
            if name not in fields:
                raise _Invalid(k, where, f"unknown key (expected one of {', '.join(fields)})")
            out[name] = fields[name](v, where)
        return out
    return check


def _or_off(inner: Validator) -> Validator:
    """A section or entry that may be switched off with ``off`` / ``false`` (kept as None)."""
    def check(node: yaml.Node, key: str) -> Any:
        return None if _is_off(node) else inner(node, key)
    return check


def _metrics(node: yaml.Node, key: str) -> dict[str, Any]:
    one = _or_off(_mapping({"min": _number, "max": _number, "not_worse_than": _alias_ref,
                            "greater_is_better": _bool}))
    return {name: one(v, f"{key}.{name}") for _, name, v in _pairs(node, key)}


SECTIONS: dict[str, Validator] = {
    "mlmodel": _enum(LEVELS),
    "signature": _enum(LEVELS),
    "input_example": _enum(LEVELS),
    "serialization": _or_off(_mapping({"deny": _list_of(_family), "allow": _list_of(_family), "scan": _bool,
                                       "skops_trusted": _list_of(_string)})),
    "requirements": _or_off(_mapping({"pins": _enum(("exact", "any")),
                                      "forbid": _list_of(_enum(FORBID_KINDS))})),
    "limits": _or_off(_mapping({"max_total_bytes": _size, "max_files": _count, "max_file_bytes": _size})),
    "metadata": _or_off(_mapping({"description_min_chars": _count, "required_tags": _list_of(_string)})),
    "metrics": _or_off(_metrics),
    "load_predict": _or_off(_mapping({"enabled": _bool, "timeout_s": _positive, "memory_mb": _count,
                                      "env_manager": _enum(ENV_MANAGERS)})),
}
_sections = _mapping(SECTIONS)


def _named_sections(node: yaml.Node, key: str, check_name: Callable[[yaml.Node, str, str], str] | None = None
                    ) -> list[tuple[str, dict[str, Any]]]:
    out = []
    for k, name, v in _pairs(node, key):
        if check_name is not None:
            name = check_name(k, name, f"{key}.{name}")
        out.append((name, _sections(v, f"{key}.{name}")))
    return out


def _stage_name(node: yaml.Node, name: str, key: str) -> str:
    if name.lower() not in STAGES:
        raise _Invalid(node, key, "unknown stage (expected None, Staging, Production or Archived)")
    return name.lower()


def deep_merge(base: dict[str, Any], over: dict[str, Any]) -> dict[str, Any]:
    """``over`` merged into a copy of ``base``: mappings merged key by key, anything else replaced."""
    out = copy.deepcopy(base)
    for k, v in over.items():
        if isinstance(v, dict) and isinstance(out.get(k), dict):
            out[k] = deep_merge(out[k], v)
        else:
            out[k] = copy.deepcopy(v)
    return out


@dataclass(frozen=True)
class EffectivePolicy:
    """The sections that apply to one version; a section absent (or switched off) is not checked."""

    sections: dict[str, Any] = field(default_factory=dict)
    applied: tuple[str, ...] = ()  # which parts of the file were merged, for the report

    def get(self, name: str) -> Any:
        """The section ``name``'s settings, or None when it is not checked."""
        value = self.sections.get(name)
        return None if value == "off" else value

    def __contains__(self, name: str) -> bool:
        return self.get(name) is not None


@dataclass(frozen=True)
class Policy:
    """A validated policy file (see :func:`load_policy`)."""

    source: str
    default: dict[str, Any]
    models: list[tuple[str, dict[str, Any]]]
    aliases: dict[str, dict[str, Any]]
    stages: dict[str, dict[str, Any]]

    def effective(self, model: str, alias: str | None = None, stage: str | None = None) -> EffectivePolicy:
        """Sections for ``model``: ``default`` < first matching ``models`` glob < ``stages`` / ``aliases``.

        ``alias`` (with or without a leading ``@``) is the alias being set or asked for; ``stage``
        the target stage. Sections are merged key by key; a section set to ``off`` is not checked.
        """
        merged, applied = copy.deepcopy(self.default), ["default"]
        for pattern, sections in self.models:
            if fnmatch.fnmatchcase(model, pattern):
                merged, applied = deep_merge(merged, sections), [*applied, f"models.{pattern}"]
                break
        if stage is not None and stage.lower() in self.stages:
            merged = deep_merge(merged, self.stages[stage.lower()])
            applied.append(f"stages.{stage}")
        name = alias[1:] if alias and alias.startswith("@") else alias
        if name and name in self.aliases:
            merged = deep_merge(merged, self.aliases[name])
            applied.append(f"aliases.{name}")
        sections = {k: v for k, v in merged.items() if v is not None and v != "off"}
        if isinstance(sections.get("metrics"), dict):
            sections["metrics"] = {k: v for k, v in sections["metrics"].items() if v is not None}
        return EffectivePolicy(sections, tuple(applied))


_TOP = ("version", "default", "models", "aliases", "stages")


def parse_policy(text: str, source: str = "policy") -> Policy:
    """Validate the policy in ``text``; ``source`` names it in errors. Raises :class:`PolicyError`."""
    try:
        root = yaml.compose(text, Loader=yaml.SafeLoader)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None) or getattr(exc, "context_mark", None)
        line = f"{mark.line + 1}:" if mark is not None else ""
        problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        raise PolicyError(f"{source}:{line} invalid YAML: {problem}") from None
    if root is None:
        raise PolicyError(f"{source}:1: the policy file is empty")
    try:
        found: dict[str, Any] = {"default": {}, "models": [], "aliases": [], "stages": []}
        for k, name, v in _pairs(root, ""):
            if name not in _TOP:
                raise _Invalid(k, name, f"unknown key (expected one of {', '.join(_TOP)})")
            if name == "version":
                if _scalar(v) != 1 or isinstance(_scalar(v), bool):
                    raise _Invalid(v, name, f"unsupported policy version {_kind(_scalar(v))} (expected 1)")
            elif name == "default":
                found[name] = _sections(v, name)
            else:
                found[name] = _named_sections(v, name, _stage_name if name == "stages" else None)
        if not any(name == "version" for _, name, _ in _pairs(root, "")):
            raise _Invalid(root, "version", "missing (write version: 1 at the top)")
    except _Invalid as exc:
        raise PolicyError(f"{source}:{exc.node.start_mark.line + 1}: {exc.key}: {exc.message}") from None
    return Policy(source, found["default"], found["models"], dict(found["aliases"]), dict(found["stages"]))


def load_policy(path: str | Path) -> Policy:
    """Read and validate the policy file at ``path``; a broken one raises :class:`PolicyError` (one line)."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        why = getattr(exc, "strerror", None) or exc
        raise PolicyError(f"{path}: cannot read the policy file: {why}") from None
    return parse_policy(text, str(path))
