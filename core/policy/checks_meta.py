"""Checks of what surrounds the model: ``requirements``, ``limits``, ``metadata``.

``requirements`` reads ``requirements.txt`` as kept by the inspector during the comparison's read;
``limits`` the tree's manifest; ``metadata`` the model version as the registry returned it.
"""

from __future__ import annotations

import re
from typing import Any

from core.policy.inspect import ModelInspector
from core.policy.model import FAIL, PASS, CheckOutcome
from core.report import human_bytes
from core.seal.manifest import Manifest

REQUIREMENTS = "requirements.txt"
_INDEX_OPTIONS = ("--index-url", "--extra-index-url", "--find-links", "-i", "-f", "--trusted-host")
_VCS = re.compile(r"^(-e\s+)?(git|hg|svn|bzr)\+", re.IGNORECASE)
_URL = re.compile(r"(^|@\s*)(https?|ftp)://", re.IGNORECASE)
_LOCAL = re.compile(r"^(-e\s+)?(\.{1,2}/|/|~|file:)", re.IGNORECASE)
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*(\[[^\]]*\])?")


def classify_requirement(line: str) -> str | None:
    """The forbidden kind a requirement line is (index-url, vcs, local-path, url), or None."""
    if line.startswith("-") and line.split("=", 1)[0].split()[0] in _INDEX_OPTIONS:
        return "index-url"
    if _VCS.search(line):
        return "vcs"
    if _LOCAL.search(line):
        return "local-path"
    if _URL.search(line):
        return "url"
    return None


def check_requirements(cfg: dict[str, Any], inspector: ModelInspector, files: set[str]) -> CheckOutcome:
    """Every line of requirements.txt against ``forbid``, and pinned with ``==`` when ``pins: exact``."""
    if REQUIREMENTS not in files:
        return CheckOutcome("requirements", FAIL, "no requirements.txt in the model")
    if REQUIREMENTS in inspector.too_large:
        return CheckOutcome("requirements", FAIL, "requirements.txt is larger than 1 MiB")
    try:
        text = inspector.texts.get(REQUIREMENTS, b"").decode("utf-8")
    except UnicodeDecodeError:
        return CheckOutcome("requirements", FAIL, "requirements.txt is not UTF-8 text")
    forbid = set(cfg.get("forbid") or ())
    exact = cfg.get("pins") == "exact"
    count = 0
    for n, raw in enumerate(text.splitlines(), start=1):
        line = raw.split(" #", 1)[0].strip()
        if not line or line.startswith("#"):
            continue
        kind = classify_requirement(line)
        if kind in forbid:
            return CheckOutcome("requirements", FAIL, f"requirements.txt:{n}: {kind} forbidden: {line}")
        if line.startswith(("-r", "-c", "--requirement", "--constraint")):
            continue  # another file of the model: its own lines are not read here
        if kind is not None or line.startswith("-"):
            continue
        count += 1
        spec = line.split(";", 1)[0]
        loose = any(op in spec for op in (",", "!=", "<", ">", "~="))
        if exact and (not _NAME.match(spec) or "==" not in spec or loose or "*" in spec.split("==", 1)[1]):
            return CheckOutcome("requirements", FAIL, f"requirements.txt:{n}: not pinned with ==: {line}")
    pinned = "all pinned with ==" if exact else "pins not required"
    return CheckOutcome("requirements", PASS, f"requirements.txt: {count} requirement(s), {pinned}")


def check_limits(cfg: dict[str, Any], manifest: Manifest) -> CheckOutcome:
    """The model's total size, file count and largest file against the limits."""
    size, count = manifest.total_bytes, manifest.file_count
    largest = max(manifest.files.items(), key=lambda kv: kv[1].size, default=None)
    if cfg.get("max_total_bytes") is not None and size > cfg["max_total_bytes"]:
        return CheckOutcome("limits", FAIL, f"total size {human_bytes(size)} above max_total_bytes "
                                            f"{human_bytes(cfg['max_total_bytes'])}")
    if cfg.get("max_files") is not None and count > cfg["max_files"]:
        return CheckOutcome("limits", FAIL, f"{count} files, above max_files {cfg['max_files']}")
    cap = cfg.get("max_file_bytes")
    if cap is not None and largest is not None and largest[1].size > cap:
        return CheckOutcome("limits", FAIL, f"{largest[0]} is {human_bytes(largest[1].size)}, above "
                                            f"max_file_bytes {human_bytes(cfg['max_file_bytes'])}")
    return CheckOutcome("limits", PASS, f"{count} files, {human_bytes(size)}: within limits")


def check_metadata(cfg: dict[str, Any], description: str | None, tags: dict[str, str] | None) -> CheckOutcome:
    """The version's description length and required tags (present and non-empty)."""
    text = (description or "").strip()
    need = cfg.get("description_min_chars")
    if need is not None and len(text) < need:
        return CheckOutcome("metadata", FAIL, f"description has {len(text)} characters, fewer than {need}")
    missing = [t for t in cfg.get("required_tags") or () if not str((tags or {}).get(t) or "").strip()]
    if missing:
        return CheckOutcome("metadata", FAIL, f"version tag(s) missing or empty: {', '.join(missing)}")
    return CheckOutcome("metadata", PASS, f"description of {len(text)} characters; required tags present")
