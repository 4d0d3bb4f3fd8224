"""How the server and its HTTP callers talk: the API prefix, error codes, topic payloads.

One table (:data:`ERRORS`) says which error code and HTTP status each error travels as and
which lakeport exception a caller raises for it. The server answers with it, and the Python
client and the ``http(s)://`` topic engine read answers with it, so one answer is the same
exception class everywhere. Error answers are ``{"error": {"code", "message", "details"}}``.

Topic payloads travel as JSON values: as they are on ``json`` topics, as text on ``string``
topics and as ``{"base64": "..."}`` on ``bytes`` topics (text is taken too).
"""

from __future__ import annotations

import base64
import binascii
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, NamedTuple

import orjson

from lakeport.errors import (
    Closed,
    Conflict,
    Forbidden,
    Invalid,
    LakeportError,
    NotFound,
    Terminal,
    TooLarge,
    Transient,
    Unauthorized,
    Unavailable,
)

if TYPE_CHECKING:  # the stream engines stay unloaded for callers of the wire alone
    from lakeport.streams.types import Format

API_PREFIX = "/api/v1"
"""Where the server's API routes are mounted (``/health`` and the OpenAPI document are not)."""


class WireError(NamedTuple):
    """One error code: its HTTP status, the exception a caller raises, and the lakeport
    errors the server answers with it (None: answers the framework or the protocol makes)."""

    code: str
    status: int
    raised: type[LakeportError]
    answers: type[LakeportError] | None = None


ERRORS: tuple[WireError, ...] = (
    WireError("unauthorized", 401, Unauthorized, Unauthorized),
    WireError("forbidden", 403, Forbidden, Forbidden),
    WireError("not_found", 404, NotFound, NotFound),
    WireError("conflict", 409, Conflict, Conflict),
    WireError("closed", 410, Closed, Closed),
    WireError("too_large", 413, TooLarge, TooLarge),
    WireError("invalid", 422, Invalid, Invalid),
    WireError("unavailable", 503, Unavailable, Transient),
    WireError("bad_request", 400, Invalid),
    WireError("method_not_allowed", 405, Invalid),
    WireError("timeout", 408, Unavailable),
    WireError("range_not_satisfiable", 416, Invalid),
    WireError("too_large", 431, TooLarge),
    WireError("internal", 500, Terminal),
)
"""Every error code the server sends. A lakeport error is answered with the first row whose
``answers`` class it is an instance of (any other one is ``bad_request``, 400)."""

TRANSIENT_STATUSES = frozenset({502, 503, 504})
"""Statuses of a server or proxy that is down or restarting: a retry may help."""

_BY_CODE = {row.code: row.raised for row in reversed(ERRORS)}
_BY_STATUS = {row.status: row for row in reversed(ERRORS)}
_BAD_REQUEST = _BY_STATUS[400]


def answer_for(exc: LakeportError) -> WireError:
    """The code and HTTP status the server answers ``exc`` with."""
    for row in ERRORS:
        if row.answers is not None and isinstance(exc, row.answers):
            return row
    return _BAD_REQUEST


def code_for_status(status: int) -> str:
    """The error code of an answer with HTTP ``status`` that is not a lakeport error."""
    row = _BY_STATUS.get(status)
    if row is not None:
        return row.code
    return "internal" if status >= 500 else "bad_request"


def error_class(code: str | None, status: int | None = None) -> type[LakeportError]:
    """The exception for an error ``code``; for an unknown code (e.g. a proxy's answer),
    the one of ``status``: any 4xx is Invalid, 502 / 503 / 504 Unavailable, else Terminal."""
    kind = _BY_CODE.get(code or "")
    if kind is not None:
        return kind
    if status is None:
        return Terminal
    if status in TRANSIENT_STATUSES:
        return Unavailable
    row = _BY_STATUS.get(status)
    if row is not None:
        return row.raised
    return Invalid if 400 <= status < 500 else Terminal


@dataclass(frozen=True, slots=True)
class ErrorAnswer:
    """What an error answer said: HTTP ``status`` (None in a WebSocket frame), ``code``,
    ``message`` and ``details``."""

    status: int | None
    code: str
    message: str
    details: Any = None

    @property
    def kind(self) -> type[LakeportError]:
        """The lakeport exception class of this answer."""
        return error_class(self.code, self.status)

    def error(self) -> LakeportError:
        """The lakeport exception of this answer, with its message."""
        return self.kind(self.message or self.code
                         or (f"HTTP {self.status}" if self.status else "error without a message"))


def read_error(error: Any, status: int | None = None) -> ErrorAnswer:
    """Read an error answer: ``error`` is an HTTP body (bytes holding ``{"error": {...}}``)
    or the ``{"code", "message", "details"}`` object of a WebSocket frame."""
    if isinstance(error, bytes | bytearray | memoryview):
        raw = bytes(error)
        try:
            error = orjson.loads(raw)["error"]
        except (orjson.JSONDecodeError, KeyError, TypeError):
            error = raw[:200].decode(errors="replace").strip()
    if isinstance(error, dict):
        code = str(error.get("code") or "")
        message = str(error.get("message") or "")
        details = error.get("details")
    else:
        code, message, details = "", "" if error is None else str(error)[:200], None
    return ErrorAnswer(status, code, message, details)


# -- topic payloads -------------------------------------------------------------------------
def json_value(payload: Any) -> Any:
    """A payload as a JSON value: bytes as ``{"base64": ...}``, anything else as it is."""
    if isinstance(payload, bytes | bytearray | memoryview):
        return {"base64": data_to_text(bytes(payload))}
    return payload


def payload_to_json(data: bytes, fmt: Format) -> bytes:
    """A stored payload (encoded for ``fmt``) as the JSON text a produce request carries."""
    if fmt == "json":  # Format is a StrEnum: compared by value
        return data
    if fmt == "string":
        return orjson.dumps(data.decode())
    return b'{"base64":"' + base64.b64encode(data) + b'"}'


def payload_from_json(value: Any, fmt: Format) -> Any:
    """A produce request's payload as what ``Producer.produce`` takes for ``fmt``."""
    if fmt == "json" or isinstance(value, str):
        return value
    if isinstance(value, dict) and set(value) == {"base64"} and isinstance(value["base64"], str):
        try:
            return base64.b64decode(value["base64"], validate=True)
        except (binascii.Error, ValueError):
            raise Invalid("payload: 'base64' is not valid base64") from None
    raise Invalid(f"a {fmt.value} topic takes a string payload or {{\"base64\": \"...\"}}, "
                  f"not {type(value).__name__}")


def data_to_text(data: bytes) -> str:
    """The bytes of a ``bytes`` topic's message as the text a fetch answer carries (base64)."""
    return base64.b64encode(data).decode()


def data_from_text(text: str) -> bytes:
    """The bytes of a ``bytes`` topic's message from a fetch answer's text."""
    return base64.b64decode(text)


__all__ = [
    "API_PREFIX",
    "ERRORS",
    "TRANSIENT_STATUSES",
    "ErrorAnswer",
    "WireError",
    "answer_for",
    "code_for_status",
    "data_from_text",
    "data_to_text",
    "error_class",
    "json_value",
    "payload_from_json",
    "payload_to_json",
    "read_error",
]
