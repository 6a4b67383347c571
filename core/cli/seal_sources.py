"""Where ``check-model-version`` finds the guard's signed seals and the key that verifies them.

A version the guard sealed carries ``validation.seal_bundle``; the CLI must verify it against that seal
rather than pass it on run vs registry alone. The seal store is, in order: ``--seal-store`` (or
``GUARD_SEAL_STORE``, then ``GUARD_STORE``, read by click), else the store of the local stack's data
folder (``GUARD_DATA_DIR``, default ``./.guard``: ``results.db``, where ``make run`` keeps its seals) when
that file exists. The public key is, in order: ``--public-key`` (or ``GUARD_TRUSTED_KEYS``), else the
listener's ``GET /seal-key.pem`` (``--guard-url``, else the URL the local stack wrote to its
``stack.json``), else the public key ``make run`` generated in the data folder. Nothing is created.
"""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import click

from core.errors import CheckError

STACK_FILE = "stack.json"  # written by the local stack (deploy/local_stack.py) while it runs
LOCAL_STORE_FILE = "results.db"  # the local stack's default GUARD_STORE, which also holds its seals
LOCAL_PUBLIC_KEY = "seal-key.pub.pem"  # the public half of the key `make run` generates
SEAL_BUNDLE_TAG = "validation.seal_bundle"
_KEY_FETCH_TIMEOUT_S = 5.0


class CommaSeparatedPaths(click.Path):
    """A file path option whose environment variable holds several paths separated by commas."""

    def split_envvar_value(self, rv: str) -> Sequence[str]:  # noqa: D102 - click's hook
        return [item.strip() for item in rv.split(",") if item.strip()]


@dataclass
class SealSources:
    """What was found: the seal store URI and the trusted keys, and where each came from."""

    store: str | None = None
    store_origin: str = ""
    keys: list[Any] = field(default_factory=list)
    key_origin: str = ""
    explicit_store: bool = False
    problems: list[str] = field(default_factory=list)

    def missing_option(self) -> str | None:
        """The option a sealed version still needs, with why; None when both store and key are known."""
        if self.store is None:
            return ("no seal store found: give --seal-store URI (the guard's GUARD_SEAL_STORE, or its "
                    "GUARD_STORE when that is unset)")
        if not self.keys:
            tried = f" ({'; '.join(self.problems)})" if self.problems else ""
            return (f"no public key found to verify the seals in {self.store_origin}: give --public-key FILE "
                    f"(the guard serves it at GET /seal-key.pem; --guard-url URL fetches it){tried}")
        return None


def _stack_listener_url(data_dir: Path) -> str | None:
    try:
        return json.loads((data_dir / STACK_FILE).read_text(encoding="utf-8")).get("listener_url") or None
    except (OSError, ValueError, AttributeError):
        return None


def fetch_seal_key(guard_url: str) -> bytes:
    """The guard's public seal key, from its ``GET /seal-key.pem``; :class:`CheckError` saying why not."""
    url = guard_url.rstrip("/") + "/seal-key.pem"
    try:
        with urllib.request.urlopen(url, timeout=_KEY_FETCH_TIMEOUT_S) as answer:  # noqa: S310 - http(s) only
            return answer.read()
    except urllib.error.HTTPError as exc:
        raise CheckError(f"{url} answered {exc.code}") from None
    except (OSError, ValueError) as exc:
        raise CheckError(f"cannot reach {url}: {getattr(exc, 'reason', exc)}") from None


def find_seal_sources(seal_store: str | None, public_keys: Sequence[str], guard_url: str | None,
                      data_dir: str | None) -> SealSources:
    """Find the seal store and the trusted keys (see the module docstring); raises only for a key file
    given explicitly that cannot be used."""
    from core.seal.keys import load_public_keys, load_trusted_keys

    local = Path(data_dir or ".guard")
    found = SealSources()
    if seal_store:
        found.store, found.store_origin, found.explicit_store = seal_store, "--seal-store", True
    elif (local / LOCAL_STORE_FILE).is_file():
        found.store = f"sqlite:///{(local / LOCAL_STORE_FILE).resolve()}"
        found.store_origin = f"the local stack's store ({local / LOCAL_STORE_FILE})"
    if public_keys:
        found.keys, found.key_origin = load_trusted_keys(public_keys), "--public-key"
        return found
    url = guard_url or _stack_listener_url(local)
    if url:
        try:
            found.keys = load_public_keys(fetch_seal_key(url), f"{url.rstrip('/')}/seal-key.pem")
            found.key_origin = f"{url.rstrip('/')}/seal-key.pem"
            return found
        except CheckError as exc:
            found.problems.append(str(exc))
    if (local / LOCAL_PUBLIC_KEY).is_file():
        found.keys = load_trusted_keys([local / LOCAL_PUBLIC_KEY])
        found.key_origin = str(local / LOCAL_PUBLIC_KEY)
    return found


def carries_signed_seal(report: dict[str, Any]) -> bool:
    """True when the checked version's tags say the guard sealed it with a signed seal."""
    tags = (report.get("Version") or {}).get("_tags") or {}
    return bool(tags.get(SEAL_BUNDLE_TAG))


def nothing_proven(result: Any) -> str | None:
    """The plain warning for a pass that proves nothing, or None.

    In open-source MLflow the registry model is the run model's own storage: comparing them finds them
    equal by construction. Only a verified seal says the files are still those that were registered.
    """
    comparison = result.report.get("Comparison") or {}
    outcome = getattr(result, "seal_outcome", None)
    verified = result.seal_checked and (outcome is None or outcome.status == "PASSED")
    if result.status != "PASSED" or not comparison.get("same_location") or verified:
        return None
    return ("nothing was proven: the run model and the registry model are the same storage, so they are "
            "equal by construction, and no seal was verified (give --seal-store and --public-key to verify "
            "the guard's signed seal)")


def seal_options(sources: SealSources, *, unsealed_fails: bool, workspace_host: str | None) -> Any:
    """Verify-only seal options for what was found (None when no seal store was found).

    A store named on the command line with no key found is an error at once; a store found by default
    with no key only matters for a version that carries a signed seal (the caller checks that after).
    """
    from core.seal.step import SealOptions
    from core.seal.store import open_seal_store

    if sources.store is None:
        if sources.key_origin == "--public-key":
            raise CheckError("--public-key needs --seal-store (where the signed seals are)")
        return None
    if not sources.keys:
        if sources.explicit_store:
            raise CheckError(sources.missing_option() or "no public key")
        return None
    return SealOptions(store=open_seal_store(sources.store), trusted=sources.keys,
                       unsealed_fails=unsealed_fails, workspace_host=workspace_host)
