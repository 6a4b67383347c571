"""Seals: a manifest of a model version's files, recorded once, checked on every later validation.

In open-source MLflow the registry keeps no copy of its own (the download URI is the same storage
as the run's model), so comparing run and registry cannot notice a file changed after the version
was created. The seal can: it is the manifest taken when the version was created, stored on the
version as the ``validation.manifest`` tag, and later compared with the files as they are now.
"""

from __future__ import annotations

from pathlib import Path

from core.compare.tree import scan_tree
from core.seal.manifest import Difference, FileDigest, Manifest, diff_manifests, tree_digest

__all__ = ["FileDigest", "Manifest", "make_seal", "tree_digest", "verify_manifest",
           "verify_seal"]


def make_seal(path: Path | str) -> Manifest:
    """Manifest of the model under ``path`` (top-level ``registered_model_meta`` left out)."""
    return scan_tree(path).manifest


def verify_manifest(current: Manifest, sealed: Manifest,
                    labels: tuple[str, str] = ("sealed", "current")) -> list[Difference]:
    """Differences between a seal and the current manifest; ``labels`` name (sealed, current).

    A digest-only seal (too large for a tag) yields at most one difference, on the tree digest.
    """
    return diff_manifests(sealed, current, labels)


def verify_seal(path: Path | str, sealed: Manifest) -> list[Difference]:
    """Read the model under ``path`` now and list its differences from ``sealed``."""
    return verify_manifest(make_seal(path), sealed)
