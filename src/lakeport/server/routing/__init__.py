"""Routing on the server: rules (a statement over a topic and its actions) and bridges
(between a broker and a topic) kept in the store and run inside ``lakeport serve`` on the
server's engine. See docs/server/routing.md.

The routes are thin; what runs is :mod:`.manager` (started with the server, on one server at
a time), with the owner's rights (:mod:`.access`); secrets given over the API go to the
server's secret store (:mod:`.secret_fields`).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import APIRouter, FastAPI

from lakeport.apps.secrets import SecretStore
from lakeport.server.routing import routes_bridges, routes_rules
from lakeport.server.routing.manager import Manager

router = APIRouter()
router.include_router(routes_rules.router)
router.include_router(routes_bridges.router)


@asynccontextmanager
async def lifespan(app: FastAPI) -> AsyncIterator[None]:
    """Run the rules and bridges while the server runs; stop them all cleanly at the end."""
    state = app.state
    state.routing_secrets = SecretStore()
    state.routing = manager = Manager(state.store, state.engine, state.observations)
    running = asyncio.create_task(manager.run(), name="routing-manager")
    try:
        yield
    finally:
        running.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await running


__all__ = ["lifespan", "router"]
