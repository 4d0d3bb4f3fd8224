"""Observation times: what users send, and the UTC milliseconds the store keeps.

Three forms are accepted:

- ISO 8601 (``2026-01-15T08:00:00.123Z``, ``2026-01-15T13:30:00+05:30``); no zone means UTC;
- epoch milliseconds, as a number or a string of digits (``1768464000123``); a number between
  10^8 and 10^11 is refused as epoch *seconds* (read as milliseconds it would fall in
  1970-01-02..1973-03-03, read as seconds in 1973..5138): see :func:`check_epoch`;
- ``dd-MMM-yyyy HH:mm:ss[.SSS] [zone]`` (``15-Jul-2019 12:35:56.789 IST``) or with a numeric
  month ``dd-MM-yyyy`` (``15-07-2019 12:35:56.789 IST``), where the zone is an abbreviation from
  :data:`ZONE_ABBREVIATIONS`, an offset (``+05:30``, ``-0800``, ``+5``), an offset after
  ``UTC``/``GMT`` (``GMT+05:30``, ``UTC+5:30``, ``UTC-8``) or an IANA name (``Asia/Kolkata``);
  no zone means UTC.

Sub-millisecond digits are truncated (floor).
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta, timezone, tzinfo
from functools import lru_cache
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from lakeport.errors import Invalid

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_MS = timedelta(milliseconds=1)
MIN_MS = -62_135_596_800_000  # 0001-01-01T00:00:00Z
MAX_MS = 253_402_300_799_999  # 9999-12-31T23:59:59.999Z

ZONE_ABBREVIATIONS: dict[str, timedelta] = {
    "UTC": timedelta(0), "Z": timedelta(0), "GMT": timedelta(0),
    "IST": timedelta(hours=5, minutes=30),  # India Standard Time
    "CET": timedelta(hours=1), "CEST": timedelta(hours=2),
    "EET": timedelta(hours=2), "EEST": timedelta(hours=3),
    "WET": timedelta(0), "WEST": timedelta(hours=1), "BST": timedelta(hours=1),
    "EST": timedelta(hours=-5), "EDT": timedelta(hours=-4),
    "CST": timedelta(hours=-6), "CDT": timedelta(hours=-5),
    "MST": timedelta(hours=-7), "MDT": timedelta(hours=-6),
    "PST": timedelta(hours=-8), "PDT": timedelta(hours=-7),
    "JST": timedelta(hours=9), "KST": timedelta(hours=9), "SGT": timedelta(hours=8),
    "AEST": timedelta(hours=10), "AEDT": timedelta(hours=11),
}
"""Zone abbreviations of the ``dd-MMM-yyyy`` form (IST is India Standard Time)."""

_MONTHS = {name: i for i, name in enumerate(
    ("jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec"), 1)}
_DMY = re.compile(
    r"(\d{1,2})-([A-Za-z]{3}|\d{1,2})-(\d{4})[ T](\d{1,2}):(\d{2}):(\d{2})(?:\.(\d{1,9}))?"
    r"(?:\s*(\S+))?")
_OFFSET = re.compile(r"(?:UTC|GMT)?([+-])(\d{1,2})(?::?(\d{2}))?", re.IGNORECASE)
_DIGITS = re.compile(r"-?\d+")
_YEAR = re.compile(r"([+-]?)(\d{4,})-\d")
_CYCLE_MS = 146_097 * 86_400_000
"""400 Gregorian years in milliseconds (the calendar repeats after them)."""
FORMS = ("ISO 8601 (2026-01-15T08:00:00.000Z), epoch milliseconds, or "
         "dd-MMM-yyyy HH:mm:ss[.SSS] [zone] (15-Jul-2019 12:35:56.789 IST, "
         "15-07-2019 12:35:56.789 GMT+05:30)")
SECONDS_LOW, SECONDS_HIGH = 10**8, 10**11
"""Epoch numbers in [SECONDS_LOW, SECONDS_HIGH) are refused as seconds (see check_epoch)."""


class BadTime(Invalid):
    """A value that is not a time in one of the accepted forms."""


def _to_ms(when: datetime) -> int:
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return (when - _EPOCH) // _MS


@lru_cache(maxsize=256)
def zone_named(text: str) -> tzinfo:
    """The zone of ``text``: an abbreviation, an offset (``+05:30``, ``GMT+5:30``) or an IANA
    name; ValueError when it is none of them."""
    upper = text.upper()
    if upper in ZONE_ABBREVIATIONS:
        return timezone(ZONE_ABBREVIATIONS[upper])
    match = _OFFSET.fullmatch(text)
    if match:
        sign, hours, minutes = match.groups()
        delta = timedelta(hours=int(hours), minutes=int(minutes or 0))
        if delta >= timedelta(hours=24) or int(minutes or 0) >= 60:
            raise ValueError(text)
        return timezone(-delta if sign == "-" else delta)
    try:
        return ZoneInfo(text)
    except (ZoneInfoNotFoundError, ValueError):
        raise ValueError(text) from None


def _parse_dmy(match: re.Match[str]) -> int:
    day, month, year, hour, minute, second, fraction, zone = match.groups()
    month_number = int(month) if month.isdigit() else _MONTHS.get(month.lower())
    if month_number is None:
        raise ValueError(month)
    micros = int((fraction or "0")[:6].ljust(6, "0"))
    naive = datetime(int(year), month_number, int(day), int(hour), int(minute), int(second),
                     micros)
    return _to_ms(naive.replace(tzinfo=zone_named(zone) if zone else UTC))


def _check_range(ms: int, value: Any) -> int:
    if not MIN_MS <= ms <= MAX_MS:
        raise BadTime(f"time {value!r} is out of range (years 1-9999)")
    return ms


def _seconds_message(value: Any, number: int) -> str:
    as_seconds = format_time(number * 1000)[:19] + "Z"
    return (f"time {value!r} looks like epoch seconds ({as_seconds}); epoch times are "
            f"milliseconds: send {number * 1000} or ISO 8601")


def check_epoch(number: int, value: Any) -> int:
    """``number`` (epoch ms of ``value``) in range; BadTime when it is out of range or an
    epoch in seconds: read as milliseconds it would be a day of 1970-1973, read as seconds a
    date of 1973-5138, so it is far more likely seconds than milliseconds."""
    if SECONDS_LOW <= number < SECONDS_HIGH:
        raise BadTime(_seconds_message(value, number))
    return _check_range(number, value)


def parse_time(value: Any) -> int:
    """UTC milliseconds since the epoch of ``value``; BadTime naming it when it is not a time."""
    if isinstance(value, bool) or value is None:
        raise BadTime(f"time {value!r} is not a time: use {FORMS}")
    if isinstance(value, int):
        return check_epoch(value, value)
    if isinstance(value, float):
        if not math.isfinite(value):
            raise BadTime(f"time {value!r} is not a time: use {FORMS}")
        return check_epoch(math.floor(value), value)
    if not isinstance(value, str):
        raise BadTime(f"time {value!r} is not a time: use {FORMS}")
    text = value.strip()
    try:
        if _DIGITS.fullmatch(text):
            return check_epoch(int(text), value)
        match = _DMY.fullmatch(text)
        if match:
            return _check_range(_parse_dmy(match), value)
        return _check_range(_to_ms(datetime.fromisoformat(text)), value)
    except (ValueError, OverflowError):
        year = _YEAR.match(text)
        if year and (year[1] == "-" or not 1 <= int(year[2]) <= 9999):
            raise BadTime(f"time {value!r} is out of range (years 1-9999)") from None
        raise BadTime(f"time {value!r} is not a time: use {FORMS}") from None


def parse_times(values: Sequence[Any]) -> tuple[np.ndarray, int | None, str]:
    """The UTC milliseconds of ``values`` as int64, or (partial, index, message) of the first bad
    one. Whole columns of integers or zoned ISO strings are converted without a Python loop."""
    count = len(values)
    if not count:
        return np.empty(0, np.int64), None, ""
    first_type = type(values[0])
    if first_type is int and all(type(v) is int for v in values):
        try:
            array = np.array(values, dtype=np.int64)
        except OverflowError:
            array = np.array([max(MIN_MS - 1, min(MAX_MS + 1, v)) for v in values], np.int64)
        bad = np.flatnonzero((array < MIN_MS) | (array > MAX_MS) |
                             ((array >= SECONDS_LOW) & (array < SECONDS_HIGH)))
        if bad.size:
            index = int(bad[0])
            try:
                check_epoch(values[index], values[index])
            except BadTime as exc:
                return array, index, str(exc)
        return array, None, ""
    if first_type is str:
        fast = _arrow_iso(values)
        if fast is not None:
            return fast, None, ""
    out = np.empty(count, np.int64)
    for index, value in enumerate(values):
        try:
            out[index] = parse_time(value)
        except BadTime as exc:
            return out, index, str(exc)
    return out, None, ""


def _arrow_iso(values: Sequence[Any]) -> np.ndarray | None:
    """Zoned ISO 8601 strings parsed by Arrow in one call (None when any is in another form)."""
    try:
        strings = pa.array(values, pa.string())
        if strings.null_count:
            return None
        parsed = strings.cast(pa.timestamp("ms", tz="UTC"))
    except (pa.ArrowInvalid, pa.ArrowTypeError, pa.ArrowNotImplementedError):
        return None
    if pc.any(pc.less(pc.utf8_length(strings), 16)).as_py():
        return None  # Arrow also reads bare dates and "2026-01-15T08Z"-like text: be strict
    millis = parsed.cast(pa.int64())
    bounds = pc.min_max(millis).as_py()
    if bounds["min"] < MIN_MS or bounds["max"] > MAX_MS:
        return None  # Arrow reads year 0 and offsets past the range: let parse_time say which
    return millis.to_numpy(zero_copy_only=False)


def format_time(ms: int) -> str:
    """``2026-01-15T08:00:00.000Z`` for UTC milliseconds. A time outside years 1-9999 (stored
    by an older version) is written in the expanded ISO 8601 form (``+10000-...``, ``-0001-...``,
    ``0000-...``) instead of failing."""
    cycles = 0 if MIN_MS <= ms <= MAX_MS else (ms - MIN_MS) // _CYCLE_MS
    when = _EPOCH + (ms - cycles * _CYCLE_MS) * _MS  # whole 400-year cycles into the range
    year = when.year + 400 * cycles
    sign = "-" if year < 0 else "+" if year > 9999 else ""
    return (f"{sign}{abs(year):04d}-{when.month:02d}-{when.day:02d}T{when.hour:02d}:"
            f"{when.minute:02d}:{when.second:02d}.{ms % 1000:03d}Z")


def format_times(ms: Any) -> pa.Array:
    """ISO 8601 strings (``...T08:00:00.000Z``) of an int64 array of UTC milliseconds (times
    outside years 1-9999 as :func:`format_time` writes them)."""
    millis = pa.array(ms, pa.int64())
    bounds = pc.min_max(millis).as_py()
    if bounds["min"] is not None and (bounds["min"] < MIN_MS or bounds["max"] > MAX_MS):
        return pa.array([None if v is None else format_time(v) for v in millis.to_pylist()],
                        pa.string())
    return pc.strftime(millis.cast(pa.timestamp("ms")), "%Y-%m-%dT%H:%M:%SZ")


def time_param(value: str | None, name: str) -> int | None:
    """A query parameter's time (None when absent); Invalid naming the parameter."""
    if value is None or value == "":
        return None
    try:
        return parse_time(value)
    except BadTime as exc:
        raise Invalid(f"{name}: {exc}") from None


__all__ = ["FORMS", "MAX_MS", "MIN_MS", "SECONDS_HIGH", "SECONDS_LOW", "ZONE_ABBREVIATIONS",
           "BadTime", "check_epoch", "format_time", "format_times", "parse_time", "parse_times",
           "time_param", "zone_named"]
