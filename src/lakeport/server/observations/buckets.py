"""Time buckets of aggregates in a time zone: a bucket starts at a local minute, hour or
midnight, so an IST day is one bucket and a day in a zone with daylight saving lasts 23 or 25
hours.

The store groups observations into *slots*, then slots are merged into buckets here. For a
zone with a fixed offset (UTC, ``+05:30``, ``IST``) a slot is the bucket itself (the offset
shifts the SQL arithmetic). For an IANA zone a slot is the bucket size's gcd with 15 minutes
(every offset since the 1970s is a whole quarter hour) and each slot goes to the bucket its
local start falls in.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta, timezone, tzinfo
from typing import Any

from lakeport.errors import Invalid
from lakeport.server.times import zone_named

BUCKETS = {"1m": 60_000, "1h": 3_600_000, "1d": 86_400_000}
_QUARTER = 900_000
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_MS = timedelta(milliseconds=1)
_TRUNCATE = {"1m": {"second": 0, "microsecond": 0},
             "1h": {"minute": 0, "second": 0, "microsecond": 0},
             "1d": {"hour": 0, "minute": 0, "second": 0, "microsecond": 0}}


@dataclass(frozen=True, slots=True)
class Buckets:
    """How ``bucket`` sized buckets of ``zone`` are computed."""

    bucket: str
    zone: tzinfo
    size: int
    """The slot size (ms) the store groups by."""
    shift: int
    """The offset (ms) added before rounding down to a slot."""

    def slot(self, time: Any) -> Any:
        """The SQL expression of the slot start of ``time`` (ms), right for negative times."""
        size, shift = self.size, self.shift
        return time - ((time + shift) % size + size) % size

    def start(self, slot_ms: int) -> int:
        """The UTC ms start of the bucket holding the slot starting at ``slot_ms``."""
        if isinstance(self.zone, timezone):
            return slot_ms
        local = (_EPOCH + slot_ms * _MS).astimezone(self.zone)
        return (local.replace(**_TRUNCATE[self.bucket]) - _EPOCH) // _MS


def buckets(bucket: str, tz: str) -> Buckets:
    """The buckets of size ``bucket`` in zone ``tz`` (IANA name, offset or abbreviation)."""
    try:
        zone = zone_named(tz)
    except ValueError:
        raise Invalid(f"tz: unknown time zone {tz!r}: use an IANA name (Asia/Kolkata), an "
                      "offset (+05:30, UTC+5:30) or an abbreviation (IST, CET)") from None
    size = BUCKETS[bucket]
    if isinstance(zone, timezone):
        offset = zone.utcoffset(None) // _MS
        return Buckets(bucket, zone, size, offset)
    return Buckets(bucket, zone, math.gcd(size, _QUARTER), 0)


__all__ = ["BUCKETS", "Buckets", "buckets"]
