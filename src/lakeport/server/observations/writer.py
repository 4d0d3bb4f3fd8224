"""Writing observations: bulk inserts into the store and publishing to topics.

Rows go in with one statement per batch (SQLite ``executemany``; PostgreSQL ``COPY`` through
asyncpg), and each datastream's count and time range is updated once per batch. Times outside
years 1-9999 never reach the store (the routes refuse them; other writers' are skipped).
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import orjson
import sqlalchemy as sa
from fastapi import Request
from sqlalchemy.ext.asyncio import AsyncConnection

from lakeport.allocator import collector_paused
from lakeport.errors import Invalid
from lakeport.server.observations.catalog import DatastreamCache
from lakeport.server.observations.tables import datastreams
from lakeport.server.times import MAX_MS, MIN_MS
from lakeport.server.topics.producers import Producers
from lakeport.streams import Producer
from lakeport.streams.types import validate_topic_name

log = logging.getLogger("lakeport.server.observations")
TOPIC_PREFIX = "observations."
PRODUCER_NAME = "lakeport-observations"
_COLUMNS = ["datastream_id", "time", "value_number", "value_text"]
_SQLITE_INSERT = ("INSERT INTO observations (datastream_id, time, value_number, value_text) "
                  "VALUES (?, ?, ?, ?)")


@dataclass(slots=True)
class Series:
    """Observations of one datastream: times (int64 ms) and their values, either numbers or
    texts (the other list is None)."""

    datastream_id: int
    times: np.ndarray
    numbers: list[float] | None
    texts: list[str] | None

    def records(self) -> list[tuple[int, int, float | None, str | None]]:
        count = len(self.times)
        ids = [self.datastream_id] * count
        nones = [None] * count
        return list(zip(ids, self.times.tolist(), self.numbers or nones, self.texts or nones,
                        strict=True))

    def in_range(self) -> Series:
        """The series without observations whose time is outside years 1-9999."""
        keep = (self.times >= MIN_MS) & (self.times <= MAX_MS)
        if keep.all():
            return self
        flags = keep.tolist()

        def kept(values: list[Any] | None) -> list[Any] | None:
            return None if values is None else [v for v, k in zip(values, flags, strict=True)
                                                if k]

        return Series(self.datastream_id, self.times[keep], kept(self.numbers),
                      kept(self.texts))


async def insert_series(conn: AsyncConnection, dialect: str, series: Sequence[Series]) -> int:
    """Insert ``series`` in ``conn``'s transaction; the number of rows stored (observations
    with a time outside years 1-9999 are skipped and logged)."""
    given = sum(len(s.times) for s in series)
    series = [s for s in (item.in_range() for item in series) if len(s.times)]
    outside = given - sum(len(s.times) for s in series)
    if outside:
        log.warning("skipped %d observations with a time outside years 1-9999", outside)
    if not series:
        return 0
    stats = {}
    for item in series:
        count, first, last = stats.get(item.datastream_id, (0, None, None))
        low, high = int(item.times.min()), int(item.times.max())
        stats[item.datastream_id] = (count + len(item.times),
                                     low if first is None else min(first, low),
                                     high if last is None else max(last, high))
    table = datastreams
    await conn.execute(
        table.update().where(table.c.id == sa.bindparam("ds"))
        .values(count=table.c.count + sa.bindparam("n"),
                first_ms=sa.case((sa.or_(table.c.first_ms.is_(None),
                                         table.c.first_ms > sa.bindparam("lo")),
                                  sa.bindparam("lo")), else_=table.c.first_ms),
                last_ms=sa.case((sa.or_(table.c.last_ms.is_(None),
                                        table.c.last_ms < sa.bindparam("hi")),
                                 sa.bindparam("hi")), else_=table.c.last_ms)),
        [{"ds": ds, "n": n, "lo": lo, "hi": hi} for ds, (n, lo, hi) in sorted(stats.items())])
    records: list[tuple[int, int, float | None, str | None]] = []
    with collector_paused():
        for item in series:
            records.extend(item.records())
    raw = await conn.get_raw_connection()
    driver: Any = raw.driver_connection
    if dialect == "postgresql":
        await driver.copy_records_to_table("observations", records=records, columns=_COLUMNS)
    else:
        await driver.executemany(_SQLITE_INSERT, records)
    return len(records)


def topic_for(sensor: str) -> str:
    """The topic observations of ``sensor`` are published to."""
    topic = TOPIC_PREFIX + sensor
    try:
        return validate_topic_name(topic)
    except Invalid:
        raise Invalid(f"sensor name {sensor!r} is too long for topic {topic[:40]!r}...: "
                      "use routing=db") from None


def message_ids(payloads: Sequence[dict[str, Any]]) -> list[str]:
    """A msg_id per payload derived from its content (and how many equal payloads came before
    it in the request): sending the same request again is deduplicated by the topic."""
    seen: dict[bytes, int] = {}
    ids = []
    for payload in payloads:
        data = orjson.dumps(payload)
        index = seen[data] = seen.get(data, -1) + 1
        ids.append(hashlib.blake2b(data + b"#%d" % index, digest_size=16).hexdigest())
    return ids


async def publish(producers: Producers, topic: str, payloads: list[dict[str, Any]]) -> int:
    """Append ``payloads`` to ``topic`` (created when missing) with content-derived msg_ids (a
    retried request is deduplicated within the topic's dedup window); how many were published.
    """
    if not payloads:
        return 0
    with collector_paused():
        ids = message_ids(payloads)

    async def call(producer: Producer) -> list[int]:
        return await producer.produce_many(payloads, msg_ids=ids)

    await producers.run(topic, PRODUCER_NAME, call)
    return len(payloads)


@dataclass
class ServiceState:
    """What the observation service keeps for the app's life."""

    producers: Producers
    """Publishing producers: topics are created on demand; a call is retried once with a fresh
    producer when its topic was deleted (Closed, NotFound)."""
    cache: DatastreamCache = field(default_factory=DatastreamCache)


def service_state(request: Request) -> ServiceState:
    return request.app.state.observations


__all__ = ["PRODUCER_NAME", "TOPIC_PREFIX", "Series", "ServiceState", "insert_series",
           "message_ids", "publish", "service_state", "topic_for"]
