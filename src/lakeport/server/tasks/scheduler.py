"""The scheduler inside ``lakeport serve``: turns delayed and cron schedules into queued runs,
marks runs whose worker went silent ``lost``, and files the logs of ended attempts.

One server leads at a time: on PostgreSQL the one holding an advisory lock (taken over by
another server within a tick when its holder dies), on SQLite the only server. Firing is safe
to repeat anyway: a slot is a unique (task, slot) row.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import time
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy import Connection

from lakeport.server.store import Store
from lakeport.server.store.leader import AdvisoryLock
from lakeport.server.store.schema import now_ms
from lakeport.server.tasks import service
from lakeport.server.tasks.tables import tasks
from lakeport.tasks.schedule import At, Cron, Now, due_slots, next_slot, validate_at
from lakeport.tasks.spec import TaskSpec

log = logging.getLogger("lakeport.server.tasks")
LOCK_KEY = 0x1A4E_7A5C
"""The PostgreSQL advisory lock the leading scheduler holds."""
BATCH = 500
"""Tasks fired per store transaction (each batch commits, so others write in between)."""


def _ms(when: datetime) -> int:
    return int(when.timestamp() * 1000)


def _time(ms: int) -> datetime:
    return datetime.fromtimestamp(ms / 1000, UTC)


def schedule_columns(spec: TaskSpec, now: int) -> dict[str, Any]:
    """The scheduling columns of a task (re)scheduled at ``now``; Invalid for a delayed time
    in the past."""
    return columns_for(spec.schedule, now)


def columns_for(schedule: Now | At | Cron, now: int) -> dict[str, Any]:
    """The scheduling columns (``next_fire_ms``, ``fired_until_ms``, ``fired``, ``state``) of
    a schedule set at ``now``: a task's, or a workflow's cron trigger."""
    if isinstance(schedule, At):
        at = validate_at(schedule, _time(now))
        return {"next_fire_ms": _ms(at), "fired_until_ms": None, "fired": 0, "state": "active"}
    if isinstance(schedule, Cron):
        upcoming = next_slot(schedule, _time(now))
        return {"next_fire_ms": None if upcoming is None else _ms(upcoming),
                "fired_until_ms": now, "fired": 0,
                "state": "active" if upcoming is not None else "done"}
    return {"next_fire_ms": None, "fired_until_ms": None, "fired": 0, "state": "active"}


@functools.lru_cache(maxsize=4096)
def _spec(text: str) -> TaskSpec:
    return TaskSpec.model_validate_json(text)


@functools.lru_cache(maxsize=4096)
def _due(schedule: Cron, last_ms: int | None, now: int) -> tuple[int, ...]:
    """The due slots of a schedule (every task of one expression, zone and window shares
    them: computed once per batch)."""
    last = None if last_ms is None else _time(last_ms)
    return tuple(_ms(slot) for slot in due_slots(schedule, last, _time(now)))


@functools.lru_cache(maxsize=4096)
def _upcoming(schedule: Cron, now: int) -> int | None:
    upcoming = next_slot(schedule, _time(now))
    return None if upcoming is None else _ms(upcoming)


def cron_step(schedule: Cron, fired_until_ms: int | None, fired: int, now: int
              ) -> tuple[tuple[int, ...], dict[str, Any]]:
    """The slots of ``schedule`` due at ``now`` after the window handled up to
    ``fired_until_ms`` (at most what its ``limit`` leaves after ``fired``), and its
    scheduling columns once they are fired (``state`` ``done`` when the limit is reached or
    no slot comes any more)."""
    slots = _due(schedule, fired_until_ms, now)
    if schedule.limit:
        slots = slots[:max(schedule.limit - fired, 0)]
    fired += len(slots)
    if schedule.limit and fired >= schedule.limit:
        return slots, {"next_fire_ms": None, "fired": fired, "state": "done",
                       "fired_until_ms": slots[-1] if slots else now}
    upcoming = _upcoming(schedule, now)
    return slots, {"next_fire_ms": upcoming, "fired": fired, "fired_until_ms": now,
                   "state": "active" if upcoming is not None else "done"}


def fire_due(conn: Connection, dialect: str, now: int) -> tuple[int, bool]:
    """Queue the runs of the schedules due at ``now``, up to :data:`BATCH` tasks, in a few
    statements; (the number of runs queued, whether more tasks may be due)."""
    rows = conn.execute(sa.select(tasks).where(
        tasks.c.next_fire_ms <= now, tasks.c.state == "active")
        .order_by(tasks.c.next_fire_ms).limit(BATCH)).all()
    fresh: list[dict[str, Any]] = []
    changes: list[dict[str, Any]] = []
    for row in rows:
        schedule = _spec(row.spec).schedule
        change: dict[str, Any] = {"next_fire_ms": None, "fired": row.fired,
                                  "fired_until_ms": row.fired_until_ms, "state": row.state}
        slots: tuple[int, ...] = ()
        if isinstance(schedule, At):
            slots = (row.next_fire_ms,)
            change.update(fired=row.fired + 1, state="done")
        elif isinstance(schedule, Cron):
            slots, moved = cron_step(schedule, row.fired_until_ms, row.fired, now)
            change.update(moved)
        trigger = "at" if isinstance(schedule, At) else "cron"
        fresh.extend(service.run_values(row, trigger, now, slot_ms=slot) for slot in slots)
        changes.append({"task": row.id, "seen_version": row.version, **change})
    queued = service.queue_runs(conn, dialect, fresh, now)
    if changes:
        conn.execute(tasks.update().where(
            tasks.c.id == sa.bindparam("task"),
            tasks.c.version == sa.bindparam("seen_version")), changes)
    return queued, len(rows) == BATCH


class Scheduler:
    """The loop: every ``interval`` seconds, when leading, fire due schedules, mark silent
    attempts lost after ``lost_after`` seconds (once it has led that long itself), file
    ended attempts' logs, and run the other :attr:`jobs`."""

    def __init__(self, store: Store, *, notify: Callable[[int], None],
                 file_logs: Callable[[], Awaitable[None]],
                 lost_after: float = 30.0, interval: float = 0.5) -> None:
        self.store = store
        self.notify = notify
        self.file_logs = file_logs
        self.lost_after = lost_after
        self.interval = interval
        self._leader = AdvisoryLock(store, LOCK_KEY, "leads the task scheduler")
        self._leading_since: float | None = None
        self.jobs: list[Callable[[], Awaitable[None]]] = []
        """More work of the leading server, each tick (the workflows' triggers)."""

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
        more = True
        dialect = self.store.dialect
        while more:  # a batch at a time, each its own commit, until nothing is due; each
            # batch's runs are created at its own time (what a run's created time tells)
            fired, more = await self.store.transact(
                lambda conn: fire_due(conn, dialect, now_ms()))
            if fired:
                self.notify(fired)
        lost, queued = await self.store.transact(lambda conn: (service.mark_lost(
            conn, now - int(self.lost_after * 1000), now), service.queued_by_hooks(conn))
        ) if judging else ([], 0)
        if lost or queued:
            self.notify(len(lost) + queued)
        await self.file_logs()
        for job in self.jobs:
            await job()

    async def _lead(self) -> bool:
        held = await self._leader.held()
        if not held:
            self._leading_since = None
        return held

    async def _drop_lock(self) -> None:
        self._leading_since = None
        await self._leader.release()


__all__ = ["BATCH", "LOCK_KEY", "Scheduler", "columns_for", "cron_step", "fire_due",
           "schedule_columns"]
