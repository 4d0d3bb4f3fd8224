"""The metadata every service's tables join, and the store's time convention.

Times are stored as milliseconds since the epoch, UTC (``BIGINT``): exact, portable between
SQLite and PostgreSQL, and indexable.
"""

from __future__ import annotations

import time

from sqlalchemy import MetaData

metadata = MetaData()


def now_ms() -> int:
    return time.time_ns() // 1_000_000


__all__ = ["metadata", "now_ms"]
