"""Typed errors from the server's JSON error body ``{"error": {"code", "message", "details"}}``.

Each is a :class:`ClientError` and the matching :mod:`lakeport.errors` class, so both
``except NotFound`` and ``except ClientError`` work; ``.status``, ``.code`` and ``.details``
carry what the server said (``details`` names the row, line or column of bad input).
"""

from __future__ import annotations

from typing import Any

import httpx
import orjson

from lakeport.errors import (
    Conflict,
    Forbidden,
    Invalid,
    LakeportError,
    NotFound,
    Terminal,
    Unauthorized,
    Unavailable,
)


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


class ApiInvalid(ClientError, Invalid):
    """400 / 413 / 416 / 422: the request is not valid; ``details`` says where."""


class ApiUnavailable(ClientError, Unavailable):
    """502 / 503 / 504 or no connection, after the retries were spent."""


class ServerError(ClientError, Terminal):
    """500 and other unexpected answers: a bug on the server (see its log)."""


_BY_STATUS: dict[int, type[ClientError]] = {
    400: ApiInvalid, 401: ApiUnauthorized, 403: ApiForbidden, 404: ApiNotFound,
    405: ApiInvalid, 409: ApiConflict, 413: ApiInvalid, 416: ApiInvalid, 422: ApiInvalid,
    502: ApiUnavailable, 503: ApiUnavailable, 504: ApiUnavailable,
}


def error_from_response(response: httpx.Response, body: bytes) -> ClientError:
    """The typed error for an error ``response`` whose body was read as ``body``."""
    status = response.status_code
    code, message, details = "error", "", None
    try:
        error = orjson.loads(body)["error"]
        code = str(error.get("code") or code)
        message = str(error.get("message") or "")
        details = error.get("details")
    except (orjson.JSONDecodeError, KeyError, TypeError, AttributeError):
        message = body[:200].decode(errors="replace").strip()
    request = response.request
    reason = response.reason_phrase or "error"
    if not message or message.lower() == reason.lower():
        message = f"{status} {reason}: {request.method} {request.url.path}"
    if status >= 500 and status not in (502, 503, 504):
        message = f"server error {status} on {request.method} {request.url.path}: {message}"
    kind = _BY_STATUS.get(status) or (ApiInvalid if 400 <= status < 500 else ServerError)
    return kind(message.replace("\n", " "), status=status, code=code, details=details)


__all__ = [
    "ApiConflict",
    "ApiForbidden",
    "ApiInvalid",
    "ApiNotFound",
    "ApiUnauthorized",
    "ApiUnavailable",
    "ClientError",
    "ServerError",
    "error_from_response",
]
