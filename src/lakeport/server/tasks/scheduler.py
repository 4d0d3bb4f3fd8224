"""The scheduler inside ``lakeport serve``: turns delayed and cron schedules into queued runs,
marks runs whose worker went silent ``lost``, and files the logs of ended attempts.

One server leads at a time: on PostgreSQL the one holding an advisory lock (taken over by
another server within a tick when its holder dies), on SQLite the only server. Firing is safe
to repeat anyway: a slot is a unique (task, slot) row.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection

from lakeport.server.store import Store
from lakeport.server.store.schema import now_ms
from lakeport.server.tasks import service
from lakeport.server.tasks.tables import tasks
from lakeport.tasks.schedule import At, Cron, due_slots, next_slot, validate_at
from lakeport.tasks.spec import TaskSpec

log = logging.getLogger("lakeport.server.tasks")
LOCK_KEY = 0x1A4E_7A5C
"""The PostgreSQL advisory lock the leading scheduler holds."""
BATCH = 2000
"""Tasks fired per store transaction."""


def _ms(when: datetime) -> int:
    return int(when.timestamp() * 1000)


def _time(ms: int) -> datetime:
    return datetime.fromtimestamp(ms / 1000, UTC)


def schedule_columns(spec: TaskSpec, now: int) -> dict[str, Any]:
    """The scheduling columns of a task (re)scheduled at ``now``; Invalid for a delayed time
    in the past."""
    schedule = spec.schedule
    if isinstance(schedule, At):
        at = validate_at(schedule, _time(now))
        return {"next_fire_ms": _ms(at), "fired_until_ms": None, "fired": 0, "state": "active"}
    if isinstance(schedule, Cron):
        upcoming = next_slot(schedule, _time(now))
        return {"next_fire_ms": None if upcoming is None else _ms(upcoming),
                "fired_until_ms": now, "fired": 0,
                "state": "active" if upcoming is not None else "done"}
    return {"next_fire_ms": None, "fired_until_ms": None, "fired": 0, "state": "active"}


async def fire_due(conn: AsyncConnection, dialect: str, now: int) -> int:
    """Queue the runs of every schedule due at ``now`` (up to :data:`BATCH` tasks); the number
    of runs queued."""
    rows = (await conn.execute(sa.select(tasks).where(
        tasks.c.next_fire_ms <= now, tasks.c.state == "active")
        .order_by(tasks.c.next_fire_ms).limit(BATCH))).all()
    queued = 0
    for row in rows:
        spec = service.spec_of(row)
        schedule = spec.schedule
        values: dict[str, Any]
        if isinstance(schedule, At):
            if await service.queue_run(conn, dialect, row, "at", now, slot_ms=row.next_fire_ms):
                queued += 1
            values = {"next_fire_ms": None, "fired": row.fired + 1, "state": "done"}
        elif isinstance(schedule, Cron):
            last = None if row.fired_until_ms is None else _time(row.fired_until_ms)
            slots = due_slots(schedule, last, _time(now), row.fired)
            for slot in slots:
                if await service.queue_run(conn, dialect, row, "cron", now, slot_ms=_ms(slot)):
                    queued += 1
            fired = row.fired + len(slots)
            until = now
            if schedule.limit and fired >= schedule.limit:
                values = {"next_fire_ms": None, "state": "done"}
                until = _ms(slots[-1]) if slots else now
            else:
                upcoming = next_slot(schedule, _time(now))
                values = {"next_fire_ms": None if upcoming is None else _ms(upcoming),
                          "state": "active" if upcoming is not None else "done"}
            values.update(fired=fired, fired_until_ms=until)
        else:
            values = {"next_fire_ms": None}
        await conn.execute(tasks.update().where(tasks.c.id == row.id,
                                                tasks.c.version == row.version).values(**values))
    return queued


class Scheduler:
    """The loop: every ``interval`` seconds, when leading, fire due schedules, mark silent
    attempts lost after ``lost_after`` seconds (once it has led that long itself), and file
    ended attempts' logs."""

    def __init__(self, store: Store, *, notify: Callable[[], None],
                 file_logs: Callable[[], Awaitable[None]],
                 lost_after: float = 30.0, interval: float = 0.5) -> None:
        self.store = store
        self.notify = notify
        self.file_logs = file_logs
        self.lost_after = lost_after
        self.interval = interval
        self._lock: AsyncConnection | None = None
        self._leading_since: float | None = None

    async def run(self) -> None:
        try:
            while True:
                try:
                    if await self._lead():
                        await self.tick()
                except asyncio.CancelledError:
                    raise
                except Exception:  # the store went away a moment: try again next tick
                    log.exception("the task scheduler's tick failed")
                    await self._drop_lock()
                await asyncio.sleep(self.interval)
        finally:
            await self._drop_lock()

    async def tick(self) -> None:
        now = now_ms()
        if self._leading_since is None:
            self._leading_since = time.monotonic()
        # heartbeats could not arrive while no server led: give workers lost_after to
        # come back before calling any of their runs lost
        judging = time.monotonic() - self._leading_since >= self.lost_after
        async with self.store.begin() as conn:
            queued = await fire_due(conn, self.store.dialect, now)
            lost = await service.mark_lost(conn, now - int(self.lost_after * 1000), now) \
                if judging else []
        if queued or lost:
            self.notify()
        await self.file_logs()

    async def _lead(self) -> bool:
        if self.store.dialect != "postgresql":
            return True
        if self._lock is not None:
            try:
                await self._lock.execute(sa.text("SELECT 1"))
                return True
            except Exception:
                await self._drop_lock()
        conn = await self.store.engine.connect()
        try:
            got = (await conn.execute(sa.select(sa.func.pg_try_advisory_lock(LOCK_KEY)))
                   ).scalar()
            await conn.commit()
        except BaseException:
            await conn.close()
            raise
        if not got:
            await conn.close()
            return False
        self._lock = conn
        log.info("this server leads the task scheduler")
        return True

    async def _drop_lock(self) -> None:
        self._leading_since = None
        if self._lock is not None:
            with contextlib.suppress(Exception):
                await self._lock.close()
            self._lock = None


__all__ = ["BATCH", "LOCK_KEY", "Scheduler", "fire_due", "schedule_columns"]
