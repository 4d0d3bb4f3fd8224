"""The recorder: stores topics of sensor readings as observations.

For each topic in ``record_topics`` a task reads with the durable exclusive consumer
``recorder`` (position ``unread``) in blocks, maps each reading of the app message format
(``{"asset", "datastream", "value", "unit", "time", "type"}``, or of the SOS JSON
``{"sensor", "feature", "observations": {name: value}, "time"}``: one reading per observation,
asset = sensor, datastream = the observation's name) to sensor = asset, feature of interest =
the SOS ``feature`` or else the asset, and observed property = datastream (created on first
sight, owned by ``recorder``, data type from the value, unit from ``unit``), inserts the block
in one transaction and acks it after the commit. A message that is no valid reading (not
JSON, not a reading, a name that is not a valid name, a time outside the years 1-9999, a
value that does not fit the property's data type or holds a NUL character) is not stored: it
goes, with its exact bytes, key and headers and a ``dead-letter-reason`` header, to the
dead-letter topic ``dead-letter.recorder.<topic>`` (``lakeport.streams.dead_letters``) before
the block is acked, so nothing is lost.

A block that cannot be stored is never skipped: while the store is unreachable (a connection
refused or lost, a server shutting down, a busy SQLite file) the block is tried again with a
backoff that doubles up to ``RETRY_MAX`` seconds, nothing is acked and the consumer's lag grows;
once the store is back the block is stored and recording goes on. Other errors are retried the
same way with their traceback in the log, and so is a dead-letter topic that cannot be written.
"""

from __future__ import annotations

import asyncio
import logging
import re
from collections.abc import Iterable
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import sqlalchemy as sa
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import AsyncConnection

from lakeport.apps.messages import dead_letter_topic
from lakeport.errors import Transient
from lakeport.readings import DATA_TYPES, DeadLetter, build_rows
from lakeport.server.observations.catalog import ensure_datastreams
from lakeport.server.observations.models import NAME_PATTERN
from lakeport.server.observations.tables import features, properties, sensors
from lakeport.server.observations.writer import Series, ServiceState, insert_series
from lakeport.server.store import Store, insert_ignore
from lakeport.server.store.schema import now_ms
from lakeport.server.times import MAX_MS, MIN_MS
from lakeport.streams import Engine, dead_letters
from lakeport.streams.base import Producer
from lakeport.streams.block import MessageBlock

log = logging.getLogger("lakeport.server.recorder")
CONSUMER = "recorder"
OWNER = "recorder"
BLOCK = 50_000
RETRY_FIRST = 0.1
RETRY_MAX = 5.0
_NAME = re.compile(NAME_PATTERN)
# SQLSTATE classes and codes a retry can get past: connection exceptions, insufficient
# resources, operator intervention (admin / crash shutdown, cannot connect now), serialization
# failures and deadlocks, a lock not available
_TRANSIENT_STATES = ("08", "53", "57P", "40001", "40P01", "55P03")
# SQLite's errors of a file it cannot use now (sqlite3.OperationalError has no code to test)
_SQLITE_BUSY = ("database is locked", "database table is locked", "unable to open database",
                "disk i/o error")


async def _ensure(conn: AsyncConnection, dialect: str, table: sa.Table,
                  rows: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """Rows of ``table`` by name, creating the missing ones from ``rows``."""
    names = sorted(rows)
    found = {r.name: r for r in await conn.execute(sa.select(table)
                                                   .where(table.c.name.in_(names)))}
    missing = [rows[name] for name in names if name not in found]
    if missing:
        await conn.execute(insert_ignore(dialect, table), missing)
        found.update({r.name: r for r in await conn.execute(
            sa.select(table).where(table.c.name.in_([m["name"] for m in missing])))})
    return found


def _groups(keys: pa.Array) -> Iterable[tuple[str, np.ndarray]]:
    encoded = keys.dictionary_encode()
    codes = encoded.indices.to_numpy(zero_copy_only=False)
    order = np.argsort(codes, kind="stable")
    bounds = np.flatnonzero(np.diff(codes[order])) + 1
    for part in np.split(order, bounds):
        if part.size:
            yield encoded.dictionary[int(codes[part[0]])].as_py(), part


Rejected = list[tuple[int, str]]
"""Readings the store cannot take: (seqno, why)."""


async def store_rows(store: Store, state: ServiceState, rows: pa.Table) -> tuple[int, Rejected]:
    """Store reading rows (``lakeport.readings.ROW_SCHEMA``, and an optional ``feature``
    column: null means the asset); (stored, the rows not stored
    as ``(seqno, why)``: a name that is not a valid name, a time outside the years 1-9999, a
    value that does not fit its property's data type or holds a NUL character)."""
    if not rows.num_rows:
        return 0, []
    seqnos = rows["seqno"].combine_chunks().to_numpy(zero_copy_only=False)
    rejected: Rejected = []

    def reject(index: np.ndarray, why: str) -> None:
        rejected.extend((int(seqnos[i]), why) for i in index)

    number, string = rows["value_number"].combine_chunks(), rows["value_string"].combine_chunks()
    boolean, obj = rows["value_bool"].combine_chunks(), rows["value_object"].combine_chunks()
    kind = np.select([number.is_valid().to_numpy(zero_copy_only=False),
                      string.is_valid().to_numpy(zero_copy_only=False),
                      boolean.is_valid().to_numpy(zero_copy_only=False)], [0, 1, 2], 3)
    nul = pc.fill_null(pc.match_substring(string, "\x00"), False).to_numpy(zero_copy_only=False)
    times = np.floor_divide(rows["time"].combine_chunks().cast(pa.int64())
                            .to_numpy(zero_copy_only=False), 1000)
    outside = (times < MIN_MS) | (times > MAX_MS)
    units = rows["unit"].combine_chunks()
    assets = rows["asset"].combine_chunks()
    of = assets if "feature" not in rows.column_names else \
        pc.coalesce(rows["feature"].combine_chunks(), assets)  # the asset unless given
    keys = pc.binary_join_element_wise(assets, rows["datastream"].combine_chunks(), of, "\x1f")
    groups = [(key.split("\x1f", 2), index) for key, index in _groups(keys)]
    good = []
    for (asset, stream, feature), index in groups:
        named = [("asset", asset), ("datastream", stream)]
        if feature != asset:
            named.append(("feature", feature))
        bad = [f"{what} {name!r} is not a valid name (1-200 of A-Z a-z 0-9 + _ = : @ . -)"
               for what, name in named if not _NAME.fullmatch(name)]
        if bad:
            reject(index, "; ".join(bad))
            continue
        reject(index[outside[index]], "time is outside the years 1-9999")
        index = index[~outside[index]]
        if index.size:
            good.append((asset, stream, feature, index))
    created = now_ms()
    sensor_rows = {a: {"name": a, "description": "", "kind": "atomic", "components": "[]",
                       "meta": "{}", "owner": OWNER, "created_ms": created}
                   for a, _, _, _ in good}
    feature_rows = {f: {"name": f, "description": "", "geometry": None, "parent_id": None,
                        "properties": "{}", "owner": OWNER, "created_ms": created}
                    for _, _, f, _ in good}
    property_rows = {}
    for _, stream, _, index in good:
        unit = units[int(index[0])].as_py() or ""
        property_rows.setdefault(stream, {
            "name": stream, "unit": unit.replace("\x00", "")[:100],
            "data_type": DATA_TYPES[int(kind[index[0]])], "description": "", "owner": OWNER,
            "created_ms": created})
    async with store.begin() as conn:
        sensor_by = await _ensure(conn, store.dialect, sensors, sensor_rows)
        feature_by = await _ensure(conn, store.dialect, features, feature_rows)
        prop_by = await _ensure(conn, store.dialect, properties, property_rows)
        planned = []
        for asset, stream, feature, index in good:
            prop = prop_by[stream]
            fits = kind[index] == DATA_TYPES.index(prop.data_type)
            for code in np.unique(kind[index][~fits]):
                reject(index[kind[index] == code],
                       f"value is a {DATA_TYPES[int(code)]} but property {stream!r} holds "
                       f"{prop.data_type} values")
            reject(index[fits & nul[index]], "value holds a NUL character, which the store "
                                             "cannot keep")
            keep = index[fits & ~nul[index]]
            if keep.size:
                planned.append(((sensor_by[asset].id, prop.id, feature_by[feature].id), prop,
                                keep))
        ids, fresh = await ensure_datastreams(conn, store.dialect, state.cache,
                                              [t for t, _, _ in planned])
        series = []
        for triple, prop, keep in planned:
            take = pa.array(keep)
            if prop.data_type == "number":
                series.append(Series(ids[triple], times[keep], number.take(take).to_pylist(),
                                     None))
                continue
            column = {"string": string, "object": obj}.get(prop.data_type)
            texts = column.take(take).to_pylist() if column is not None else [
                "true" if v else "false" for v in boolean.take(take).to_pylist()]
            series.append(Series(ids[triple], times[keep], None, texts))
        stored = await insert_series(conn, store.dialect, series)
    state.cache.remember(fresh)
    rejected.sort()
    return stored, rejected


def transient(exc: BaseException) -> bool:
    """Whether ``exc`` (or an error it wraps) says the store is unreachable or busy for now."""
    seen: set[int] = set()
    todo: list[BaseException | None] = [exc]
    while todo:
        err = todo.pop()
        if err is None or id(err) in seen:
            continue
        seen.add(id(err))
        if isinstance(err, (Transient, OSError)):
            return True
        if isinstance(err, DBAPIError) and err.connection_invalidated:
            return True
        state = getattr(err, "sqlstate", None)
        if isinstance(state, str) and state.startswith(_TRANSIENT_STATES):
            return True
        # asyncpg's own errors of a closed or broken session (COPY raises them past
        # SQLAlchemy), e.g. the next call on a session the server has just ended
        if type(err).__module__.startswith("asyncpg") and type(err).__name__ in (
                "InterfaceError", "InternalClientError", "ConnectionDoesNotExistError"):
            return True
        if type(err).__module__ == "sqlite3" and str(err).lower().startswith(_SQLITE_BUSY):
            return True
        todo += [getattr(err, "orig", None), err.__cause__, err.__context__]
    return False


async def _store_until_stored(store: Store, state: ServiceState, topic: str, what: str,
                              rows: pa.Table) -> Rejected:
    """Store ``rows``, trying again with a growing delay (at most ``RETRY_MAX`` seconds) until
    it succeeds; the readings not stored as invalid."""
    failures = 0
    delay = RETRY_FIRST
    while True:
        try:
            _, rejected = await store_rows(store, state, rows)
        except Exception as exc:
            failures += 1
            if transient(exc):
                log.warning("recorder %s: the store is unavailable (failure %d), %s not acked; "
                            "retrying in %.1f s: %s", topic, failures, what, delay,
                            str(exc).splitlines()[0] if str(exc) else type(exc).__name__)
            else:
                log.exception("recorder %s: storing %s failed (failure %d), not acked; "
                              "retrying in %.1f s", topic, what, failures, delay)
            await asyncio.sleep(delay)
            delay = min(delay * 2, RETRY_MAX)
            continue
        if failures:
            log.warning("recorder %s: stored %s after %d failures", topic, what, failures)
        return rejected


class _DeadLetters:
    """The dead-letter topic of one recorded topic, opened on first use."""

    def __init__(self, engine: Engine, topic: str) -> None:
        self.engine = engine
        self.topic = topic
        self.name = dead_letter_topic(f"recorder.{topic}")
        self.producer: Producer | None = None

    async def send(self, letters: list[DeadLetter], what: str) -> None:
        """Send ``letters``, trying again with a growing delay until they are sent (msg_ids
        ``<topic>:<seqno>`` store a letter sent again once)."""
        failures = 0
        delay = RETRY_FIRST
        while True:
            try:
                if self.producer is None:
                    producer = self.engine.producer(CONSUMER, self.name,
                                                    options=dead_letters.OPTIONS)
                    await producer.open()
                    self.producer = producer
                await dead_letters.send_dead_letters(self.producer, self.topic, letters,
                                                     f"{self.topic}:")
                return
            except Exception:
                failures += 1
                log.exception("recorder %s: cannot write %d dead letters of %s to %s "
                              "(failure %d), not acked; retrying in %.1f s", self.topic,
                              len(letters), what, self.name, failures, delay)
                await self.close()
                await asyncio.sleep(delay)
                delay = min(delay * 2, RETRY_MAX)

    async def close(self) -> None:
        producer, self.producer = self.producer, None
        if producer is not None:
            try:
                await producer.close()
            except Exception:
                log.debug("recorder %s: closing the dead-letter producer failed", self.topic,
                          exc_info=True)


def _letters(block: MessageBlock, dead: list[DeadLetter], rejected: Rejected
             ) -> list[DeadLetter]:
    """The dead letters of ``block``: the messages that are no readings, then the readings
    the store rejected, in seqno order."""
    if not rejected:
        return dead
    by_seqno = {m.seqno: m for m in block.messages()}
    letters = {m.seqno: (m, why) for m, why in dead}
    for seqno, why in rejected:  # an SOS message has a row per observation: one letter
        letters.setdefault(seqno, (by_seqno[seqno], why))
    return sorted(letters.values(), key=lambda letter: letter[0].seqno)


async def record(engine: Engine, store: Store, state: ServiceState, topic: str) -> None:
    """Record ``topic`` until cancelled (reopening the consumer after a failure)."""
    letters = _DeadLetters(engine, topic)
    while True:
        try:
            async with engine.consumer(CONSUMER, topic, position="unread",
                                       on_no_exists="wait") as consumer:
                while True:
                    try:
                        block = await consumer.recv_block(BLOCK, timeout=1.0)
                    except TimeoutError:
                        continue
                    if not len(block):
                        continue
                    rows, dead = build_rows(block, sos=True)
                    what = f"seqnos {block.first_seqno}-{block.last_seqno}"
                    rejected = await _store_until_stored(store, state, topic, what, rows)
                    invalid = _letters(block, dead, rejected)
                    if invalid:
                        await letters.send(invalid, what)
                    await consumer.ack(block.last_seqno)
                    if invalid:
                        log.warning("recorder %s: %d invalid readings of %s sent to %s (seqno "
                                    "%d: %s)", topic, len(invalid), what, letters.name,
                                    invalid[0][0].seqno, invalid[0][1])
        except asyncio.CancelledError:
            raise
        except Exception:
            log.exception("recorder %s failed; retrying in 1 s", topic)
            await asyncio.sleep(1.0)
        finally:
            await letters.close()


__all__ = ["CONSUMER", "RETRY_MAX", "record", "store_rows", "transient"]
