"""Schedules of a task and the cron slots they fire at.

A schedule is one of :class:`Now` (a manual start), :class:`At` (a delayed task, one
instant) or :class:`Cron` (a cron expression read on the wall clock of a time zone).

Cron rules (all results are aware UTC datetimes, strictly increasing, no duplicates):

* The expression has five fields (``minute hour day month weekday``), or six with a seconds
  field first (``second minute hour day month weekday``, as Quartz and Spring write it), and
  is matched by ``croniter`` against LOCAL wall-clock times of the schedule's IANA zone; each
  matching local time is converted to UTC with ``zoneinfo``.
* A local time that does not exist (the spring forward gap, e.g. 02:30 in Berlin on the
  last Sunday of March) is skipped: it does not fire, not even later.
* A local time that happens twice (fall back) fires once, at its first occurrence
  (``fold=0``). The exception is an expression whose hour field matches every hour
  (``0 * * * *``, ``*/15 * * * *``): it asks for "every hour", so it also fires in the
  repeated hour and a fall-back day has 25 hourly slots (a spring-forward day 23).
* A slot is identified by its UTC instant. Firing each slot once is the store's job: a
  unique (task, slot) row makes a second scheduler or a restart a no-op. These functions
  only say which slots exist and which are due; they are pure and depend only on their
  arguments, so a window split in two yields exactly the slots of the whole window.
"""

from __future__ import annotations

import heapq
import re
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Annotated, Any, Literal
from zoneinfo import ZoneInfo

from croniter import CroniterBadDateError, CroniterError, croniter
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    TypeAdapter,
    ValidationError,
    field_validator,
)

from lakeport.errors import Invalid
from lakeport.tasks.times import parse_time, zone_info

__all__ = [
    "GRACE",
    "HORIZON",
    "TOLERANCE",
    "At",
    "Catchup",
    "Cron",
    "Now",
    "Schedule",
    "cron_slots",
    "due_slots",
    "next_slot",
    "parse_schedule",
    "validate_at",
]

#: How old the most recent missed slot may be and still fire under ``catchup="none"``.
GRACE = timedelta(seconds=60)
#: How far in the past an ``At`` time may be (clock skew, request latency) and still be taken.
TOLERANCE = timedelta(seconds=5)
#: How far ahead :func:`next_slot` looks before saying the expression never fires.
HORIZON = timedelta(days=5 * 366)
#: How far before ``after`` (local wall clock) the slot search starts: it must exceed the
#: largest backward clock change, so repeated local times are found.
_MARGIN = timedelta(hours=3)

Catchup = Literal["none", "latest", "all"]


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Now(_Model):
    """Started by hand, with ``parameters`` passed to the run."""

    kind: Literal["now"] = "now"
    parameters: dict[str, Any] = Field(default_factory=dict)


class At(_Model):
    """A delayed task: fires once at ``at`` (aware, normalised to UTC).

    ``at`` may be given as text in any form :func:`~lakeport.tasks.times.parse_time`
    accepts (ISO 8601 or ``dd-MM-yyyy HH:mm:ss.SSS IST``; no zone means UTC). Whether it
    lies in the past is checked by :func:`validate_at`, which needs the current time.
    """

    kind: Literal["at"] = "at"
    at: datetime

    @field_validator("at", mode="before")
    @classmethod
    def _parse(cls, value: Any) -> Any:
        if isinstance(value, str):
            try:
                return parse_time(value)
            except Invalid as exc:
                raise ValueError(str(exc)) from None
        if isinstance(value, datetime):
            if value.tzinfo is None or value.utcoffset() is None:
                raise ValueError("needs a time zone (an aware datetime)")
            return value.astimezone(UTC)
        return value


class Cron(_Model):
    """A recurrent task: ``expression`` read on the wall clock of ``timezone``.

    ``expression`` has the five standard fields (names like ``jan``/``mon``, lists, ranges
    and steps; a day of month and a weekday both given match when either does, as in
    cron), or six with a seconds field first (``*/10 * * * * *``: every ten seconds);
    croniter's random ``R`` and hashed ``H`` fields are refused, since a slot must be the
    same every time it is computed. ``timezone`` is an IANA name. ``limit`` is the
    number of runs after which the schedule stops (0 = forever); ``catchup`` says what
    happens to slots missed while no scheduler ran (see :func:`due_slots`).
    """

    kind: Literal["cron"] = "cron"
    expression: str
    timezone: str = "UTC"
    limit: int = 0
    catchup: Catchup = "none"

    @field_validator("expression")
    @classmethod
    def _expression(cls, value: str) -> str:
        value = " ".join(value.split())
        if len(value.split(" ")) not in (5, 6):
            raise ValueError(f"{value!r} needs five fields 'minute hour day month weekday' "
                             "(or six, with a seconds field first)")
        if re.search(r"\b[RrHh]\b", value):
            raise ValueError(f"{value!r}: random (R) and hashed (H) fields are not supported")
        try:
            _croniter(value, None)
        except (CroniterError, ValueError, KeyError) as exc:
            raise ValueError(f"cannot parse cron {value!r}: {exc}") from None
        return value

    @field_validator("timezone")
    @classmethod
    def _timezone(cls, value: str) -> str:
        try:
            zone_info(value)
        except Invalid as exc:
            raise ValueError(str(exc)) from None
        return value

    @field_validator("limit")
    @classmethod
    def _limit(cls, value: int) -> int:
        if value < 0:
            raise ValueError(f"must be >= 0 (0 = forever), not {value}")
        return value

    @property
    def zone(self) -> ZoneInfo:
        """The schedule's time zone."""
        return ZoneInfo(self.timezone)

    @property
    def every_hour(self) -> bool:
        """Whether the hour field matches all 24 hours (then repeated hours fire twice)."""
        hours = _croniter(self.expression, None).expanded[1]
        return hours == ["*"] or len(set(hours)) == 24


Schedule = Annotated[Now | At | Cron, Field(discriminator="kind")]
_SCHEDULE: TypeAdapter[Now | At | Cron] = TypeAdapter(Schedule)


def _one_line(exc: ValidationError) -> str:
    parts = []
    for error in exc.errors():
        where = ".".join(str(part) for part in error["loc"]) or "schedule"
        message = str(error["msg"]).removeprefix("Value error, ")
        parts.append(f"{where}: {message}")
    return "; ".join(parts)


def parse_schedule(data: Any) -> Now | At | Cron:
    """A schedule from a mapping with ``kind``; Invalid with one line naming the field."""
    try:
        return _SCHEDULE.validate_python(data)
    except ValidationError as exc:
        raise Invalid(f"bad schedule: {_one_line(exc)}") from None


def validate_at(at: At | datetime, now: datetime, tolerance: timedelta = TOLERANCE) -> datetime:
    """The instant of ``at`` if it is not before ``now - tolerance``; else Invalid."""
    instant = at.at if isinstance(at, At) else at
    if instant.tzinfo is None or now.tzinfo is None:
        raise Invalid("at: times must be time-zone aware")
    if instant < now - tolerance:
        raise Invalid(
            f"at: {instant.astimezone(UTC).isoformat()} is in the past "
            f"(now is {now.astimezone(UTC).isoformat()})"
        )
    return instant.astimezone(UTC)


def _aware(value: datetime, name: str) -> datetime:
    if value.tzinfo is None or value.utcoffset() is None:
        raise Invalid(f"{name} must be time-zone aware")
    return value.astimezone(UTC)


def _croniter(expression: str, start: datetime | None) -> croniter:
    """croniter for a five-field expression, or a six-field one with seconds first."""
    return croniter(expression, start, second_at_beginning=expression.count(" ") == 5)


def _offset_steady(zone: ZoneInfo, around: datetime) -> bool:
    """Whether ``zone``'s UTC offset is the same from :data:`_MARGIN` before ``around`` to
    :data:`_MARGIN` after it (no DST change nearby: local times near it map to UTC in order)."""
    offsets = {(around + step).astimezone(zone).utcoffset()
               for step in (-_MARGIN, timedelta(0), _MARGIN)}
    return len(offsets) == 1


def _naive_times(expression: str, start: datetime, end: datetime) -> Iterator[datetime]:
    """Naive local times matching ``expression``, strictly after ``start``, up to ``end``."""
    it = _croniter(expression, start)
    while True:
        try:
            local = it.get_next(datetime)
        except CroniterBadDateError:  # never matches again (e.g. February 30)
            return
        if local > end:
            return
        yield local


def _instants(cron: Cron, after: datetime, horizon: datetime) -> Iterator[datetime]:
    """Slots of ``cron`` strictly after ``after``, in order, while the local time < horizon."""
    zone = cron.zone
    twice = cron.every_hour
    # near a DST change a local time before after's can lie after it in UTC: look back then
    margin = timedelta(0) if _offset_steady(zone, after) else _MARGIN
    start = after.astimezone(zone).replace(tzinfo=None, fold=0) - margin
    end = horizon.astimezone(zone).replace(tzinfo=None) + _MARGIN
    pending: list[datetime] = []
    for local in _naive_times(cron.expression, start, end):
        first = local.replace(tzinfo=zone, fold=0).astimezone(UTC)
        second = local.replace(tzinfo=zone, fold=1).astimezone(UTC)
        if first.astimezone(zone).replace(tzinfo=None) != local:
            continue  # in a spring forward gap: skipped
        heapq.heappush(pending, first)
        if twice and second != first:
            heapq.heappush(pending, second)  # the repeated hour of an every-hour expression
        # Later local times map to instants >= first, so everything up to it is final.
        while pending and pending[0] <= first:
            instant = heapq.heappop(pending)
            if instant > after:
                yield instant
    while pending:
        instant = heapq.heappop(pending)
        if instant > after:
            yield instant


def cron_slots(cron: Cron, after: datetime, until: datetime) -> list[datetime]:
    """Slots of ``cron`` strictly after ``after`` and at or before ``until`` (UTC, in order).

    Adjacent windows ``(a, b]`` and ``(b, c]`` together give exactly the slots of
    ``(a, c]``, so a scheduler that records the end of each window neither repeats nor
    skips a slot across restarts.
    """
    after, until = _aware(after, "after"), _aware(until, "until")
    slots: list[datetime] = []
    if until <= after:
        return slots
    for instant in _instants(cron, after, until):
        if instant > until:
            break
        slots.append(instant)
    return slots


def next_slot(cron: Cron, after: datetime, horizon: timedelta = HORIZON) -> datetime | None:
    """The first slot strictly after ``after``; None if there is none within ``horizon``."""
    after = _aware(after, "after")
    end = after + horizon
    for instant in _instants(cron, after, end):
        return instant if instant <= end else None
    return None


def due_slots(
    cron: Cron, last_slot: datetime | None, now: datetime, fired: int = 0
) -> list[datetime]:
    """The slots a scheduler waking at ``now`` must fire, oldest first.

    ``last_slot`` is the end of the window already handled: the last slot recorded, or,
    for a new schedule, its creation time (pass that; None is taken as ``now - GRACE``,
    so a new schedule never fires a slot from before it existed beyond the grace window).
    The candidates are the slots in ``(last_slot, now]``; the missed ones follow
    ``cron.catchup``:

    * ``none``: only the most recent candidate, and only if it is at most :data:`GRACE`
      old; every older one is skipped.
    * ``latest``: the most recent candidate only, however old.
    * ``all``: every candidate, in order.

    With ``cron.limit > 0`` at most ``limit - fired`` slots are returned (the oldest
    ones), none once ``fired >= limit``. The caller records each returned slot as a
    unique (task, slot) row and then advances ``last_slot`` to ``now`` (or to the last
    returned slot when the limit cut the list); a second call with the same window
    returns the same slots, which the unique row turns into a no-op.
    """
    now = _aware(now, "now")
    start = now - GRACE if last_slot is None else _aware(last_slot, "last_slot")
    remaining = cron.limit - fired if cron.limit > 0 else None
    if remaining is not None and remaining <= 0:
        return []
    slots = cron_slots(cron, start, now)
    if not slots:
        return []
    if cron.catchup == "none":
        slots = [slots[-1]] if now - slots[-1] <= GRACE else []
    elif cron.catchup == "latest":
        slots = [slots[-1]]
    return slots if remaining is None else slots[:remaining]
