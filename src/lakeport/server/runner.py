"""Run the server inside another asyncio program (``lakeport demo``), which keeps its own
signal handling, until an event is set."""

from __future__ import annotations

import asyncio
import contextlib
import socket
from collections.abc import Iterator

import uvicorn

from lakeport.errors import Unavailable
from lakeport.server.app import create_app
from lakeport.server.protocols import LimitedConfig
from lakeport.server.settings import ServerSettings


def check_port(host: str, port: int) -> None:
    """Unavailable, naming the address, when ``host:port`` cannot be listened on."""
    with socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((host, port))
        except OSError as exc:
            raise Unavailable(f"cannot listen on {host}:{port}: {exc.strerror or exc} "
                              "(another server there? use --port)") from None


def server_config(settings: ServerSettings, log_level: str = "error") -> uvicorn.Config:
    """How every lakeport server process runs uvicorn (``lakeport serve``, ``lakeport demo``,
    the tests' servers): the app of ``settings`` with the connection limits of
    :mod:`lakeport.server.protocols`."""
    return LimitedConfig(create_app(settings), host=settings.host, port=settings.port,
                         log_level=log_level, lifespan="on",
                         header_timeout=settings.header_timeout,
                         body_timeout=settings.body_timeout,
                         max_header_bytes=settings.max_header_bytes)


class _Server(uvicorn.Server):
    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield  # the host program handles signals


async def serve_until(settings: ServerSettings, stop: asyncio.Event,
                      started: asyncio.Event | None = None) -> None:
    """Serve until ``stop`` is set; ``started`` is set once requests are accepted.
    Unavailable when the port is taken."""
    check_port(settings.host, settings.port)
    server = _Server(server_config(settings))

    async def serve() -> None:
        try:
            await server.serve()
        except SystemExit:  # uvicorn exits when it cannot bind or start
            raise Unavailable(f"the server could not start on {settings.host}:"
                              f"{settings.port}") from None

    serving = asyncio.create_task(serve())
    try:
        while not server.started:
            if serving.done():
                serving.result()  # an error in the lifespan surfaces here
                raise Unavailable(f"the server could not listen on {settings.host}:"
                                  f"{settings.port} (is the port taken? use --port)")
            await asyncio.sleep(0.02)
        if started is not None:
            started.set()
        stop_waiter = asyncio.create_task(stop.wait())
        await asyncio.wait({serving, stop_waiter}, return_when=asyncio.FIRST_COMPLETED)
        stop_waiter.cancel()
    finally:
        server.should_exit = True
        with contextlib.suppress(asyncio.CancelledError, SystemExit):
            await serving


__all__ = ["check_port", "serve_until", "server_config"]
