"""Sensor observations (modelled after OGC SensorThings): features of interest, sensors,
observed properties, datastreams binding them, and observations; the recorder that stores
topics of sensor readings. See docs/server/observations.md."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import APIRouter, FastAPI

from lakeport.errors import Closed, NotFound
from lakeport.server.observations import ingest, query, removal, resources
from lakeport.server.observations.recorder import record
from lakeport.server.observations.writer import ServiceState
from lakeport.server.topics.producers import Producers

router = APIRouter(tags=["observations"])
router.include_router(resources.router)
router.include_router(ingest.router)
router.include_router(query.router)
router.include_router(removal.router)


@asynccontextmanager
async def lifespan(app: FastAPI) -> AsyncIterator[None]:
    """Keep the datastream cache and the producers; run a recorder per ``record_topics``."""
    state = ServiceState(Producers(app.state.engine, on_no_exists="create",
                                   retry_on=(Closed, NotFound)))
    app.state.observations = state
    tasks = [asyncio.create_task(record(app.state.engine, app.state.store, state, topic),
                                 name=f"recorder:{topic}")
             for topic in app.state.settings.record_topics]
    try:
        yield
    finally:
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        await state.producers.close()


__all__ = ["lifespan", "router"]
