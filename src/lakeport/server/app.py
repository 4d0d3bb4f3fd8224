"""The lakeport server: one FastAPI app with a router per service.

Each service is a package (``observations``, ``files``, ``topics``) exposing ``router`` (mounted
under ``/api/v1``) and ``lifespan`` (None, or an async context manager factory taking the app,
entered once the store and the topic engine are open).
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager
from types import ModuleType

from fastapi import FastAPI

from lakeport import __version__
from lakeport.allocator import keep_freed_memory
from lakeport.server import (
    errors,
    files,
    grants,
    health,
    limits,
    observations,
    openapi_links,
    query_params,
    routing,
    tasks,
    topics,
    workflows,
)
from lakeport.server.auth import KeyCache
from lakeport.server.responses import JSONResponse
from lakeport.server.settings import ServerSettings
from lakeport.server.store import Store
from lakeport.streams import open_engine
from lakeport.wire import API_PREFIX

SERVICES: list[ModuleType] = [observations, files, topics, grants, tasks, workflows, routing]


def create_app(settings: ServerSettings | None = None) -> FastAPI:
    """The server app for ``settings`` (defaults under the lakeport home)."""
    settings = settings or ServerSettings()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        keep_freed_memory()  # request bodies of megabytes: 3x faster uploads
        async with AsyncExitStack() as stack:
            app.state.settings = settings
            app.state.store = await stack.enter_async_context(Store(settings.store_url))
            app.state.key_cache = KeyCache()
            app.state.engine = await stack.enter_async_context(open_engine(settings.streams_url))
            for service in SERVICES:
                if service.lifespan is not None:
                    await stack.enter_async_context(service.lifespan(app))
            yield

    app = FastAPI(
        title="lakeport",
        version=__version__,
        description="Sensor observations, data-lake files, topics, tasks, workflows, rules and "
                    "bridges over HTTP. Every route but /health needs an API key in the "
                    "x-api-key header.",
        lifespan=lifespan,
        default_response_class=JSONResponse,
    )
    errors.install(app)
    limits.install(app, API_PREFIX)
    query_params.install(app)
    app.include_router(health.router)
    app.include_router(health.api, prefix=API_PREFIX)
    for service in SERVICES:
        app.include_router(service.router, prefix=API_PREFIX)
    openapi_links.install(app, API_PREFIX)
    return app


__all__ = ["API_PREFIX", "SERVICES", "create_app"]
