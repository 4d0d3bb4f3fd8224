"""The scheduling core of the task service: schedule models, times, cron slots, DST, catch-up."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from functools import lru_cache
from itertools import pairwise
from zoneinfo import ZoneInfo

import pytest
from croniter import croniter
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

from lakeport.errors import Invalid
from lakeport.tasks import (
    GRACE,
    At,
    Cron,
    Now,
    cron_slots,
    due_slots,
    next_slot,
    parse_schedule,
    parse_time,
    validate_at,
)


def utc(*args: int) -> datetime:
    return datetime(*args, tzinfo=UTC)


def local_day(zone: str, year: int, month: int, day: int) -> tuple[datetime, datetime]:
    """The window (after, until] covering one local calendar day, [00:00, 24:00)."""
    tz = ZoneInfo(zone)
    start = datetime(year, month, day, tzinfo=tz).astimezone(UTC)
    end = (datetime(year, month, day, tzinfo=tz) + timedelta(days=1)).astimezone(UTC)
    return start - timedelta(seconds=1), end - timedelta(seconds=1)


# --- models ---------------------------------------------------------------------------------

def test_models_and_discriminated_union() -> None:
    assert parse_schedule({"kind": "now", "parameters": {"n": 1}}) == Now(parameters={"n": 1})
    at = parse_schedule({"kind": "at", "at": "2026-12-24T18:30:00+01:00"})
    assert isinstance(at, At) and at.at == utc(2026, 12, 24, 17, 30)
    assert at.at.tzinfo is UTC
    cron = parse_schedule({"kind": "cron", "expression": "0  9 * * 1-5",
                           "timezone": "Europe/Berlin", "limit": 3, "catchup": "all"})
    assert isinstance(cron, Cron)
    assert (cron.expression, cron.limit, cron.catchup) == ("0 9 * * 1-5", 3, "all")
    assert Cron(expression="0 9 * jan thu").expression == "0 9 * jan thu"
    default = Cron(expression="* * * * *")
    assert (default.timezone, default.limit, default.catchup) == ("UTC", 0, "none")
    aware = At(at=datetime(2026, 1, 1, 12, tzinfo=ZoneInfo("Asia/Kolkata")))
    assert aware.at == utc(2026, 1, 1, 6, 30)


@pytest.mark.parametrize(("data", "field"), [
    ({"kind": "cron", "expression": "61 * * * *"}, "cron.expression"),
    ({"kind": "cron", "expression": "* * *"}, "cron.expression"),
    ({"kind": "cron", "expression": "0 0 0 * * * *"}, "cron.expression"),
    ({"kind": "cron", "expression": "60 * * * * *"}, "cron.expression"),
    ({"kind": "cron", "expression": "every day"}, "cron.expression"),
    ({"kind": "cron", "expression": "R * * * *"}, "cron.expression"),
    ({"kind": "cron", "expression": "H(0-29) * * * *"}, "cron.expression"),
    ({"kind": "cron", "expression": "* * * * *", "timezone": "Mars/Olympus"}, "cron.timezone"),
    ({"kind": "cron", "expression": "* * * * *", "limit": -1}, "cron.limit"),
    ({"kind": "cron", "expression": "* * * * *", "catchup": "some"}, "cron.catchup"),
    ({"kind": "cron", "expression": "* * * * *", "every": 5}, "cron.every"),
    ({"kind": "at", "at": "tomorrow"}, "at.at"),
    ({"kind": "at", "at": datetime(2026, 1, 1)}, "at.at"),
    ({"kind": "later"}, "schedule"),
])
def test_bad_schedules_are_one_line_naming_the_field(data: dict, field: str) -> None:
    with pytest.raises(Invalid) as caught:
        parse_schedule(data)
    message = str(caught.value)
    assert "\n" not in message
    assert message.startswith(f"bad schedule: {field}: "), message


def test_models_forbid_extra_fields_and_validate_on_construction() -> None:
    with pytest.raises(ValidationError):
        Now(parameters={}, when="x")  # type: ignore[call-arg]
    with pytest.raises(ValidationError):
        Cron(expression="* * * * *", limit=-5)


# --- times ----------------------------------------------------------------------------------

@pytest.mark.parametrize(("text", "expected"), [
    ("24-12-2026 23:00:00.000 IST", utc(2026, 12, 24, 17, 30)),
    ("24-12-2026 23:00:00.250 ist", utc(2026, 12, 24, 17, 30, 0, 250000)),
    ("24-12-2026 23:00:00 IST", utc(2026, 12, 24, 17, 30)),
    ("24-12-2026 23:00:00.000 Asia/Kolkata", utc(2026, 12, 24, 17, 30)),
    ("24-12-2026 23:00:00.000 UTC", utc(2026, 12, 24, 23)),
    ("24-12-2026 23:00:00.000 GMT", utc(2026, 12, 24, 23)),
    ("24-12-2026 23:00:00.000 CET", utc(2026, 12, 24, 22)),
    ("24-06-2026 23:00:00.000 CEST", utc(2026, 6, 24, 21)),
    ("24-12-2026 23:00:00.000 Europe/Berlin", utc(2026, 12, 24, 22)),
    ("24-06-2026 23:00:00.000 Europe/Berlin", utc(2026, 6, 24, 21)),
    ("24-12-2026 23:00:00.000 EST", utc(2026, 12, 25, 4)),
    ("24-12-2026 23:00:00.000 PDT", utc(2026, 12, 25, 6)),
    ("24-12-2026 23:00:00.000 JST", utc(2026, 12, 24, 14)),
    ("24-12-2026 23:00:00.000 SGT", utc(2026, 12, 24, 15)),
    ("24-12-2026 23:00:00.000 AEST", utc(2026, 12, 24, 13)),
    ("24-12-2026 23:00:00.000", utc(2026, 12, 24, 23)),
    ("2026-12-24T18:30:00+01:00", utc(2026, 12, 24, 17, 30)),
    ("2026-12-24T17:30:00Z", utc(2026, 12, 24, 17, 30)),
    ("2026-12-24T17:30:00.123456+00:00", utc(2026, 12, 24, 17, 30, 0, 123456)),
    ("2026-12-24 17:30", utc(2026, 12, 24, 17, 30)),
    ("2026-12-24", utc(2026, 12, 24)),
])
def test_parse_time_forms(text: str, expected: datetime) -> None:
    parsed = parse_time(text)
    assert parsed == expected
    assert parsed.tzinfo is UTC


def test_parse_time_default_zone_and_dst() -> None:
    assert parse_time("2026-07-01T12:00", "Asia/Kolkata") == utc(2026, 7, 1, 6, 30)
    assert parse_time("01-07-2026 12:00:00.000", "Europe/Berlin") == utc(2026, 7, 1, 10)
    # a repeated local time is its first occurrence
    assert parse_time("2026-10-25T02:30", "Europe/Berlin") == utc(2026, 10, 25, 0, 30)
    with pytest.raises(Invalid, match="does not exist"):
        parse_time("2026-03-29T02:30", "Europe/Berlin")


@pytest.mark.parametrize(("text", "needle"), [
    ("tomorrow", "dd-MM-yyyy HH:mm:ss.SSS"),
    ("2026/12/24 10:00", "ISO 8601"),
    ("31-02-2026 10:00:00.000", "day is out of range"),
    ("24-12-2026 10:00:00.000 XYZ", "IST, CET"),
    ("24-12-2026 10:00:00.000 Mars/Olympus", "unknown time zone"),
])
def test_bad_times_are_one_line(text: str, needle: str) -> None:
    with pytest.raises(Invalid) as caught:
        parse_time(text)
    assert "\n" not in str(caught.value)
    assert needle in str(caught.value)


def test_at_in_the_past_is_refused() -> None:
    now = utc(2026, 12, 6, 12)
    at = At(at="06-12-2026 17:00:00.000 IST")  # 11:30 UTC
    with pytest.raises(Invalid, match=r"at: 2026-12-06T11:30:00\+00:00 is in the past"):
        validate_at(at, now)
    assert validate_at(now - timedelta(seconds=2), now) == now - timedelta(seconds=2)
    assert validate_at(At(at="2026-12-07T00:00:00Z"), now) == utc(2026, 12, 7)


# --- DST ------------------------------------------------------------------------------------

def test_daily_0230_berlin_skips_spring_forward_and_fires_once_on_fall_back() -> None:
    cron = Cron(expression="30 2 * * *", timezone="Europe/Berlin")
    assert cron_slots(cron, utc(2026, 3, 27, 12), utc(2026, 3, 31)) == [
        utc(2026, 3, 28, 1, 30), utc(2026, 3, 30, 0, 30)]
    assert cron_slots(cron, utc(2026, 10, 24, 12), utc(2026, 10, 27)) == [
        utc(2026, 10, 25, 0, 30), utc(2026, 10, 26, 1, 30)]


def test_daily_new_york_skips_spring_forward_and_fires_once_on_fall_back() -> None:
    spring = Cron(expression="30 2 * * *", timezone="America/New_York")
    assert cron_slots(spring, utc(2026, 3, 7, 0), utc(2026, 3, 10)) == [
        utc(2026, 3, 7, 7, 30), utc(2026, 3, 9, 6, 30)]
    fall = Cron(expression="30 1 * * *", timezone="America/New_York")  # 01:xx repeats in NY
    assert cron_slots(fall, utc(2026, 10, 31, 12), utc(2026, 11, 3)) == [
        utc(2026, 11, 1, 5, 30), utc(2026, 11, 2, 6, 30)]
    assert cron_slots(spring, utc(2026, 10, 31, 12), utc(2026, 11, 2)) == [utc(2026, 11, 1, 7, 30)]


@pytest.mark.parametrize(("zone", "day", "expected"), [
    ("Europe/Berlin", (2026, 3, 29),
     [utc(2026, 3, 29, 0), utc(2026, 3, 29, 0, 30), utc(2026, 3, 29, 1), utc(2026, 3, 29, 1, 30)]),
    ("Europe/Berlin", (2026, 10, 25),
     [utc(2026, 10, 24, 23), utc(2026, 10, 24, 23, 30), utc(2026, 10, 25, 0),
      utc(2026, 10, 25, 0, 30), utc(2026, 10, 25, 2), utc(2026, 10, 25, 2, 30)]),
    ("America/New_York", (2026, 3, 8),
     [utc(2026, 3, 8, 6), utc(2026, 3, 8, 6, 30), utc(2026, 3, 8, 7), utc(2026, 3, 8, 7, 30)]),
    ("America/New_York", (2026, 11, 1),
     [utc(2026, 11, 1, 5), utc(2026, 11, 1, 5, 30), utc(2026, 11, 1, 7), utc(2026, 11, 1, 7, 30),
      utc(2026, 11, 1, 8), utc(2026, 11, 1, 8, 30)]),
])
def test_half_hourly_between_1_and_3_around_transitions(
    zone: str, day: tuple[int, int, int], expected: list[datetime]
) -> None:
    cron = Cron(expression="*/30 1-3 * * *", timezone=zone)
    assert cron_slots(cron, *local_day(zone, *day)) == expected


@pytest.mark.parametrize(("zone", "day", "count"), [
    ("Europe/Berlin", (2026, 10, 25), 25),
    ("Europe/Berlin", (2026, 3, 29), 23),
    ("Europe/Berlin", (2026, 6, 1), 24),
    ("America/New_York", (2026, 11, 1), 25),
    ("America/New_York", (2026, 3, 8), 23),
])
def test_hourly_over_a_dst_day(zone: str, day: tuple[int, int, int], count: int) -> None:
    cron = Cron(expression="0 * * * *", timezone=zone)
    slots = cron_slots(cron, *local_day(zone, *day))
    assert len(slots) == len(set(slots)) == count
    assert all(b - a == timedelta(hours=1) for a, b in pairwise(slots))


def test_window_starting_inside_the_repeated_hour() -> None:
    cron = Cron(expression="*/15 * * * *", timezone="Europe/Berlin")
    # after = 02:45 CEST, the first pass; the second pass 02:00-02:45 CET is still to come
    assert cron_slots(cron, utc(2026, 10, 25, 0, 45), utc(2026, 10, 25, 1, 45)) == [
        utc(2026, 10, 25, 1), utc(2026, 10, 25, 1, 15), utc(2026, 10, 25, 1, 30),
        utc(2026, 10, 25, 1, 45)]
    assert next_slot(cron, utc(2026, 10, 25, 0, 45)) == utc(2026, 10, 25, 1)
    daily = Cron(expression="30 2 * * *", timezone="Europe/Berlin")
    assert cron_slots(daily, utc(2026, 10, 25, 0, 45), utc(2026, 10, 25, 5)) == []


def test_next_slot() -> None:
    cron = Cron(expression="30 2 * * *", timezone="Europe/Berlin")
    assert next_slot(cron, utc(2026, 3, 28, 12)) == utc(2026, 3, 30, 0, 30)
    assert next_slot(cron, utc(2026, 3, 30, 0, 30)) == utc(2026, 3, 31, 0, 30)
    assert next_slot(Cron(expression="0 0 30 2 *"), utc(2026, 1, 1)) is None
    assert next_slot(Cron(expression="0 0 29 2 *"), utc(2026, 3, 1)) == utc(2028, 2, 29)
    assert next_slot(Cron(expression="0 0 29 2 *"), utc(2026, 3, 1),
                     horizon=timedelta(days=30)) is None


def test_naive_times_are_refused() -> None:
    with pytest.raises(Invalid, match="aware"):
        cron_slots(Cron(expression="* * * * *"), datetime(2026, 1, 1), utc(2026, 1, 2))


# --- catch-up and limits --------------------------------------------------------------------

HOURLY_SLOTS = [utc(2026, 12, 6, 11), utc(2026, 12, 6, 12), utc(2026, 12, 6, 13)]


@pytest.mark.parametrize(("catchup", "now", "expected"), [
    ("none", utc(2026, 12, 6, 13, 0, 30), HOURLY_SLOTS[-1:]),
    ("none", utc(2026, 12, 6, 13, 5), []),
    ("latest", utc(2026, 12, 6, 13, 5), HOURLY_SLOTS[-1:]),
    ("all", utc(2026, 12, 6, 13, 5), HOURLY_SLOTS),
])
def test_catchup_after_a_three_hour_outage(catchup: str, now: datetime,
                                           expected: list[datetime]) -> None:
    cron = Cron(expression="0 * * * *", catchup=catchup)  # type: ignore[arg-type]
    assert due_slots(cron, utc(2026, 12, 6, 10), now, fired=5) == expected


def test_limit_caps_catchup() -> None:
    now = utc(2026, 12, 6, 13, 5)
    cron = Cron(expression="0 * * * *", catchup="all", limit=5)
    assert due_slots(cron, utc(2026, 12, 6, 10), now, fired=3) == HOURLY_SLOTS[:2]
    assert due_slots(cron, utc(2026, 12, 6, 10), now, fired=5) == []
    latest = Cron(expression="0 * * * *", catchup="latest", limit=5)
    assert due_slots(latest, utc(2026, 12, 6, 10), now, fired=4) == HOURLY_SLOTS[-1:]
    assert due_slots(latest, utc(2026, 12, 6, 10), now, fired=6) == []


def test_new_schedule_without_last_slot_fires_only_within_grace() -> None:
    cron = Cron(expression="0 * * * *", catchup="all")
    assert due_slots(cron, None, utc(2026, 12, 6, 13, 0, 30)) == [utc(2026, 12, 6, 13)]
    assert due_slots(cron, None, utc(2026, 12, 6, 13) + GRACE + timedelta(seconds=1)) == []


def run_scheduler(cron: Cron, created: datetime, wakes: list[datetime]) -> list[datetime]:
    """Fire slots as the service will: a set of unique slots, last_slot and fired recorded."""
    fired: list[datetime] = []
    last = created
    for now in wakes:
        due = due_slots(cron, last, now, len(fired))
        for slot in due:
            if slot not in fired:  # the store's unique (task, slot) row
                fired.append(slot)
        last = due[-1] if due and cron.limit and len(fired) >= cron.limit else now
    return fired


@pytest.mark.parametrize("catchup", ["none", "latest", "all"])
def test_limit_3_fires_exactly_three_times(catchup: str) -> None:
    cron = Cron(expression="*/10 * * * *", limit=3, catchup=catchup)  # type: ignore[arg-type]
    created = utc(2026, 12, 6, 0, 3)
    wakes = [created + timedelta(seconds=20 * i) for i in range(1, 3 * 24 * 180)]
    assert run_scheduler(cron, created, wakes) == [
        utc(2026, 12, 6, 0, 10), utc(2026, 12, 6, 0, 20), utc(2026, 12, 6, 0, 30)]


def test_restart_with_catchup_all_neither_repeats_nor_skips() -> None:
    cron = Cron(expression="0 * * * *", catchup="all", timezone="Europe/Berlin")
    created = utc(2026, 10, 24, 20, 30)
    # awake every 5 minutes, with a 3-hour outage right over the fall-back hour
    wakes = [created + timedelta(minutes=5 * i) for i in range(1, 12 * 30)]
    wakes = [w for w in wakes if not utc(2026, 10, 24, 23, 30) < w < utc(2026, 10, 25, 2, 30)]
    fired = run_scheduler(cron, created, wakes)
    assert fired == cron_slots(cron, created, wakes[-1])
    assert len(fired) == len(set(fired))


# --- property: slots are ordered, match the expression, and windows split cleanly ----------

ZONES = ["Europe/Berlin", "America/New_York", "Australia/Sydney", "Australia/Lord_Howe",
         "America/Santiago", "America/Havana", "Europe/London", "Asia/Kolkata", "UTC"]


def field(top: int) -> st.SearchStrategy[str]:
    value = st.integers(0, top)
    single = value.map(str)
    span = st.tuples(value, value).map(lambda ab: f"{min(ab)}-{max(ab)}")
    stepped = st.tuples(st.sampled_from(["*"]) | span, st.integers(1, top)).map(
        lambda t: f"{t[0]}/{t[1]}")
    listed = st.lists(single | span | stepped, min_size=1, max_size=3).map(",".join)
    return st.sampled_from(["*", "", "", ""]).flatmap(
        lambda star: st.just(star) if star else listed)


expressions = st.tuples(field(59), field(23)).map(lambda mh: f"{mh[0]} {mh[1]} * * *")
@lru_cache
def transitions(zone: str) -> list[datetime]:
    """The UTC instants (to the hour) when ``zone`` changed its offset in 2024-2027."""
    tz, found = ZoneInfo(zone), []
    hour = utc(2024, 1, 1)
    while hour < utc(2028, 1, 1):
        after = hour + timedelta(hours=1)
        if hour.astimezone(tz).utcoffset() != after.astimezone(tz).utcoffset():
            found.append(after)
        hour = after
    return found or [utc(2026, 3, 29)]


@st.composite
def zones_and_starts(draw: st.DrawFn) -> tuple[str, datetime]:
    """A zone and a window start, mostly up to 40 hours before one of its DST changes."""
    zone = draw(st.sampled_from(ZONES))
    if draw(st.integers(0, 3)):
        anchor = draw(st.sampled_from(transitions(zone)))
    else:
        anchor = draw(st.datetimes(datetime(2024, 1, 3), datetime(2027, 12, 28))).replace(
            tzinfo=UTC)
    return zone, anchor + timedelta(minutes=draw(st.integers(-40 * 60, 10 * 60)))


def allowed(expression: str) -> tuple[set[int], set[int]]:
    """The minutes and hours ``expression`` (``m h * * *``) allows, from croniter's expansion."""
    minutes, hours = croniter(expression).expanded[:2]
    return ({*range(60)} if minutes == ["*"] else {int(m) for m in minutes},
            {*range(24)} if hours == ["*"] else {int(h) for h in hours})


@settings(max_examples=120, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(expression=expressions, where=zones_and_starts(), length=st.integers(1, 30 * 60),
       cut=st.floats(0, 1))
def test_slots_property(expression: str, where: tuple[str, datetime], length: int,
                        cut: float) -> None:
    zone, start = where
    cron = Cron(expression=expression, timezone=zone)
    end = start + timedelta(minutes=length)
    slots = cron_slots(cron, start, end)
    tz = ZoneInfo(zone)
    assert all(a < b for a, b in pairwise(slots))
    for slot in slots:
        assert slot.tzinfo is UTC and start < slot <= end
        assert croniter.match(expression, slot.astimezone(tz).replace(tzinfo=None))
    # exactly the matching instants; the second of a repeated local time only if every hour
    minutes, hours = allowed(expression)
    every_hour = len(hours) == 24
    expected = []
    minute = start.replace(second=0, microsecond=0) + timedelta(minutes=1)
    while minute <= end:
        local = minute.astimezone(tz)
        if (local.fold == 0 or every_hour) and local.minute in minutes and local.hour in hours:
            expected.append(minute)
        minute += timedelta(minutes=1)
    assert slots == expected
    middle = start + (end - start) * cut
    assert cron_slots(cron, start, middle) + cron_slots(cron, middle, end) == slots


def test_a_seconds_field_first_fires_within_the_minute_and_skips_a_dst_gap() -> None:
    every_ten = Cron(expression="*/10 * * * * *", timezone="Europe/Berlin")
    slots = cron_slots(every_ten, utc(2026, 1, 15, 8, 0, 0), utc(2026, 1, 15, 8, 1, 0))
    assert [slot.second for slot in slots] == [10, 20, 30, 40, 50, 0]
    # 02:00-03:00 local does not exist on 2026-03-29 in Berlin: 02:30:15 is skipped
    gap = Cron(expression="15 30 2 * * *", timezone="Europe/Berlin")
    found = cron_slots(gap, utc(2026, 3, 28, 0), utc(2026, 3, 31, 0))
    assert found == [utc(2026, 3, 28, 1, 30, 15), utc(2026, 3, 30, 0, 30, 15)]
