"""Failures of MLflow and of the transport under it, turned into the core's errors.

:func:`dependency_unavailable` says whether a failure is a dependency being down, slow or rate limiting
(retrying may help); :func:`translate` gives the core error for any exception (unknown things
:class:`NotFoundError`, an unreachable or overloaded server :class:`TransientError`, anything else
:class:`CheckError`), with a message fit for users; :func:`raised_as_check_errors` applies it to a block.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from contextlib import contextmanager

from mlflow.exceptions import MlflowException

from core.errors import CheckError, NotFoundError, TransientError

_TRANSIENT_CODES = {"TEMPORARILY_UNAVAILABLE", "RESOURCE_EXHAUSTED", "REQUEST_LIMIT_EXCEEDED",
                    "DEADLINE_EXCEEDED", "ABORTED"}
_TRANSIENT_TEXT = re.compile(r"max retries exceeded|connection (refused|reset|aborted)|timed? ?out|"
                             r"temporarily unavailable|too many requests|name or service not known|"
                             r"failed to establish a new connection|remote end closed", re.I)


def dependency_unavailable(exc: BaseException) -> bool:
    """True when ``exc`` says a dependency is down, slow or rate limiting (retrying may help)."""
    if isinstance(exc, TransientError):
        return True
    if isinstance(exc, MlflowException):
        if exc.error_code in ("RESOURCE_DOES_NOT_EXIST", "INVALID_PARAMETER_VALUE", "PERMISSION_DENIED",
                              "UNAUTHENTICATED", "RESOURCE_ALREADY_EXISTS"):
            return False
        if exc.error_code in _TRANSIENT_CODES:
            return True
        status = exc.get_http_status_code()
        if status == 429 or (status >= 500 and exc.error_code != "INTERNAL_ERROR"):
            return True
        # INTERNAL_ERROR is also what MLflow raises when it gave up connecting: judge by the text.
        return bool(_TRANSIENT_TEXT.search(str(exc)))
    if isinstance(exc, (ConnectionError, TimeoutError)):
        return True
    mod = type(exc).__module__
    if mod.startswith(("requests", "urllib3")):
        return True
    return bool(_TRANSIENT_TEXT.search(str(exc)))


def translate(exc: BaseException, what: str) -> CheckError:
    """A core error for ``exc``, raised while doing ``what`` (e.g. "reading model 'm' version 3")."""
    if isinstance(exc, CheckError):
        return exc
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    if len(text) > 500:
        text = text[:500] + "…"
    if isinstance(exc, MlflowException) and exc.error_code == "RESOURCE_DOES_NOT_EXIST":
        return NotFoundError(f"{what}: {text}")
    if dependency_unavailable(exc):
        return TransientError(f"{what}: tracking server unavailable or overloaded: {text}")
    return CheckError(f"{what}: {text}")


@contextmanager
def raised_as_check_errors(what: str) -> Iterator[None]:
    """Core errors raised inside pass through; any other exception is raised as :func:`translate`'s.

    What a public core function wraps its work in, so that it raises nothing but :class:`CheckError`
    (and subclasses) for "could not check", whatever failed underneath (the cause stays chained).
    """
    try:
        yield
    except CheckError:
        raise
    except Exception as exc:
        raise translate(exc, what) from exc
