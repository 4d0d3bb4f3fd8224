"""``GET /health/live`` and ``GET /health/ready`` for container probes.

``/health/live`` answers 200 while the process serves requests; ``/health/ready`` answers
200 once the app is connected to its topics and 503 otherwise. Any other path is 404.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable

import orjson

logger = logging.getLogger("lakeport.apps")

_REASONS = {200: "OK", 400: "Bad Request", 404: "Not Found", 405: "Method Not Allowed",
            503: "Service Unavailable"}


class HealthServer:
    """A tiny HTTP/1.1 responder on ``host:port`` (port 0 picks a free port)."""

    def __init__(self, port: int, ready: Callable[[], bool], host: str = "0.0.0.0",
                 name: str = "app") -> None:
        self.host = host
        self.requested_port = port
        self.ready = ready
        self.name = name
        self._server: asyncio.Server | None = None

    @property
    def port(self) -> int | None:
        """The bound port once started."""
        if self._server is None or not self._server.sockets:
            return None
        return self._server.sockets[0].getsockname()[1]

    async def start(self) -> None:
        if self._server is None:
            self._server = await asyncio.start_server(self._serve, self.host, self.requested_port)
            logger.info("app %s: health endpoints on http://%s:%s/health/live and /health/ready",
                        self.name, self.host, self.port)

    async def stop(self) -> None:
        server, self._server = self._server, None
        if server is not None:
            server.close()
            with contextlib.suppress(Exception):
                await asyncio.wait_for(server.wait_closed(), 2)

    def answer(self, method: str, path: str) -> tuple[int, dict[str, str]]:
        """Status and JSON body for one request."""
        path = path.split("?", 1)[0]
        if path not in ("/health/live", "/health/ready"):
            return 404, {"error": f"no such path {path}: use /health/live or /health/ready"}
        if method not in ("GET", "HEAD"):
            return 405, {"error": f"method {method} not allowed: use GET"}
        if path == "/health/live":
            return 200, {"status": "live"}
        if self.ready():
            return 200, {"status": "ready"}
        return 503, {"status": "not ready"}

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            request = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 5)
            parts = request.split(b"\r\n", 1)[0].decode("latin-1").split()
            if len(parts) == 3:
                status, body = self.answer(parts[0], parts[1])
                method = parts[0]
            else:
                status, body, method = 400, {"error": "bad request line"}, "GET"
            data = orjson.dumps(body)
            head = (
                f"HTTP/1.1 {status} {_REASONS[status]}\r\n"
                "Content-Type: application/json\r\n"
                f"Content-Length: {len(data)}\r\n"
                "Connection: close\r\n\r\n"
            ).encode()
            writer.write(head if method == "HEAD" else head + data)
            await writer.drain()
        except (TimeoutError, asyncio.IncompleteReadError, asyncio.LimitOverrunError,
                ConnectionError):
            pass
        finally:
            writer.close()
            with contextlib.suppress(Exception):
                await writer.wait_closed()
