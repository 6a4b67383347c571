"""The ``validation.*`` tag names the guard writes onto a model version, and reads back.

Never prefixed with ``mlflow.`` (the MLflow UI hides those keys). The listener writes them
(:mod:`listener.verdict_tags`); the core reads the seal ones when it checks a version.
"""

from __future__ import annotations

TAG_PREFIX = "validation."
TAG_STATUS = "validation.status"
TAG_SUMMARY = "validation.summary"
TAG_CHECKED_AT = "validation.checked_at"
TAG_REPORT = "validation.report"
# The seal: the tree digest the verdict stands on, and (signed seals) where its bundle is.
TAG_SEAL = "validation.seal"
TAG_SEAL_BUNDLE = "validation.seal_bundle"
# The unsigned seal (a compact JSON manifest): written only when no signing key is configured, and read
# for versions sealed that way.
TAG_MANIFEST = "validation.manifest"
TAG_ALIAS_REVERTED = "validation.alias_reverted"
# How the version's signed seal was made when not at registration ("sealed on first sight (backfill)").
TAG_SEAL_NOTE = "validation.seal_note"
# The policy's result in one short line: "PASS (9 checks)", "FAIL: serialization; WARN: signature".
TAG_POLICY = "validation.policy"

# Open-source MLflow model-version tag values: up to 100,000 characters (other registries pass their own).
TAG_VALUE_LIMIT = 100_000
