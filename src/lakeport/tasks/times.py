"""Time parsing for task schedules: ISO 8601 and the ``dd-MM-yyyy`` form of TCUP's task service.

Every result is an aware :class:`datetime` in UTC. Accepted forms:

* ISO 8601, e.g. ``2026-12-24T18:30:00+01:00``, ``2026-12-24T17:30:00Z``,
  ``2026-12-24 18:30``; a time without an offset is read in ``default_zone``.
* TCUP's ``dd-MM-yyyy HH:mm:ss.SSS`` (the ``.SSS`` milliseconds may be left
  out), followed by an optional zone: an IANA name (``Asia/Kolkata``) or one of the
  abbreviations in :data:`ABBREVIATIONS`. Without a zone it is read in ``default_zone``.

Abbreviations are ambiguous in general, so only a small fixed table is known. ``IST`` is
India Standard Time (``Asia/Kolkata``, +05:30), as TCUP, whose format this is, is Indian; it is
not Irish or Israel Standard Time. The other abbreviations are fixed UTC offsets: ``CET`` is
always +01:00 and ``CEST`` always +02:00, whatever the date. Use an IANA name for a zone
that follows daylight saving time. A zone of two to five letters that is not in the table
is refused as an unknown abbreviation (the error lists the known ones).

A local wall-clock time read in an IANA zone that does not exist (it falls in a spring
forward gap) is an error; one that happens twice (fall back) is the first occurrence.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta, timezone, tzinfo
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from lakeport.errors import Invalid

__all__ = ["ABBREVIATIONS", "FORMATS", "parse_time", "parse_zone", "zone_info"]

FORMATS = (
    "ISO 8601 (2026-12-24T18:30:00+01:00, 2026-12-24T17:30:00Z, 2026-12-24 18:30)",
    "dd-MM-yyyy HH:mm:ss.SSS [zone] (24-12-2026 23:00:00.000 IST)",
)


def _fixed(hours: int, minutes: int = 0) -> timezone:
    return timezone(timedelta(hours=hours, minutes=minutes))


#: Known zone abbreviations; ``IST`` is India Standard Time, the others fixed offsets.
ABBREVIATIONS: dict[str, tzinfo] = {
    "UTC": UTC,
    "GMT": UTC,
    "IST": ZoneInfo("Asia/Kolkata"),
    "CET": _fixed(1),
    "CEST": _fixed(2),
    "EET": _fixed(2),
    "EST": _fixed(-5),
    "EDT": _fixed(-4),
    "CST": _fixed(-6),
    "CDT": _fixed(-5),
    "MST": _fixed(-7),
    "MDT": _fixed(-6),
    "PST": _fixed(-8),
    "PDT": _fixed(-7),
    "JST": _fixed(9),
    "SGT": _fixed(8),
    "AEST": _fixed(10),
}

_TCUP = re.compile(
    r"(\d{2})-(\d{2})-(\d{4})[ T](\d{2}):(\d{2}):(\d{2})(?:\.(\d{1,3}))?(?:\s+(\S+))?"
)


def zone_info(name: str) -> ZoneInfo:
    """The IANA time zone ``name``; Invalid (one line) when it is unknown."""
    try:
        if not isinstance(name, str) or not name:
            raise ValueError(name)
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError, TypeError):
        raise Invalid(
            f"unknown time zone {name!r}: use an IANA name like 'Europe/Berlin' or 'UTC'"
        ) from None


def parse_zone(name: str) -> tzinfo:
    """A zone written after a TCUP-format time: an abbreviation or an IANA name."""
    known = ABBREVIATIONS.get(name.upper())
    if known is not None:
        return known
    if not re.fullmatch(r"[A-Za-z]{2,5}", name):
        return zone_info(name)
    raise Invalid(
        f"unknown time zone abbreviation {name!r}: use an IANA name like 'Asia/Kolkata' "
        f"or one of {', '.join(ABBREVIATIONS)}"
    )


def _localize(naive: datetime, zone: tzinfo, text: str) -> datetime:
    """``naive`` read in ``zone`` (first occurrence when repeated), converted to UTC."""
    aware = naive.replace(tzinfo=zone, fold=0)
    instant = aware.astimezone(UTC)
    if instant.astimezone(zone).replace(tzinfo=None) != naive:
        raise Invalid(f"time {text!r} does not exist in {zone} (clocks jump forward then)")
    return instant


def parse_time(text: str, default_zone: str = "UTC") -> datetime:
    """``text`` as an aware UTC datetime; Invalid (one line, listing the forms) when bad.

    See the module docstring for the accepted forms and the zone abbreviations.
    """
    if not isinstance(text, str):
        raise Invalid(f"bad time {text!r}: use {' or '.join(FORMATS)}")
    raw = text.strip()
    tcup = _TCUP.fullmatch(raw)
    if tcup:
        day, month, year, hour, minute, second, millis, zone_name = tcup.groups()
        try:
            naive = datetime(int(year), int(month), int(day), int(hour), int(minute),
                             int(second), int((millis or "0").ljust(3, "0")) * 1000)
        except ValueError as exc:
            raise Invalid(f"bad time {text!r}: {exc}") from None
        zone = parse_zone(zone_name) if zone_name else zone_info(default_zone)
        return _localize(naive, zone, text)
    try:
        parsed = datetime.fromisoformat(raw)
    except ValueError:
        raise Invalid(f"bad time {text!r}: use {' or '.join(FORMATS)}") from None
    if parsed.tzinfo is None:
        return _localize(parsed, zone_info(default_zone), text)
    return parsed.astimezone(UTC)
