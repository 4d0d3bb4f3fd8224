"""Topics over the network: admin and produce over HTTP, consume over a WebSocket.

The ``http(s)://`` engine of :mod:`lakeport.streams` (``lakeport.streams.remote``) speaks this
API, so an app on another machine uses the server's topics like local ones.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import APIRouter, FastAPI

from lakeport.server.topics import routes, socket
from lakeport.server.topics.producers import Producers

router = APIRouter()
router.include_router(routes.router)
router.include_router(socket.router)


@asynccontextmanager
async def lifespan(app: FastAPI) -> AsyncIterator[None]:
    """Keep produce requests' producers open between requests; close them at shutdown."""
    app.state.topic_producers = producers = Producers(app.state.engine)
    try:
        yield
    finally:
        await producers.close()


__all__ = ["lifespan", "router"]
