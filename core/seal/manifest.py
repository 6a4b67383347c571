"""Manifests of model trees and the comparison of two manifests.

A manifest records, for every entry under a model's root folder, what it is (file, folder,
symbolic link, other) and, for files, the size and SHA-256 of the content. Two trees are equal
exactly when their manifests are equal, so comparing two trees, and checking a tree against a
seal recorded earlier, are the same operation: :func:`diff_manifests`.

This module holds the data types only; reading a tree from disk lives in :mod:`core.compare.tree`, and
the seal operations in :mod:`core.seal.digest` (which re-exports :class:`Manifest`).
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from typing import Any

from core.tags import TAG_VALUE_LIMIT

MANIFEST_FORMAT = 1

# Entry types, as they appear in difference details.
FILE, DIR, SYMLINK, SPECIAL = "file", "dir", "symlink", "special"


@dataclass(frozen=True)
class FileDigest:
    """Size in bytes and hex SHA-256 of one file's content."""

    size: int
    sha256: str


@dataclass
class Difference:
    """One difference between two trees, named by its path relative to the model root.

    ``kind`` is ``"changed"``, ``"only_in_<label>"`` or ``"type_mismatch"``; ``detail`` carries
    what differs, keyed with the side labels (for example ``size_run`` and ``size_registry``).
    """

    path: str
    kind: str
    detail: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        """Plain-dict form for reports."""
        return {"path": self.path, "kind": self.kind, "detail": dict(self.detail)}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Difference:
        """Inverse of :meth:`to_dict`."""
        return cls(path=d["path"], kind=d["kind"], detail=dict(d.get("detail") or {}))

    def describe(self) -> str:
        """One human-readable line, for terminals and summaries."""
        # Full digests stay in the reports; 12 hex digits are plenty to tell two files apart on screen.
        extra = ", ".join(f"{k}={v[:12] if k.startswith(('sha256_', 'tree_digest_')) else v}"
                          for k, v in self.detail.items())
        return f"{self.kind:<22} {self.path}" + (f"  ({extra})" if extra else "")


def _encode_path(path: str) -> bytes:
    # Undecodable file names come back from os.scandir as surrogate escapes; keep their bytes.
    return path.encode("utf-8", "surrogateescape")


def tree_digest(files: dict[str, FileDigest], *, empty_dirs: Any = (), symlinks: dict[str, str] | None = None,
                special: Any = ()) -> str:
    """SHA-256 over the sorted ``(relative path, file SHA-256)`` pairs of a tree.

    The path is part of what is hashed, so renaming or moving a file changes the digest. Entries
    that are not regular files (empty folders, symbolic links, special files) are folded in with
    a marker instead of a content digest; a tree made of regular files only hashes exactly the
    (path, SHA-256) pairs.
    """
    entries: list[tuple[str, str]] = [(p, d.sha256) for p, d in files.items()]
    entries += [(p, "dir:") for p in empty_dirs]
    entries += [(p, "symlink:" + t) for p, t in (symlinks or {}).items()]
    entries += [(p, "special:") for p in special]
    h = hashlib.sha256()
    for path, digest in sorted(entries):
        # NUL cannot occur in a path and newline ends the record: the encoding is unambiguous.
        h.update(_encode_path(path) + b"\0" + _encode_path(digest) + b"\n")
    return h.hexdigest()


def _parents(path: str) -> list[str]:
    parts = path.split("/")
    return ["/".join(parts[:i]) for i in range(1, len(parts))]


@dataclass
class Manifest:
    """Everything under a model root: files with size and SHA-256, folders, symlinks, other entries.

    ``ignored`` names top-level files that were left out on purpose (``registered_model_meta``).
    A manifest loaded from a seal too large for a tag value keeps only its ``tree_digest`` and
    has ``truncated`` set; it can then be compared by digest only.
    """

    files: dict[str, FileDigest]
    tree_digest: str
    dirs: set[str] = field(default_factory=set)
    symlinks: dict[str, str] = field(default_factory=dict)
    special: set[str] = field(default_factory=set)
    ignored: list[str] = field(default_factory=list)
    truncated: bool = False
    truncated_file_count: int | None = None
    truncated_total_bytes: int | None = None

    @classmethod
    def build(cls, files: dict[str, FileDigest], dirs: set[str] | None = None,
              symlinks: dict[str, str] | None = None, special: set[str] | None = None,
              ignored: list[str] | None = None) -> Manifest:
        """A manifest with its tree digest computed; parent folders of every entry are implied."""
        dirs = set(dirs or ())
        symlinks = dict(symlinks or {})
        special = set(special or ())
        for p in [*files, *symlinks, *special, *dirs]:
            dirs.update(_parents(p))
        m = cls(files=dict(files), tree_digest="", dirs=dirs, symlinks=symlinks, special=special,
                ignored=sorted(ignored or []))
        m.tree_digest = tree_digest(m.files, empty_dirs=m.empty_dirs(), symlinks=m.symlinks,
                                    special=m.special)
        return m

    @property
    def file_count(self) -> int:
        """Number of regular files (as recorded, for a digest-only seal)."""
        if self.truncated and self.truncated_file_count is not None:
            return self.truncated_file_count
        return len(self.files)

    @property
    def total_bytes(self) -> int:
        """Sum of file sizes (as recorded, for a digest-only seal)."""
        if self.truncated and self.truncated_total_bytes is not None:
            return self.truncated_total_bytes
        return sum(d.size for d in self.files.values())

    def empty_dirs(self) -> list[str]:
        """Folders with nothing inside; the others are implied by the paths of their entries."""
        non_empty: set[str] = set()
        for p in [*self.files, *self.symlinks, *self.special, *self.dirs]:
            non_empty.update(_parents(p))
        return sorted(self.dirs - non_empty)

    def entry_types(self) -> dict[str, str]:
        """Relative path -> entry type, for every entry of the tree."""
        types = dict.fromkeys(self.dirs, DIR)
        types.update(dict.fromkeys(self.files, FILE))
        types.update(dict.fromkeys(self.symlinks, SYMLINK))
        types.update(dict.fromkeys(self.special, SPECIAL))
        return types

    def to_dict(self, *, compact: bool = False) -> dict[str, Any]:
        """Plain-dict form. ``compact`` writes files as ``[size, sha256]`` and only empty folders."""
        d: dict[str, Any] = {"format": MANIFEST_FORMAT, "algorithm": "sha256",
                             "tree_digest": self.tree_digest, "file_count": self.file_count,
                             "total_bytes": self.total_bytes}
        if self.truncated:
            d["truncated"] = True
            return d
        if compact:
            d["files"] = {p: [f.size, f.sha256] for p, f in sorted(self.files.items())}
            d["dirs"] = self.empty_dirs()
        else:
            d["files"] = {p: {"size": f.size, "sha256": f.sha256} for p, f in sorted(self.files.items())}
            d["dirs"] = sorted(self.dirs)
        if self.symlinks:
            d["symlinks"] = dict(sorted(self.symlinks.items()))
        if self.special:
            d["special"] = sorted(self.special)
        if self.ignored:
            d["ignored"] = list(self.ignored)
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Manifest:
        """Inverse of :meth:`to_dict` (either form) and of :meth:`to_compact_json` after parsing."""
        if not isinstance(d, dict) or "tree_digest" not in d:
            raise ValueError("not a manifest: no tree_digest")
        if d.get("truncated"):
            return cls(files={}, tree_digest=d["tree_digest"], truncated=True,
                       truncated_file_count=d.get("file_count"), truncated_total_bytes=d.get("total_bytes"),
                       ignored=list(d.get("ignored") or []))
        files: dict[str, FileDigest] = {}
        for p, v in (d.get("files") or {}).items():
            if isinstance(v, dict):
                files[p] = FileDigest(int(v["size"]), str(v["sha256"]))
            else:
                files[p] = FileDigest(int(v[0]), str(v[1]))
        m = cls.build(files, dirs=set(d.get("dirs") or ()), symlinks=d.get("symlinks") or {},
                      special=set(d.get("special") or ()), ignored=list(d.get("ignored") or []))
        if m.tree_digest != d["tree_digest"]:
            raise ValueError("manifest is inconsistent: its tree_digest does not match its entries")
        return m

    @classmethod
    def from_json(cls, text: str) -> Manifest:
        """Parse a manifest from JSON text (a seal tag value or a file)."""
        return cls.from_dict(json.loads(text))

    def to_compact_json(self, limit: int = TAG_VALUE_LIMIT) -> str:
        """Compact JSON of the manifest, at most ``limit`` characters.

        Above the limit only the tree digest, file count and total size are kept, and the JSON
        says ``"truncated": true``: such a seal can still prove a tree unchanged, but cannot
        name the files that changed.
        """
        text = json.dumps(self.to_dict(compact=True), separators=(",", ":"), sort_keys=False)
        if len(text) <= limit:
            return text
        d = {"format": MANIFEST_FORMAT, "algorithm": "sha256", "tree_digest": self.tree_digest,
             "file_count": self.file_count, "total_bytes": self.total_bytes, "truncated": True}
        return json.dumps(d, separators=(",", ":"))


def _entry_detail(m: Manifest, path: str, kind: str) -> dict[str, Any]:
    if kind == FILE:
        return {"type": FILE, "size": m.files[path].size}
    if kind == SYMLINK:
        return {"type": SYMLINK, "target": m.symlinks[path]}
    return {"type": kind}


def diff_manifests(left: Manifest, right: Manifest,
                   labels: tuple[str, str] = ("left", "right")) -> list[Difference]:
    """List every difference between two manifests, sorted by path.

    A folder present on one side only is listed once, with the number of files and bytes under
    it, rather than once per file inside it; the same holds for a path that is a folder on one
    side and something else on the other.
    """
    a, b = labels
    if left.truncated or right.truncated:
        if left.tree_digest == right.tree_digest:
            return []
        return [Difference(".", "changed", {
            f"tree_digest_{a}": left.tree_digest, f"tree_digest_{b}": right.tree_digest,
            "note": "a digest-only seal cannot name the files that differ"})]
    lt, rt = left.entry_types(), right.entry_types()
    diffs: list[Difference] = []
    # A folder reported as a whole -> (its Difference, the manifest whose contents it stands for).
    covered: dict[str, tuple[Difference, Manifest]] = {}

    def _cover(d: Difference, path: str, side: Manifest) -> None:
        covered[path] = (d, side)
        d.detail["files"] = 0
        d.detail["bytes"] = 0

    for path in sorted(lt.keys() | rt.keys()):
        owner = next((covered[p] for p in _parents(path) if p in covered), None)
        if owner is not None:
            # Inside a folder already reported as a whole: count it there instead of listing it.
            d, side = owner
            if path in side.files:
                d.detail["files"] += 1
                d.detail["bytes"] += side.files[path].size
            continue
        lk, rk = lt.get(path), rt.get(path)
        if rk is None:
            d = Difference(path, f"only_in_{a}", _entry_detail(left, path, lk))
            diffs.append(d)
            if lk == DIR:
                _cover(d, path, left)
        elif lk is None:
            d = Difference(path, f"only_in_{b}", _entry_detail(right, path, rk))
            diffs.append(d)
            if rk == DIR:
                _cover(d, path, right)
        elif lk != rk:
            detail: dict[str, Any] = {a: lk, b: rk}
            if lk == FILE:
                detail[f"size_{a}"] = left.files[path].size
            if rk == FILE:
                detail[f"size_{b}"] = right.files[path].size
            d = Difference(path, "type_mismatch", detail)
            diffs.append(d)
            if DIR in (lk, rk):
                _cover(d, path, left if lk == DIR else right)
        elif lk == FILE:
            lf, rf = left.files[path], right.files[path]
            if lf != rf:
                diffs.append(Difference(path, "changed", {
                    f"size_{a}": lf.size, f"size_{b}": rf.size,
                    f"sha256_{a}": lf.sha256, f"sha256_{b}": rf.sha256}))
        elif lk == SYMLINK:
            if left.symlinks[path] != right.symlinks[path]:
                diffs.append(Difference(path, "changed", {"type": SYMLINK, f"target_{a}": left.symlinks[path],
                                                          f"target_{b}": right.symlinks[path]}))
        elif lk == SPECIAL:
            # A fifo, socket or device has no content to compare: never report it as equal.
            diffs.append(Difference(path, "changed", {
                "type": SPECIAL, "note": "special file (fifo, socket or device) cannot be compared"}))
    return diffs
