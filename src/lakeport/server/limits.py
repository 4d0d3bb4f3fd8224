"""Request body limits of the API routes, checked after the API key and before any parsing.

An ASGI middleware for HTTP requests under ``/api/v1``: it authenticates ``x-api-key`` first
(401 without reading the body; the user goes to ``scope["state"]["user"]`` for
:func:`~lakeport.server.auth.current_user`), then answers 413 at once when Content-Length is
over the route's limit, and counts streamed bytes otherwise: once over, it answers 413 itself
and the handler's next read raises :class:`~lakeport.errors.TooLarge` (never a truncated body).
"""

from __future__ import annotations

import logging
from typing import Any

from starlette.requests import ClientDisconnect
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from lakeport.errors import LakeportError, TooLarge
from lakeport.server.auth import HEADER, authenticate
from lakeport.server.errors import error_response
from lakeport.server.settings import MiB, ServerSettings
from lakeport.wire import API_PREFIX

log = logging.getLogger("lakeport.server")


def body_limit(method: str, path: str, settings: ServerSettings,
               prefix: str = API_PREFIX) -> tuple[int, str]:
    """The body limit of a request, and the setting and ``lakeport serve`` option it comes from."""
    if method in ("PUT", "POST") and (path.startswith(f"{prefix}/files/") or (
            path.startswith(f"{prefix}/tasks/") and method == "PUT")):
        return settings.max_upload_bytes, "max_upload_bytes, lakeport serve --max-upload"
    if path.startswith(f"{prefix}/tasks/attempts/") and "/logs/" in path:
        return 4 * MiB, "a log chunk is at most 4 MiB"
    if path == f"{prefix}/observations/csv":
        return settings.max_csv_bytes, "max_csv_bytes, lakeport serve --max-csv"
    return settings.max_body_bytes, "max_body_bytes, lakeport serve --max-body"


def _header(scope: Scope, name: bytes) -> bytes | None:
    for key, value in scope["headers"]:
        if key == name:
            return value
    return None


async def _answer(scope: Scope, send: Send, exc: LakeportError) -> None:
    await error_response(exc)(scope, _no_body, send)


async def _no_body() -> Message:
    return {"type": "http.disconnect"}


class BodyLimits:
    """The middleware for the routes under ``prefix``."""

    def __init__(self, app: ASGIApp, prefix: str) -> None:
        self.app = app
        self.prefix = prefix

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        path: str = scope.get("path", "")
        if scope["type"] != "http" or not (path == self.prefix or
                                           path.startswith(self.prefix + "/")):
            await self.app(scope, receive, send)
            return
        state = scope["app"].state
        key = _header(scope, HEADER.encode())
        try:
            user = await authenticate(state.store, state.key_cache,
                                      key.decode("latin-1") if key else None)
        except LakeportError as exc:
            await _answer(scope, send, exc)
            return
        scope.setdefault("state", {})["user"] = user
        limit, where = body_limit(scope["method"], path, state.settings, self.prefix)
        declared = _header(scope, b"content-length")
        if declared is not None and declared.isdigit() and int(declared) > limit:
            await _answer(scope, send, TooLarge(
                f"request body of {int(declared)} bytes is over the limit {limit} bytes "
                f"({where})"))
            return
        await _Counted(self.app, limit, where)(scope, receive, send)


class _Counted:
    """One request whose body is counted as it streams in."""

    def __init__(self, app: ASGIApp, limit: int, where: str) -> None:
        self.app = app
        self.limit = limit
        self.where = where
        self.received = 0
        self.started = False  # a response began (the app's or ours)
        self.answered = False  # ours: the app's own answer is dropped

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        async def counted_receive() -> Message:
            if self.received > self.limit:
                raise self._error()
            message = await receive()
            if message["type"] == "http.request":
                self.received += len(message.get("body", b""))
                if self.received > self.limit:
                    if not self.started:
                        self.started = self.answered = True
                        await _answer(scope, send, self._error())
                    raise self._error()
            return message

        async def guarded_send(message: Message) -> None:
            if self.answered:
                return
            if message["type"] == "http.response.start":
                self.started = True
            await send(message)

        try:
            await self.app(scope, counted_receive, guarded_send)
        except ClientDisconnect:
            # the body was cut (the client left, or the HTTP layer answered a broken body
            # with 400 and closed): nobody is left to answer
            log.debug("%s %s: the request body was cut", scope["method"], scope["path"])
        except Exception as exc:
            if not self.answered:
                raise
            log.debug("%s %s after its 413: %r", scope["method"], scope["path"], exc)

    def _error(self) -> TooLarge:
        return TooLarge(f"request body over the limit {self.limit} bytes ({self.where})")


def install(app: Any, prefix: str) -> None:
    """Add the middleware for the routes under ``prefix`` to ``app`` (outside the routes'
    exception handlers, inside the handler of unexpected errors)."""
    app.add_middleware(BodyLimits, prefix=prefix)


__all__ = ["BodyLimits", "body_limit", "install"]
