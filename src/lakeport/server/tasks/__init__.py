"""Tasks: deploy code, run it now, at a time or on a cron schedule, on workers that claim runs
over HTTP. See docs/server/tasks.md.

The routes are thin; the run state machine is :mod:`.service`, the scheduler (firing
schedules, marking silent workers' runs lost, filing logs) :mod:`.scheduler`.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import APIRouter, FastAPI

from lakeport.server.store.users import User, ensure_user
from lakeport.server.tasks import routes_projects, routes_runs, routes_tasks, routes_workers
from lakeport.server.tasks.filing import file_logs
from lakeport.server.tasks.lakefiles import SYSTEM_USER
from lakeport.server.tasks.local_workers import local_workers
from lakeport.server.tasks.scheduler import Scheduler
from lakeport.server.tasks.wakeup import Wakeup

log = logging.getLogger("lakeport.server.tasks")

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
    filing = asyncio.Lock()
    pending: set[asyncio.Task[None]] = set()

    async def file_now() -> None:
        if filing.locked():
            return
        async with filing:
            try:
                await file_logs(store, lake, system)
            except Exception:  # filed on a later tick
                log.exception("filing task logs failed")

    def file_soon() -> None:
        job = asyncio.create_task(file_now())
        pending.add(job)
        job.add_done_callback(pending.discard)

    state.tasks_file_logs = file_soon
    settings = state.settings
    scheduler = Scheduler(store, notify=wakeup.notify, file_logs=file_now,
                          lost_after=settings.task_lost_after)
    running = asyncio.create_task(scheduler.run())
    try:
        async with local_workers(settings, store):
            yield
    finally:
        running.cancel()
        for job in (running, *pending):
            job.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await job


__all__ = ["lifespan", "router"]
