"""The policy file's schema: validators over YAML nodes that name the key and line of any error.

Used by :mod:`core.policy.loader`; :data:`SECTIONS` lists every section a policy can name and how
each value is read (a section or limit may be ``off``; YAML's bare ``off`` reads as false: both work).
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

import yaml

from core.policy.formats import FAMILIES

LEVELS = ("required", "warn", "off")
FORBID_KINDS = ("index-url", "vcs", "local-path", "url")
ENV_MANAGERS = ("local", "virtualenv", "uv")
_SIZE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(B|KiB|MiB|GiB|TiB)?\s*$")
_UNITS = {None: 1, "B": 1, "KiB": 1 << 10, "MiB": 1 << 20, "GiB": 1 << 30, "TiB": 1 << 40}


class Invalid(Exception):
    """A value that breaks the schema: the node (for its line), the dotted key, what is wrong."""

    def __init__(self, node: yaml.Node, key: str, message: str) -> None:
        super().__init__(message)
        self.node, self.key, self.message = node, key, message


Validator = Callable[[yaml.Node, str], Any]


def scalar(node: yaml.Node) -> Any:
    if not isinstance(node, yaml.ScalarNode):
        return node  # the caller's type check names what it found
    return yaml.SafeLoader("").construct_object(node, deep=True)


def _is_off(node: yaml.Node) -> bool:
    value = scalar(node)
    return value is False or (isinstance(value, str) and value.strip().lower() == "off")


def kind(value: Any) -> str:
    if isinstance(value, yaml.MappingNode):
        return "a mapping"
    if isinstance(value, yaml.SequenceNode):
        return "a list"
    return f"{type(value).__name__} {value!r}"


def _enum(choices: tuple[str, ...]) -> Validator:
    def check(node: yaml.Node, key: str) -> str:
        value = "off" if "off" in choices and _is_off(node) else scalar(node)
        if not isinstance(value, str) or value not in choices:
            raise Invalid(node, key, f"expected one of {', '.join(choices)}, got {kind(value)}")
        return value
    return check


def _bool(node: yaml.Node, key: str) -> bool:
    value = scalar(node)
    if not isinstance(value, bool):
        raise Invalid(node, key, f"expected true or false, got {kind(value)}")
    return value


def _number(node: yaml.Node, key: str) -> float:
    value = scalar(node)
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise Invalid(node, key, f"expected a number, got {kind(value)}")
    return value


def _positive(node: yaml.Node, key: str) -> float:
    value = _number(node, key)
    if value <= 0:
        raise Invalid(node, key, f"expected a number above 0, got {value!r}")
    return value


def _count(node: yaml.Node, key: str) -> int | None:
    if _is_off(node):
        return None
    value = scalar(node)
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise Invalid(node, key, f"expected a whole number ≥ 0 or off, got {kind(value)}")
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
        return parse_size(scalar(node))
    except ValueError as exc:
        raise Invalid(node, key, str(exc)) from None


def _string(node: yaml.Node, key: str) -> str:
    value = scalar(node)
    if not isinstance(value, str) or not value.strip():
        raise Invalid(node, key, f"expected a non-empty string, got {kind(value)}")
    return value


def _alias_ref(node: yaml.Node, key: str) -> str:
    value = _string(node, key)
    if not value.startswith("@") or len(value) < 2:
        raise Invalid(node, key, f"expected an alias such as \"@champion\", got {value!r}")
    return value


def _list_of(item: Validator) -> Validator:
    def check(node: yaml.Node, key: str) -> list[Any]:
        if not isinstance(node, yaml.SequenceNode):
            raise Invalid(node, key, f"expected a list, got {kind(scalar(node))}")
        return [item(n, key) for n in node.value]
    return check


def _family(node: yaml.Node, key: str) -> str:
    value = scalar(node)
    if not isinstance(value, str) or value not in FAMILIES:
        raise Invalid(node, key, f"unknown format family {value!r} (known: {', '.join(FAMILIES)})")
    return value


def pairs(node: yaml.Node, key: str) -> list[tuple[yaml.Node, str, yaml.Node]]:
    """``(key node, key text, value node)`` of a mapping; duplicate keys are an error."""
    if not isinstance(node, yaml.MappingNode):
        raise Invalid(node, key, f"expected a mapping, got {kind(scalar(node))}")
    seen: set[str] = set()
    out = []
    for k, v in node.value:
        name = scalar(k)
        if not isinstance(name, str | int | float) or isinstance(name, bool):
            raise Invalid(k, key, f"expected a name as key, got {kind(name)}")
        name = str(name)
        if name in seen:
            raise Invalid(k, f"{key}.{name}" if key else name, "given twice")
        seen.add(name)
        out.append((k, name, v))
    return out


def _mapping(fields: dict[str, Validator]) -> Validator:
    def check(node: yaml.Node, key: str) -> dict[str, Any]:
        out = {}
        for k, name, v in pairs(node, key):
            where = f"{key}.{name}"
            if name not in fields:
                raise Invalid(k, where, f"unknown key (expected one of {', '.join(fields)})")
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
    return {name: one(v, f"{key}.{name}") for _, name, v in pairs(node, key)}


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
sections = _mapping(SECTIONS)


def named_sections(node: yaml.Node, key: str, check_name: Callable[[yaml.Node, str, str], str] | None = None
                   ) -> list[tuple[str, dict[str, Any]]]:
    """``(name, sections)`` of a ``models`` / ``aliases`` / ``stages`` mapping."""
    out = []
    for k, name, v in pairs(node, key):
        if check_name is not None:
            name = check_name(k, name, f"{key}.{name}")
        out.append((name, sections(v, f"{key}.{name}")))
    return out
