"""Observation times: ISO 8601, epoch ms and dd-MMM-yyyy / dd-MM-yyyy HH:mm:ss[.SSS] [zone] to
UTC ms; aggregate buckets in a time zone."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

import pytest
from hypothesis import given
from hypothesis import strategies as st

from lakeport.errors import Invalid
from lakeport.server.observations.buckets import buckets
from lakeport.server.times import (
    MAX_MS,
    MIN_MS,
    SECONDS_HIGH,
    SECONDS_LOW,
    BadTime,
    format_time,
    format_times,
    parse_time,
    parse_times,
    time_param,
)


def ms(*parts: int) -> int:
    return int(datetime(*parts, tzinfo=UTC).timestamp() * 1000)


BASE = ms(2026, 1, 15, 8, 0, 0)


@pytest.mark.parametrize(("text", "expected"), [
    ("2026-01-15T08:00:00Z", BASE),
    ("2026-01-15T08:00:00.123Z", BASE + 123),
    ("2026-01-15T08:00:00.123456Z", BASE + 123),  # sub-ms digits are cut, not rounded
    ("2026-01-15T08:00:00.999999+00:00", BASE + 999),
    ("2026-01-15T13:30:00+05:30", BASE),
    ("2026-01-15T00:00:00-08:00", BASE),
    ("2026-01-15T08:00:00", BASE),  # naive = UTC
    ("2026-01-15 08:00:00", BASE),
    ("2026-01-15", ms(2026, 1, 15)),
    ("20260115T080000Z", BASE),
])
def test_iso_8601(text: str, expected: int) -> None:
    assert parse_time(text) == expected


@pytest.mark.parametrize(("value", "expected"), [
    (BASE, BASE), (str(BASE), BASE), (f" {BASE} ", BASE), (0, 0), ("0", 0),
    (-1000, -1000), (BASE + 0.9, BASE),
])
def test_epoch_milliseconds(value: object, expected: int) -> None:
    assert parse_time(value) == expected


@pytest.mark.parametrize(("text", "expected"), [
    ("15-Jul-2019 12:35:56", ms(2019, 7, 15, 12, 35, 56)),
    ("15-Jul-2019 12:35:56.789", ms(2019, 7, 15, 12, 35, 56) + 789),
    ("15-Jul-2019 12:35:56.7", ms(2019, 7, 15, 12, 35, 56) + 700),
    ("15-jul-2019 12:35:56.789 UTC", ms(2019, 7, 15, 12, 35, 56) + 789),
    ("15-Jul-2019 12:35:56.789 Z", ms(2019, 7, 15, 12, 35, 56) + 789),
    ("15-Jul-2019 12:35:56.789 IST", ms(2019, 7, 15, 7, 5, 56) + 789),
    ("15-Jul-2019 12:35:56.789 +05:30", ms(2019, 7, 15, 7, 5, 56) + 789),
    ("15-Jul-2019 12:35:56 -0800", ms(2019, 7, 15, 20, 35, 56)),
    ("15-Jul-2019 12:35:56.789 Asia/Kolkata", ms(2019, 7, 15, 7, 5, 56) + 789),
    ("15-Jan-2019 12:00:00 Europe/Berlin", ms(2019, 1, 15, 11)),  # winter: +01:00
    ("15-Jul-2019 12:00:00 Europe/Berlin", ms(2019, 7, 15, 10)),  # summer: +02:00
    ("01-Feb-2020 00:00:00 PST", ms(2020, 2, 1, 8)),
    ("1-Feb-2020 00:00:00", ms(2020, 2, 1)),
])
def test_day_month_year_form(text: str, expected: int) -> None:
    assert parse_time(text) == expected


@pytest.mark.parametrize("value", [
    "", "yesterday", "15-Foo-2019 12:35:56", "15-Jul-2019 12:35:56 Mars/Olympus",
    "15-Jul-2019 12:35:56 +25:00", "31-Feb-2019 00:00:00", "2026-13-01T00:00:00Z",
    None, True, [], {}, float("nan"), float("inf"), 10**20, "99999999999999999999",
])
def test_bad_times_say_which_forms_are_accepted(value: object) -> None:
    with pytest.raises(BadTime) as caught:
        parse_time(value)
    assert repr(value)[:20] in str(caught.value) or "out of range" in str(caught.value)


def test_a_column_is_converted_at_once_and_reports_its_first_bad_value() -> None:
    iso = [f"2026-01-15T08:00:{s:02d}.5Z" for s in range(60)]
    times, bad, _ = parse_times(iso)
    assert bad is None and list(times[:2]) == [BASE + 500, BASE + 1500]
    epoch, bad, _ = parse_times([BASE, BASE + 1])
    assert bad is None and list(epoch) == [BASE, BASE + 1]
    mixed, bad, _ = parse_times(["2026-01-15T08:00:00Z", BASE, "15-Jul-2019 12:35:56 IST"])
    assert bad is None and list(mixed[:2]) == [BASE, BASE]
    _, bad, message = parse_times(["2026-01-15T08:00:00Z", "2026-01-15T08:00:01Z", "nope"])
    assert bad == 2 and "'nope'" in message
    _, bad, message = parse_times([BASE, 10**19])
    assert bad == 1 and "out of range" in message


def test_times_are_formatted_as_iso_with_milliseconds_and_z() -> None:
    assert format_time(BASE + 7) == "2026-01-15T08:00:00.007Z"
    assert format_time(0) == "1970-01-01T00:00:00.000Z"
    assert format_times([BASE, BASE + 123]).to_pylist() == [
        "2026-01-15T08:00:00.000Z", "2026-01-15T08:00:00.123Z"]


def test_query_parameters_name_themselves() -> None:
    assert time_param(None, "start") is None
    assert time_param("2026-01-15T08:00:00Z", "start") == BASE
    with pytest.raises(Invalid, match=r"^end: "):
        time_param("soon", "end")


@pytest.mark.parametrize("text", [
    "0000-01-01T00:00:00Z", "0000-06-01T00:00:00.000+00:00", "9999-12-31T23:59:59.999-05:00",
    "0001-01-01T00:00:00+01:00", "-0001-01-01T00:00:00Z", "+10000-01-01T00:00:00Z",
])
def test_a_column_of_iso_times_refuses_years_outside_1_to_9999(text: str) -> None:
    column = ["2026-01-15T08:00:00Z", "2026-01-15T08:00:01Z", text]
    _, bad, message = parse_times(column)
    assert bad == 2 and "out of range (years 1-9999)" in message
    _, bad, message = parse_times([text] * 3)
    assert bad == 0 and repr(text) in message
    with pytest.raises(BadTime, match="out of range"):
        parse_time(text)


def test_the_first_and_last_millisecond_of_the_range_are_times() -> None:
    first, last = "0001-01-01T00:00:00.000Z", "9999-12-31T23:59:59.999Z"
    times, bad, _ = parse_times([first, last])
    assert bad is None and list(times) == [MIN_MS, MAX_MS]
    assert (format_time(MIN_MS), format_time(MAX_MS)) == (first, last)
    assert format_times([MIN_MS, MAX_MS]).to_pylist() == [first, last]


@pytest.mark.parametrize(("ms", "text"), [
    (MIN_MS - 1, "0000-12-31T23:59:59.999Z"),
    (MIN_MS - 366 * 86_400_000, "0000-01-01T00:00:00.000Z"),
    (MIN_MS - 731 * 86_400_000, "-0001-01-01T00:00:00.000Z"),
    (MAX_MS + 1, "+10000-01-01T00:00:00.000Z"),
    (2**63 - 1, "+292278994-08-17T07:12:55.807Z"),
    (-(2**63), "-292275055-05-16T16:47:04.192Z"),
])
def test_stored_times_outside_the_range_are_shown_not_failed(ms: int, text: str) -> None:
    assert format_time(ms) == text
    assert format_times([BASE, ms]).to_pylist() == ["2026-01-15T08:00:00.000Z", text]


@pytest.mark.parametrize(("text", "expected"), [
    ("15-07-2019 12:35:56.789 IST", ms(2019, 7, 15, 7, 5, 56) + 789),
    ("15-07-2019 12:35:56.789", ms(2019, 7, 15, 12, 35, 56) + 789),
    ("5-7-2019 12:35:56 UTC", ms(2019, 7, 5, 12, 35, 56)),
    ("15-07-2019 12:35:56 GMT+05:30", ms(2019, 7, 15, 7, 5, 56)),
    ("15-07-2019 12:35:56 UTC+5:30", ms(2019, 7, 15, 7, 5, 56)),
    ("15-Jul-2019 12:35:56 gmt-0800", ms(2019, 7, 15, 20, 35, 56)),
    ("15-Jul-2019 12:35:56 UTC-8", ms(2019, 7, 15, 20, 35, 56)),
    ("15-Jul-2019 12:35:56 +5", ms(2019, 7, 15, 7, 35, 56)),
])
def test_numeric_months_and_gmt_offsets(text: str, expected: int) -> None:
    assert parse_time(text) == expected


@pytest.mark.parametrize("text", [
    "15-13-2019 12:35:56", "32-07-2019 12:35:56", "15-07-2019 12:35:56 GMT+24:00",
    "15-07-2019 12:35:56 UTC+5:60", "15-07-2019 12:35:56 GMT+",
])
def test_bad_numeric_months_and_offsets_are_refused(text: str) -> None:
    with pytest.raises(BadTime, match="is not a time"):
        parse_time(text)


@pytest.mark.parametrize("value", [1768464008, "1768464008", 1768464008.25, 100_000_000,
                                   99_999_999_999])
def test_epoch_seconds_are_refused_not_read_as_1970(value: object) -> None:
    with pytest.raises(BadTime, match=r"looks like epoch seconds .*send \d+000 or ISO 8601"):
        parse_time(value)
    _, bad, message = parse_times([BASE, value])
    assert bad == 1 and "looks like epoch seconds" in message


@pytest.mark.parametrize("value", [0, 1000, 99_999_999, 100_000_000_000, BASE, -1768464008])
def test_epoch_milliseconds_outside_the_seconds_band_are_kept(value: int) -> None:
    assert parse_time(value) == value
    assert list(parse_times([value])[0]) == [value]


OFFSETS = st.integers(-14 * 60, 14 * 60)
WHEN = st.datetimes(datetime(1000, 1, 1), datetime(9000, 12, 31))


@given(when=WHEN, minutes=OFFSETS, prefix=st.sampled_from(["", "GMT", "UTC", "gmt"]),
       colon=st.booleans(), named_month=st.booleans())
def test_day_month_year_round_trip(when: datetime, minutes: int, prefix: str, colon: bool,
                                   named_month: bool) -> None:
    when = when.replace(microsecond=when.microsecond // 1000 * 1000)
    sign, hours, mins = "-" if minutes < 0 else "+", abs(minutes) // 60, abs(minutes) % 60
    month = when.strftime("%b") if named_month else f"{when.month:02d}"
    text = (f"{when.day:02d}-{month}-{when.year:04d} {when:%H:%M:%S}.{when.microsecond // 1000:03d}"
            f" {prefix}{sign}{hours:02d}{':' if colon else ''}{mins:02d}")
    expected = when.replace(tzinfo=timezone(timedelta(minutes=minutes)))
    assert parse_time(text) == (expected - datetime(1970, 1, 1, tzinfo=UTC)) // timedelta(
        milliseconds=1)


@given(st.one_of(st.text(max_size=40), st.integers(), st.floats(),
                 st.from_regex(r"\d{1,2}-\d{1,2}-\d{4} \d{1,2}:\d{2}:\d{2}(\.\d{1,4})? ?\S{0,9}",
                               fullmatch=True)))
def test_any_input_is_a_time_in_range_or_bad_time(value: object) -> None:
    try:
        result = parse_time(value)
    except BadTime:
        return
    assert MIN_MS <= result <= MAX_MS
    assert not SECONDS_LOW <= result < SECONDS_HIGH or not isinstance(value, int | float)


DAY = 86_400_000


def test_an_ist_day_is_one_bucket_from_local_midnight() -> None:
    for zone in ("Asia/Kolkata", "IST", "+05:30", "UTC+5:30"):
        plan = buckets("1d", zone)
        midnight = ms(2026, 1, 14, 18, 30)  # 2026-01-15T00:00 IST
        slots = {plan.start(midnight + offset) for offset in range(0, DAY, plan.size)}
        assert slots == {midnight}, zone


def test_days_of_a_zone_with_daylight_saving_last_23_and_25_hours() -> None:
    plan = buckets("1d", "Europe/Berlin")
    spring, autumn = ms(2026, 3, 28, 23), ms(2026, 10, 24, 22)  # local midnights
    assert plan.start(spring + 23 * 3_600_000 - plan.size) == spring
    assert plan.start(spring + 23 * 3_600_000) == spring + 23 * 3_600_000
    assert plan.start(autumn + 25 * 3_600_000 - plan.size) == autumn
    assert plan.start(autumn + 25 * 3_600_000) == autumn + 25 * 3_600_000
    hours = buckets("1h", "Europe/Berlin")  # the repeated local hour is two buckets
    repeated = ms(2026, 10, 25, 0)  # 02:00 CEST, then 02:00 CET at 01:00Z
    assert hours.start(repeated + 45 * 60_000) == repeated
    assert hours.start(repeated + 3_600_000 + 45 * 60_000) == repeated + 3_600_000


def test_an_unknown_zone_names_the_tz_parameter() -> None:
    with pytest.raises(Invalid, match=r"^tz: unknown time zone 'Mars/Olympus'"):
        buckets("1d", "Mars/Olympus")
