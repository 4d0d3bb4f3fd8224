"""uvicorn's HTTP and WebSocket protocols with the server's connection limits.

:class:`HttpProtocol` (httptools) bounds a request's line and headers in bytes (431) and in
time (``header_timeout``: 408, closed), closes a request whose body stops arriving for
``body_timeout`` (408), answers the errors it finds itself (a malformed request
line, conflicting Content-Length headers, bad chunked encoding) with the JSON error body, and
after answering a request whose body is still coming it discards the rest for at most
:data:`LINGER_SECONDS` before it closes. :class:`WebSocketProtocol` answers a failed handshake
with the JSON error body, and lets the app wait until what it sent has left the server's
buffer (the ``lakeport.writable`` scope extension). :class:`LimitedConfig` is a
``uvicorn.Config`` that uses both.
"""

from __future__ import annotations

import asyncio
import sys
from typing import Any

import orjson
import uvicorn
from uvicorn.protocols.http.httptools_impl import STATUS_LINE, HttpToolsProtocol
from uvicorn.protocols.websockets.websockets_sansio_impl import WebSocketsSansIOProtocol

from lakeport.server.errors import error_body
from lakeport.wire import code_for_status

LINGER_SECONDS = 5.0
"""How long a connection may go on sending a body that was answered without reading it."""
WRITABLE = "lakeport.writable"
"""Scope extension of WebSockets: ``{"wait": coroutine function}``, returns once the
server's send buffer of the socket is (nearly) empty or the socket is gone."""


def error_json(status: int, message: str) -> bytes:
    """The JSON error body for ``status``."""
    return orjson.dumps(error_body(code_for_status(status), message))


class _Rejected(Exception):
    """Raised in a parser callback: answer ``status`` with ``message``."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


class LimitedConfig(uvicorn.Config):
    """A ``uvicorn.Config`` carrying the limits :class:`HttpProtocol` reads."""

    def __init__(self, app: Any, *, header_timeout: float, body_timeout: float,
                 max_header_bytes: int, **options: Any) -> None:
        super().__init__(app, http=HttpProtocol, ws=WebSocketProtocol, **options)
        self.header_timeout = header_timeout
        self.body_timeout = body_timeout
        self.max_header_bytes = max_header_bytes


class HttpProtocol(HttpToolsProtocol):
    """httptools with bounded request heads, a header-read timeout and JSON errors."""

    def __init__(self, config: uvicorn.Config, server_state: Any, app_state: dict[str, Any],
                 _loop: asyncio.AbstractEventLoop | None = None) -> None:
        super().__init__(config, server_state, app_state, _loop)
        self.header_timeout: float = getattr(config, "header_timeout", 10.0)
        self.body_timeout: float = getattr(config, "body_timeout", 60.0)
        self.max_header_bytes: int = getattr(config, "max_header_bytes", 64 << 10)
        self.in_head = True  # between requests or inside a request's line and headers
        self.head_received = 0  # bytes received while in_head (a head not parsed yet)
        self.head_parsed = 0  # bytes of the current head the parser handed over
        self.head_timer: asyncio.TimerHandle | None = None
        self.linger_timer: asyncio.TimerHandle | None = None
        self.body_timer: asyncio.TimerHandle | None = None
        self.body_seen = 0.0  # loop time of the last bytes of a request body

    # -- connection --------------------------------------------------------------------
    def connection_made(self, transport: asyncio.BaseTransport) -> None:  # type: ignore[override]
        super().connection_made(transport)  # type: ignore[arg-type]
        self._arm_head_timer()

    def connection_lost(self, exc: Exception | None) -> None:
        self._cancel_timers()
        super().connection_lost(exc)

    def data_received(self, data: bytes) -> None:
        if self.in_head:
            self.head_received += len(data)
        else:
            self.body_seen = self.loop.time()
        super().data_received(data)
        if (self.in_head and self.head_received > self.max_header_bytes
                and not self.transport.is_closing()):
            self.send_error(431, self._head_message())

    # -- parser callbacks --------------------------------------------------------------
    def on_message_begin(self) -> None:
        self.in_head = True
        self.head_parsed = 0
        if self.head_timer is None:
            self._arm_head_timer()
        super().on_message_begin()

    def on_url(self, url: bytes) -> None:
        self._count(len(url))
        super().on_url(url)

    def on_header(self, name: bytes, value: bytes) -> None:
        self._count(len(name) + len(value) + 4)
        super().on_header(name, value)

    def on_headers_complete(self) -> None:
        self.in_head = False
        self.head_received = 0
        if self.head_timer is not None:
            self.head_timer.cancel()
            self.head_timer = None
        self.body_seen = self.loop.time()
        if self.body_timer is None:
            self.body_timer = self.loop.call_later(self.body_timeout, self._body_timed_out)
        super().on_headers_complete()

    def on_message_complete(self) -> None:
        self.in_head = True
        self.head_received = 0
        if self.body_timer is not None:
            self.body_timer.cancel()
            self.body_timer = None
        if self.linger_timer is not None:  # the body ended: the connection can go on
            self.linger_timer.cancel()
            self.linger_timer = None
        super().on_message_complete()

    def on_response_complete(self) -> None:
        super().on_response_complete()
        cycle = self.cycle
        if (cycle is not None and cycle.more_body and self.linger_timer is None
                and not self.transport.is_closing()):
            # answered before the body was read (401, 413): discard it, but not forever
            self.linger_timer = self.loop.call_later(LINGER_SECONDS, self.transport.close)

    def handle_websocket_upgrade(self) -> None:
        self._cancel_timers()  # the connection is the WebSocket protocol's from now on
        super().handle_websocket_upgrade()

    # -- errors ------------------------------------------------------------------------
    def send_400_response(self, msg: str) -> None:
        """uvicorn calls this for parser errors (inside the ``except`` that caught them)."""
        exc = sys.exc_info()[1]
        cause = exc.__context__ if exc is not None else None
        if isinstance(cause, _Rejected):
            self.send_error(cause.status, cause.message)
            return
        detail = str(cause or exc or msg)[:200]
        self.send_error(400, f"invalid HTTP request: {detail}")

    def send_error(self, status: int, message: str) -> None:
        """Answer ``status`` with the JSON error body and close the connection."""
        self._cancel_timers()
        if self.transport.is_closing():
            return
        cycle = self.cycle
        if cycle is not None and not cycle.response_complete:
            if cycle.response_started:  # an answer is half sent: nothing else fits in
                self.transport.close()
                return
            cycle.disconnected = True  # the app's next read ends, its answer is dropped
            cycle.message_event.set()
        body = error_json(status, message)
        content = [STATUS_LINE[status]]
        for name, value in self.server_state.default_headers:
            content.extend([name, b": ", value, b"\r\n"])
        content.extend([b"content-type: application/json\r\n",
                        b"content-length: %d\r\n" % len(body), b"connection: close\r\n\r\n",
                        body])
        self.transport.write(b"".join(content))
        self.transport.close()

    # -- helpers -----------------------------------------------------------------------
    def _count(self, size: int) -> None:
        self.head_parsed += size
        if self.head_parsed > self.max_header_bytes:
            raise _Rejected(431, self._head_message())

    def _head_message(self) -> str:
        return (f"request line and headers over the limit {self.max_header_bytes} bytes "
                "(max_header_bytes)")

    def _arm_head_timer(self) -> None:
        self.head_timer = self.loop.call_later(self.header_timeout, self._head_timed_out)

    def _head_timed_out(self) -> None:
        self.head_timer = None
        if not self.in_head or self.transport.is_closing():
            return
        cycle = self.cycle
        if cycle is not None and not cycle.response_complete:
            self._arm_head_timer()  # an answer is on its way: the next head waits for it
            return
        if self.head_received == 0:
            self.transport.close()  # nothing was sent: nothing to answer
            return
        self.send_error(408, f"request line and headers not received within "
                             f"{self.header_timeout:g} s (header_timeout)")

    def _body_timed_out(self) -> None:
        """No bytes of the body for ``body_timeout`` seconds: 408 and closed (unless the
        server itself stopped reading because the app has not taken what came)."""
        self.body_timer = None
        if self.in_head or self.transport.is_closing():
            return
        quiet = self.loop.time() - self.body_seen
        if self.flow.read_paused or quiet < self.body_timeout:
            wait = self.body_timeout - quiet if quiet < self.body_timeout else self.body_timeout
            self.body_timer = self.loop.call_later(wait, self._body_timed_out)
            return
        cycle = self.cycle
        if cycle is not None and cycle.response_complete:
            self.transport.close()  # answered already: nothing more to say
            return
        self.send_error(408, f"request body stalled: no bytes for {self.body_timeout:g} s "
                             "(body_timeout)")

    def _cancel_timers(self) -> None:
        for timer in (self.head_timer, self.linger_timer, self.body_timer):
            if timer is not None:
                timer.cancel()
        self.head_timer = self.linger_timer = self.body_timer = None


class WebSocketProtocol(WebSocketsSansIOProtocol):
    """websockets (sans-I/O) with JSON error bodies on a refused handshake and the
    ``lakeport.writable`` extension."""

    def __init__(self, config: uvicorn.Config, server_state: Any, app_state: dict[str, Any],
                 _loop: asyncio.AbstractEventLoop | None = None) -> None:
        super().__init__(config, server_state, app_state, _loop)
        plain_reject = self.conn.reject

        def reject(status: Any, text: str) -> Any:
            response = plain_reject(status, text)
            body = error_json(response.status_code, text.strip() or response.reason_phrase)
            for name in ("Content-Type", "Content-Length"):
                del response.headers[name]
            response.headers["Content-Type"] = "application/json"
            response.headers["Content-Length"] = str(len(body))
            response.body = body
            return response

        self.conn.reject = reject  # type: ignore[method-assign]

    def handle_connect(self, event: Any) -> None:
        super().handle_connect(event)
        if self.response.status_code == 101:
            self.scope["extensions"][WRITABLE] = {"wait": self.writable.wait}  # type: ignore[index]


__all__ = ["LINGER_SECONDS", "WRITABLE", "HttpProtocol", "LimitedConfig", "WebSocketProtocol",
           "error_json"]
