"""Topics over the network: admin and produce over HTTP; consume, publish and subscribe by
pattern over WebSockets.

The ``http(s)://`` engine of :mod:`lakeport.streams` (``lakeport.streams.remote``) speaks this
API, so an app on another machine uses the server's topics like local ones.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import APIRouter, FastAPI

from lakeport.forward.service import forwarding
from lakeport.server.topics import blocks, routes, socket, socket_publish, socket_subscribe
from lakeport.server.topics.producers import Producers

router = APIRouter()
router.include_router(routes.router)
router.include_router(blocks.router)
router.include_router(socket.router)
router.include_router(socket_publish.router)
router.include_router(socket_subscribe.router)


@asynccontextmanager
async def lifespan(app: FastAPI) -> AsyncIterator[None]:
    """Keep produce requests' producers open between requests; close them at shutdown.
    Run the forwarders of the settings beside the server."""
    app.state.topic_producers = producers = Producers(app.state.engine)
    async with forwarding(app.state.engine, app.state.settings.forward):
        try:
            yield
        finally:
            await producers.close()


__all__ = ["lifespan", "router"]
