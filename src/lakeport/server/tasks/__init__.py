"""Tasks: deploy code, run it now, at a time or on a cron schedule, on workers that claim runs
over HTTP. See docs/server/tasks.md.

The routes are thin; the run state machine is :mod:`.service`, the scheduler (firing
schedules, marking silent workers' runs lost, filing logs) :mod:`.scheduler`.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import APIRouter, FastAPI

from lakeport.server.store.users import User, ensure_user
from lakeport.server.tasks import routes_projects, routes_runs, routes_tasks, routes_workers
from lakeport.server.tasks.filing import file_logs, forget_filed_chunks
from lakeport.server.tasks.lakefiles import SYSTEM_USER
from lakeport.server.tasks.local_workers import local_workers
from lakeport.server.tasks.scheduler import Scheduler
from lakeport.server.tasks.wakeup import Wakeup

log = logging.getLogger("lakeport.server.tasks")
FORGET_EVERY = 60.0
"""Seconds between clean-ups of log chunks already filed in the lake."""

router = APIRouter()
router.include_router(routes_projects.router)
router.include_router(routes_tasks.router)
router.include_router(routes_runs.router)
router.include_router(routes_workers.router)


@asynccontextmanager
async def lifespan(app: FastAPI) -> AsyncIterator[None]:
    """Run the scheduler (and log filing) while the server runs."""
    state = app.state
    store, lake = state.store, state.files_lake
    found = await ensure_user(store, SYSTEM_USER)
    state.tasks_system_user = system = User(found.id, found.name, admin=True)
    state.tasks_wakeup = wakeup = Wakeup()
    state.tasks_workers_seen = {}
    forgotten = [time.monotonic()]

    async def file_now() -> None:
        try:
            await file_logs(store, lake, system)
            if time.monotonic() - forgotten[0] > FORGET_EVERY:
                forgotten[0] = time.monotonic()
                await forget_filed_chunks(store)
        except Exception:  # filed on a later tick
            log.exception("filing task logs failed")

    settings = state.settings
    scheduler = Scheduler(store, notify=wakeup.notify, file_logs=file_now,
                          lost_after=settings.task_lost_after)
    state.tasks_scheduler = scheduler
    running = asyncio.create_task(scheduler.run())
    try:
        async with local_workers(settings, store):
            yield
    finally:
        running.cancel()
        with contextlib.suppress(asyncio.CancelledError, Exception):
            await running


__all__ = ["lifespan", "router"]
