"""Sensor observations (modelled after OGC SensorThings): features of interest, sensors,
observed properties, datastreams binding them, and observations; the recorder that stores
topics of sensor readings. See docs/server/observations.md."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import APIRouter, FastAPI

from lakeport.server.observations import ingest, query, resources
from lakeport.server.observations.recorder import RecorderStats, record
from lakeport.server.observations.writer import Publisher, ServiceState

router = APIRouter(tags=["observations"])
router.include_router(resources.router)
router.include_router(ingest.router)
router.include_router(query.router)


@asynccontextmanager
async def lifespan(app: FastAPI) -> AsyncIterator[None]:
    """Keep the datastream cache and the producers; run a recorder per ``record_topics``."""
    state = ServiceState(publisher=Publisher(app.state.engine))
    app.state.observations = state
    tasks = []
    for topic in app.state.settings.record_topics:
        stats = RecorderStats(topic)
        state.recorders.append(stats)
        tasks.append(asyncio.create_task(
            record(app.state.engine, app.state.store, state, stats),
            name=f"recorder:{topic}"))
    try:
        yield
    finally:
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        assert state.publisher is not None
        await state.publisher.close()


__all__ = ["lifespan", "router"]
