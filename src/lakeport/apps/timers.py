"""Timers and cron schedules of an app: ``@app.timer(interval=...)``, ``@app.schedule(cron=...)``.

Timers tick on a fixed grid ``start + k * interval`` of the monotonic clock, so a slow
handler or a late wake-up does not shift later ticks (no drift), and ticks that were missed
while a handler ran long are skipped, not run back to back.
"""

from __future__ import annotations

import asyncio
import logging
import math
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from croniter import CroniterBadCronError, croniter

from lakeport.apps.handlers import call_handler
from lakeport.errors import Invalid
from lakeport.streams.types import parse_duration

logger = logging.getLogger("lakeport.apps")

Clock = Callable[[], float]
Sleep = Callable[[float], Awaitable[Any]]


def parse_interval(interval: str | float | timedelta) -> float:
    """Seconds of a timer interval (``10``, ``"500ms"``, ``"10s"``, ``"5m"``); must be > 0."""
    try:
        seconds = parse_duration(interval)
    except Invalid:
        seconds = 0.0
    if not seconds > 0 or math.isinf(seconds):
        raise Invalid(f"bad timer interval {interval!r}: use a number of seconds > 0 or "
                      "a duration like '500ms', '10s', '5m'")
    return seconds


def next_tick(start: float, interval: float, now: float) -> float:
    """The first grid point ``start + k * interval`` (k >= 1) later than ``now``."""
    k = max(1, math.floor((now - start) / interval) + 1)
    return start + k * interval


def parse_timezone(name: str | None) -> ZoneInfo:
    """The time zone named ``name`` (IANA, e.g. ``Europe/Berlin``); UTC when None."""
    try:
        return ZoneInfo(name or "UTC")
    except (ZoneInfoNotFoundError, ValueError):
        raise Invalid(
            f"unknown time zone {name!r}: use an IANA name like 'Europe/Berlin'"
        ) from None


def check_cron(cron: str) -> str:
    """``cron`` if it is a valid five-field cron expression, else Invalid."""
    if not isinstance(cron, str) or len(cron.split()) != 5 or not croniter.is_valid(cron):
        raise Invalid(
            f"bad cron expression {cron!r}: use five fields 'minute hour day month weekday', "
            "e.g. '*/5 * * * *'"
        )
    return cron


def next_cron_fire(cron: str, timezone: str | None, after: datetime) -> datetime:
    """The first time after ``after`` that ``cron`` fires, read in ``timezone`` (aware, that zone).

    ``after`` must be time-zone aware; ``0 9 * * *`` with ``Europe/Berlin`` is 09:00 Berlin
    time, summer or winter.
    """
    if after.tzinfo is None:
        raise Invalid("next_cron_fire needs a time-zone aware 'after' time")
    zone = parse_timezone(timezone)
    try:
        return croniter(check_cron(cron), after.astimezone(zone)).get_next(datetime)
    except CroniterBadCronError as exc:
        raise Invalid(f"bad cron expression {cron!r}: {exc}") from None


@dataclass(frozen=True)
class Timer:
    """A handler called every ``interval`` seconds."""

    handler: Callable[[], Any]
    interval: float

    @property
    def name(self) -> str:
        return getattr(self.handler, "__qualname__", repr(self.handler))

    async def run(self, clock: Clock = time.monotonic, sleep: Sleep = asyncio.sleep,
                  ticks: int | None = None) -> None:
        """Call the handler on the grid until cancelled (or ``ticks`` times, for tests)."""
        start = clock()
        due = start + self.interval
        done = 0
        while ticks is None or done < ticks:
            delay = due - clock()
            if delay > 0:
                await sleep(delay)
            await _call_logged(self.handler, f"timer {self.name}")
            done += 1
            due = next_tick(start, self.interval, max(clock(), due))


@dataclass(frozen=True)
class Schedule:
    """A handler called whenever a cron expression fires in a time zone."""

    handler: Callable[[], Any]
    cron: str
    timezone: str | None = None

    @property
    def name(self) -> str:
        return getattr(self.handler, "__qualname__", repr(self.handler))

    def next_fire(self, after: datetime) -> datetime:
        return next_cron_fire(self.cron, self.timezone, after)

    async def run(self, now: Callable[[], datetime] = lambda: datetime.now(UTC),
                  sleep: Sleep = asyncio.sleep) -> None:
        """Call the handler at every fire time until cancelled; missed fire times are skipped."""
        due = self.next_fire(now())
        while True:
            delay = (due - now()).total_seconds()
            if delay > 0:
                # wake up at least every minute: the wall clock may jump (NTP, suspend)
                await sleep(min(delay, 60.0))
                continue
            await _call_logged(self.handler, f"schedule {self.name} ({self.cron})")
            due = self.next_fire(max(now(), due))


async def _call_logged(handler: Callable[[], Any], what: str) -> None:
    try:
        await call_handler(handler, thread=True)
    except asyncio.CancelledError:
        raise
    except Exception:
        logger.exception("%s failed", what)
