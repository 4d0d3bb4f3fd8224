"""Workflows: tasks of the task service combined into one process that runs them in sequence
or in parallel, recovers, and keeps its history. See docs/server/workflows.md.

The routes are thin; how an instance moves on is :mod:`.instances` (on the pure functions of
:mod:`lakeport.workflows.progress`), driven by the task service's run ends in the same
transaction; the triggers (cron, files landing, topic messages) run in the task scheduler's
loop, so one server leads them.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import APIRouter, FastAPI

from lakeport.server.tasks import service
from lakeport.server.workflows import routes_instances, routes_workflows, triggers
from lakeport.server.workflows.instances import run_ended

log = logging.getLogger("lakeport.server.workflows")

router = APIRouter()
router.include_router(routes_workflows.router)
router.include_router(routes_instances.router)
service.on_run_end(run_ended)


@asynccontextmanager
async def lifespan(app: FastAPI) -> AsyncIterator[None]:
    """Fire the workflows' triggers in the task scheduler's loop while the server runs."""
    state = app.state
    store, wakeup, engine = state.store, state.tasks_wakeup, state.engine

    swept = [0.0]

    async def fire_triggers() -> None:
        try:
            await triggers.fire(store, engine, wakeup.notify, swept)
        except Exception:  # tried again next tick
            log.exception("firing workflow triggers failed")

    jobs = state.tasks_scheduler.jobs
    jobs.append(fire_triggers)
    try:
        yield
    finally:
        jobs.remove(fire_triggers)


__all__ = ["lifespan", "router"]
