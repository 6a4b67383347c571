"""The seal step of a check: verify the registry model against its signed seal, or seal it once.

Shared by the worker and ``check-model-version`` (both through :func:`core.check.check_model_version`),
so the two decide a version's seal the same way. The seal is looked up in the seal store by the
version's identity (registry, model, version) alone; tags only say whether a seal is expected.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from core.errors import CheckError
from core.seal.attestation import SealIdentity, registry_identity
from core.seal.keys import SigningKey, TrustedKey
from core.seal.manifest import Manifest
from core.seal.signed import UNSEALED, SealRecord, SealVerification, verify_or_seal
from core.seal.store import SealStore
from core.status import FAILED
from core.tags import TAG_MANIFEST


@dataclass(frozen=True)
class SealOptions:
    """How a check treats signed seals.

    ``store``: the seal store; ``trusted``: the public keys a seal may be signed with; ``key``: the
    signing key (None: verify only, never seal); ``may_seal``: an unsealed version may be sealed
    now (the run and registry models must also compare equal); ``unsealed_fails``: a version with
    no seal at all is FAILED ("no signed seal", what ``check-model-version`` wants) instead of being
    judged on run vs registry alone; ``workspace_host``: the Databricks workspace, for the identity;
    ``note``: how a seal made now was made, when not at registration (recorded in its attestation).
    """

    store: SealStore
    trusted: Sequence[TrustedKey]
    key: SigningKey | None = None
    may_seal: bool = False
    unsealed_fails: bool = False
    workspace_host: str | None = None
    note: str | None = None


@dataclass
class SealStep:
    """What the seal step found: ``outcome`` (see :class:`~core.seal.signed.SealVerification`),
    ``record`` when this check made the seal, and ``status`` the seal's part of the verdict."""

    outcome: SealVerification
    record: SealRecord | None
    status: str | None
    summary: str


def seal_identity(registry_uri: str | None, tracking_uri: str | None, model: str, version: str, *,
                  workspace_host: str | None = None) -> SealIdentity:
    """The identity a version's seal is filed under: registry URI (else tracking URI), model, version."""
    uri = registry_uri or tracking_uri
    if not uri:
        raise CheckError("no tracking or registry URI: a signed seal is looked up by registry, model and "
                         "version")
    return SealIdentity(registry_identity(uri, workspace_host=workspace_host), model, str(version))


def run_seal_step(options: SealOptions, identity: SealIdentity, current: Manifest, mv: Any, *,
                  legacy_seal: Manifest | None, run_equals_registry: bool) -> SealStep:
    """Verify ``current`` (the registry model as read now) against ``identity``'s seal, sealing it if allowed.

    A version is sealed only when it has no seal at all, ``options.may_seal`` is set, a key is
    configured and its run and registry models compared equal: tampered files are never sealed.
    Store faults propagate as :class:`~core.errors.TransientError` / :class:`~core.errors.CheckError`.
    """
    tags: Mapping[str, str] = dict(getattr(mv, "tags", None) or {})
    outcome, record = verify_or_seal(
        options.store, identity, current, options.trusted, key=options.key,
        may_seal=options.may_seal and run_equals_registry, run_id=getattr(mv, "run_id", None),
        source=getattr(mv, "source", None), tags=tags, legacy_seal=legacy_seal, note=options.note)
    status = outcome.status
    summary = outcome.reason
    if outcome.kind == UNSEALED:
        if options.unsealed_fails:
            status = FAILED
            summary = f"no signed seal: {outcome.reason}"
        elif options.key is None:
            summary = (f"{outcome.reason}; no signing key configured, so the seal stays unsigned "
                       f"({TAG_MANIFEST} tag)")
    return SealStep(outcome, record, status, summary)
