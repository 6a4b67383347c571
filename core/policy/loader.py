"""Read and validate a policy file; merge its sections for one version.

The file is validated as a YAML node tree, so that every error names the file, the line and the
key: ``policy.yaml:7: default.serialization.deny: unknown format family 'pickel'``. Nothing in a
policy is ignored: an unknown key, a wrong type or an unknown value is an error, never skipped.
The format is documented in ``docs/policies.md``.
"""

from __future__ import annotations

import copy
import fnmatch
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from core.policy import schema
from core.policy.schema import Invalid, kind, named_sections, pairs, parse_size, scalar

__all__ = ["EffectivePolicy", "Policy", "PolicyError", "deep_merge", "load_policy", "parse_policy",
           "parse_size"]

STAGES = ("none", "staging", "production", "archived")


class PolicyError(ValueError):
    """A policy file that cannot be used; the message is one line: ``FILE:LINE: KEY: what is wrong``."""


def _stage_name(node: yaml.Node, name: str, key: str) -> str:
    if name.lower() not in STAGES:
        raise Invalid(node, key, "unknown stage (expected None, Staging, Production or Archived)")
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
        # "off" levels stay visible (get() answers None for them): an explicit off differs from unnamed.
        sections = {k: v for k, v in merged.items() if v is not None}
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
        for k, name, v in pairs(root, ""):
            if name not in _TOP:
                raise Invalid(k, name, f"unknown key (expected one of {', '.join(_TOP)})")
            if name == "version":
                if scalar(v) != 1 or isinstance(scalar(v), bool):
                    raise Invalid(v, name, f"unsupported policy version {kind(scalar(v))} (expected 1)")
            elif name == "default":
                found[name] = schema.sections(v, name)
            else:
                found[name] = named_sections(v, name, _stage_name if name == "stages" else None)
        if not any(name == "version" for _, name, _ in pairs(root, "")):
            raise Invalid(root, "version", "missing (write version: 1 at the top)")
    except Invalid as exc:
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
