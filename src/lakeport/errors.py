"""The lakeport error hierarchy.

Every error says whether a retry can help: :class:`Transient` errors may succeed
when tried again (a server restarting, a lock held a moment), :class:`Terminal`
errors will not (a bad name, a missing topic, a conflict). Backend exceptions are
translated into these where they enter lakeport (``raise ... from``).
"""

from __future__ import annotations


class LakeportError(Exception):
    """Root of every error lakeport raises on purpose."""

    retryable: bool = False


class Transient(LakeportError):
    """A retry may help: the backend is unavailable or busy."""

    retryable = True


class Terminal(LakeportError):
    """A retry will not help until something is changed."""

    retryable = False


class Unavailable(Transient):
    """A server or engine cannot be reached."""


class NotFound(Terminal):
    """A named resource (topic, consumer, ...) does not exist."""


class Conflict(Terminal):
    """The request conflicts with the current state (a second exclusive consumer, ...)."""


class Invalid(Terminal):
    """The input is not valid: a bad name, payload, position, option or URL."""


class TooLarge(Invalid):
    """A request body over a configured size limit (HTTP 413)."""


class Closed(Terminal):
    """The object was closed, or the topic it used was deleted."""


class Unauthorized(Terminal):
    """No credentials, or credentials that are not valid (HTTP 401)."""


class Forbidden(Terminal):
    """Valid credentials without the right to do this (HTTP 403)."""


__all__ = [
    "Closed",
    "Conflict",
    "Forbidden",
    "Invalid",
    "LakeportError",
    "NotFound",
    "Terminal",
    "TooLarge",
    "Transient",
    "Unauthorized",
    "Unavailable",
]
