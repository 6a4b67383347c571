"""Which files of a model to leave out of a comparison: ``--exclude GLOB`` patterns.

Patterns are matched against the path relative to the model root, in POSIX form (``/``
separators), the whole path at once:

- ``*`` matches any run of characters within one path segment (never a ``/``), ``?`` one
  character, ``[abc]`` one of a set (``[!abc]`` none of it);
- ``**`` as a whole segment matches any number of folders, none included: ``**/model.skops``
  matches ``model.skops`` and ``a/b/model.skops``; ``logs/**`` everything under ``logs``;
- a pattern that names a folder also leaves out everything under it (``logs`` = ``logs/**``).

Matching is case-sensitive, as model files on Linux and in object stores are. Excluded entries
are never dropped silently: whoever applies these patterns lists what they left out (the
reports' ``excluded``).
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from functools import lru_cache

from core.seal.manifest import Manifest

__all__ = ["excluded_paths", "is_excluded", "validate_patterns", "without_excluded"]


def validate_patterns(patterns: Iterable[str] | None) -> list[str]:
    """The patterns as a clean list; raises ``ValueError`` for an empty, absolute or ``..`` pattern."""
    out: list[str] = []
    for raw in patterns or ():
        if not isinstance(raw, str) or not raw.strip():
            raise ValueError(f"an exclude pattern must be a non-empty string, not {raw!r}")
        pattern = raw.strip().replace("\\", "/")
        if pattern.startswith("/") or ".." in pattern.split("/"):
            raise ValueError(f"exclude pattern {raw!r} must be relative to the model root (no leading '/', "
                             "no '..')")
        out.append(pattern.rstrip("/") or pattern)
    return out


@lru_cache(maxsize=256)
def _compile(pattern: str) -> re.Pattern[str]:
    segments = pattern.split("/")
    parts: list[str] = []
    for i, seg in enumerate(segments):
        last = i == len(segments) - 1
        if seg == "**":
            # Any number of whole segments, with their separators; at the end: anything below.
            parts.append(".*" if last else "(?:[^/]*/)*")
            continue
        parts.append(_segment(seg) + ("" if last else "/"))
    # A pattern naming a folder also covers what is inside it.
    return re.compile("".join(parts) + "(?:/.*)?", re.DOTALL)


def _segment(seg: str) -> str:
    out, i, n = [], 0, len(seg)
    while i < n:
        c = seg[i]
        if c == "*":
            out.append("[^/]*")
        elif c == "?":
            out.append("[^/]")
        elif c == "[":
            j = seg.find("]", i + 2 if i + 1 < n and seg[i + 1] in "!^" else i + 1)
            if j == -1:
                out.append(re.escape(c))
            else:
                body = seg[i + 1:j]
                negate = body[:1] in ("!", "^")
                body = body[1:] if negate else body
                out.append("[" + ("^/" if negate else "") + body.replace("\\", "\\\\") + "]")
                i = j
        else:
            out.append(re.escape(c))
        i += 1
    return "".join(out)


def is_excluded(relpath: str, patterns: Sequence[str]) -> bool:
    """True when ``relpath`` (relative to the model root, ``/``-separated) matches one of ``patterns``."""
    if not patterns:
        return False
    path = relpath.strip("/")
    return any(_compile(p).fullmatch(path) for p in patterns)


def excluded_paths(paths: Iterable[str], patterns: Sequence[str]) -> list[str]:
    """The sorted subset of ``paths`` that ``patterns`` exclude."""
    return sorted(p for p in paths if is_excluded(p, patterns))


def without_excluded(manifest: Manifest, patterns: Sequence[str]) -> Manifest:
    """``manifest`` with the entries ``patterns`` exclude moved to its ``ignored`` list.

    Used on a seal recorded before the patterns were given, so that it is compared with a tree
    scanned with them. A digest-only (truncated) seal cannot be split: ``ValueError``.
    """
    if not patterns:
        return manifest
    if manifest.truncated:
        raise ValueError("the seal keeps only its tree digest, so excluded files cannot be left out of it")
    gone = set(excluded_paths([*manifest.files, *manifest.dirs, *manifest.symlinks, *manifest.special],
                              patterns))
    return Manifest.build({p: d for p, d in manifest.files.items() if p not in gone},
                          dirs={p for p in manifest.dirs if p not in gone},
                          symlinks={p: t for p, t in manifest.symlinks.items() if p not in gone},
                          special={p for p in manifest.special if p not in gone},
                          ignored=[*manifest.ignored, *_tops(gone)])


def _tops(paths: set[str]) -> list[str]:
    # A folder and everything in it are listed once, by the folder, as a scan lists them.
    return sorted(p for p in paths if not any(p.startswith(q + "/") for q in paths))
