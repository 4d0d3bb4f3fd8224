"""Typed errors from the server's JSON error body ``{"error": {"code", "message", "details"}}``.

Each is a :class:`ClientError` and the matching :mod:`lakeport.errors` class, so both
``except NotFound`` and ``except ClientError`` work; ``.status``, ``.code`` and ``.details``
carry what the server said (``details`` names the row, line or column of bad input).
"""

from __future__ import annotations

from typing import Any

import httpx

from lakeport.errors import (
    Closed,
    Conflict,
    Forbidden,
    Invalid,
    LakeportError,
    NotFound,
    Terminal,
    TooLarge,
    Unauthorized,
    Unavailable,
)
from lakeport.wire import read_error


class ClientError(LakeportError):
    """An error answer of the server: HTTP ``status``, error ``code``, message and ``details``."""

    def __init__(self, message: str, *, status: int = 0, code: str = "error",
                 details: Any = None) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.details = details


class ApiUnauthorized(ClientError, Unauthorized):
    """401: no API key, or one that is unknown or revoked."""


class ApiForbidden(ClientError, Forbidden):
    """403: the key's user may not do this (someone else's resource)."""


class ApiNotFound(ClientError, NotFound):
    """404: no such resource (or one the user may not see)."""


class ApiConflict(ClientError, Conflict):
    """409: exists already, still in use, or changed meanwhile."""


class ApiClosed(ClientError, Closed):
    """410: the resource went away while in use (e.g. a topic deleted meanwhile)."""


class ApiInvalid(ClientError, Invalid):
    """400 / 405 / 416 / 422: the request is not valid; ``details`` says where."""


class ApiTooLarge(ClientError, TooLarge):
    """413 / 431: a body or head over the server's size limit."""


class ApiUnavailable(ClientError, Unavailable):
    """408 / 502 / 503 / 504 or no connection, after the retries were spent."""


class ServerError(ClientError, Terminal):
    """500 and other unexpected answers: a bug on the server (see its log)."""


_CLIENT_CLASS: dict[type[LakeportError], type[ClientError]] = {
    base: kind
    for kind in (ApiUnauthorized, ApiForbidden, ApiNotFound, ApiConflict, ApiClosed, ApiInvalid,
                 ApiTooLarge, ApiUnavailable, ServerError)
    for base in kind.__bases__ if base is not ClientError
}


def error_from_response(response: httpx.Response, body: bytes) -> ClientError:
    """The typed error for an error ``response`` whose body was read as ``body``: the class
    of its error code in :data:`lakeport.wire.ERRORS`, also a :class:`ClientError`."""
    status = response.status_code
    answer = read_error(body, status)
    message = answer.message
    request = response.request
    reason = response.reason_phrase or "error"
    if not message or message.lower() == reason.lower():
        message = f"{status} {reason}: {request.method} {request.url.path}"
    kind = _CLIENT_CLASS.get(answer.kind, ServerError)
    if kind is ServerError:
        message = f"server error {status} on {request.method} {request.url.path}: {message}"
    return kind(message.replace("\n", " "), status=status, code=answer.code or "error",
                details=answer.details)


__all__ = [
    "ApiClosed",
    "ApiConflict",
    "ApiForbidden",
    "ApiInvalid",
    "ApiNotFound",
    "ApiTooLarge",
    "ApiUnauthorized",
    "ApiUnavailable",
    "ClientError",
    "ServerError",
    "error_from_response",
]
