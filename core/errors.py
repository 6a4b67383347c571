"""Errors of the check-version core.

Every error here means "the check could not be carried out" (exit status 2), as opposed to
"the check ran and found differences" (exit status 1). Messages are shown to users as they are,
so they name the model, version or URI involved and never carry credentials.
"""

from __future__ import annotations

import urllib.parse


class CheckError(Exception):
    """The check could not be carried out (exit status 2). The message is user-facing."""


class TransientError(CheckError):
    """A dependency is down, timed out or asked us to slow down (429/5xx): retrying later may help."""


class NotFoundError(CheckError):
    """Unknown registered model, version or alias, or no version in the requested stage."""


class SealInvalid(CheckError):
    """A signed seal proves nothing: bad or missing signature, untrusted key, or another version's seal.

    The check ran and the version must not pass (FAILED); the message says why.
    """


class SealCorrupt(SealInvalid):
    """A signed seal cannot even be read: truncated, not JSON, not a bundle (ERROR, never PASSED)."""


class SealExistsError(CheckError):
    """The version already has a signed seal: seals are written once and never replaced."""


def redact(uri: str | None) -> str | None:
    """``uri`` without user information or query parameters (tokens never reach reports)."""
    if not uri:
        return uri
    try:
        parts = urllib.parse.urlsplit(uri)
    except ValueError:
        return uri
    netloc = parts.netloc
    if "@" in netloc:
        netloc = "***@" + netloc.rsplit("@", 1)[1]
    query = "***" if parts.query else ""
    return urllib.parse.urlunsplit((parts.scheme, netloc, parts.path, query, ""))
