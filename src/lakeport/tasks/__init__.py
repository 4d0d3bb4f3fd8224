"""Tasks: code run now, at a time or on a cron schedule. This package holds the schedules.

:mod:`lakeport.tasks.schedule` has the schedule models and the cron slot rules (DST,
catch-up, limits); :mod:`lakeport.tasks.times` parses times (ISO 8601 and TCUP's
``dd-MM-yyyy HH:mm:ss.SSS IST``).
"""

from lakeport.tasks.schedule import (
    GRACE,
    HORIZON,
    TOLERANCE,
    At,
    Catchup,
    Cron,
    Now,
    Schedule,
    cron_slots,
    due_slots,
    next_slot,
    parse_schedule,
    validate_at,
)
from lakeport.tasks.times import ABBREVIATIONS, parse_time, parse_zone, zone_info

__all__ = [
    "ABBREVIATIONS",
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
    "parse_time",
    "parse_zone",
    "validate_at",
    "zone_info",
]
