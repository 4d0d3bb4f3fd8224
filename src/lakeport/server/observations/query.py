"""Reading observations: pages, latest values, aggregates per time bucket, counts."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Annotated, Any, Literal

import numpy as np
import sqlalchemy as sa
from fastapi import APIRouter, Depends, Query

from lakeport.errors import Invalid
from lakeport.server.auth import current_user
from lakeport.server.deps import get_store
from lakeport.server.observations import download
from lakeport.server.observations.buckets import buckets
from lakeport.server.observations.catalog import decode_value
from lakeport.server.observations.select import (
    Stream,
    check_found,
    filtered,
    in_range,
    matching,
    stream_query,
)
from lakeport.server.observations.tables import (
    datastreams,
    features,
    observations,
    properties,
    sensors,
)
from lakeport.server.paging import Cursor, Limit, decode_cursor, encode_cursor
from lakeport.server.store import Store
from lakeport.server.store.users import User
from lakeport.server.times import format_time, format_times, time_param

router = APIRouter()
obs = observations.c
FUNCTIONS = ("avg", "min", "max", "sum", "count", "first", "last")
TimeParam = Annotated[str | None, Query(description="ISO 8601, epoch ms or dd-MMM-yyyy "
                                                    "HH:mm:ss[.SSS] [zone]")]
Filter = Annotated[list[str] | None, Query(description="a name; repeat it for any of several")]
FeatureFilter = Annotated[list[str] | None, Query(
    description='a feature name, or "" for observations without one; repeat it for any of '
                "several")]


def time_range(start: str | None, end: str | None) -> tuple[int | None, int | None]:
    """(start, end) in UTC ms; Invalid when start is after end."""
    low, high = time_param(start, "start"), time_param(end, "end")
    if low is not None and high is not None and low > high:
        raise Invalid(f"start {start} is after end {end}")
    return low, high


def _after(query: sa.Select, cursor: Any, descending: bool) -> tuple[sa.Select, int]:
    """The query from ``cursor`` ([time, datastream, rows of that pair already returned])."""
    if cursor is None:
        return query, 0
    if not (isinstance(cursor, list) and len(cursor) == 3 and
            all(type(v) is int for v in cursor) and cursor[2] >= 0):
        raise Invalid("bad cursor: pass next_cursor of the previous page unchanged")
    time, ds, skip = cursor
    if descending:
        query = query.where(obs.time <= time, sa.or_(obs.time < time, obs.datastream_id <= ds))
    else:
        query = query.where(obs.time >= time, sa.or_(obs.time > time, obs.datastream_id >= ds))
    return query, skip


def _next_cursor(rows: Sequence[Any], cursor: Any) -> str:
    time, ds = rows[-1][1], rows[-1][0]
    same = 0
    for row in reversed(rows):
        if row[1] != time or row[0] != ds:
            break
        same += 1
    if same == len(rows) and cursor is not None and cursor[:2] == [time, ds]:
        same += cursor[2]
    return encode_cursor([time, ds, same])


def items(rows: Sequence[Any], by_id: dict[int, Stream]) -> list[dict[str, Any]]:
    stamps = format_times(np.fromiter((r[1] for r in rows), np.int64, len(rows))).to_pylist()
    out = []
    for (ds, _, number, text), stamp in zip(rows, stamps, strict=True):
        stream = by_id[ds]
        out.append({"sensor": stream.sensor, "feature": stream.feature,
                    "property": stream.property, "time": stamp,
                    "value": decode_value(number, text, stream.data_type)})
    return out


@router.get("/observations", summary="Observations by sensor, property, feature and time "
                                     "(paged JSON, or a CSV / Parquet download)")
async def query_observations(
        sensor: Filter = None, property: Filter = None, feature: FeatureFilter = None,
        start: TimeParam = None, end: TimeParam = None, limit: Limit = 100,
        cursor: Cursor = None, order: Literal["asc", "desc"] = "asc",
        format: Literal["json", "csv", "parquet"] = "json",
        _: User = Depends(current_user), store: Store = Depends(get_store)) -> Any:
    low, high = time_range(start, end)
    after = decode_cursor(cursor)
    async with store.connect() as conn:
        streams = await matching(conn, sensor, property, feature)
        if format != "json":
            return download.response(store, streams, low, high, order, format)
        if not streams:
            return {"items": [], "next_cursor": None}
        by_id = {s.id: s for s in streams}
        query = in_range(sa.select(obs.datastream_id, obs.time, obs.value_number,
                                   obs.value_text), by_id, low, high)
        query, skip = _after(query, after, order == "desc")
        columns = [obs.time, obs.datastream_id, obs.value_number, obs.value_text]
        query = query.order_by(*(c.desc() if order == "desc" else c for c in columns))
        rows = (await conn.execute(query.offset(skip).limit(limit + 1))).all()
    more = len(rows) > limit
    rows = rows[:limit]
    return {"items": items(rows, by_id),
            "next_cursor": _next_cursor(rows, after) if more else None}


async def _values_at(conn: Any, pairs: list[tuple[int, int]]) -> dict[tuple[int, int], Any]:
    """(number, text) of the observation at each (datastream, time): one of them when several
    share the time."""
    found: dict[tuple[int, int], Any] = {}
    for begin in range(0, len(pairs), 400):
        chunk = pairs[begin:begin + 400]
        query = (sa.select(obs.datastream_id, obs.time, obs.value_number, obs.value_text)
                 .where(sa.or_(*(sa.and_(obs.datastream_id == d, obs.time == t)
                                 for d, t in chunk)))
                 .order_by(obs.datastream_id, obs.time, obs.value_number, obs.value_text))
        for row in await conn.execute(query):
            found.setdefault((row[0], row[1]), (row[2], row[3]))
    return found


@router.get("/observations/latest", summary="The latest observation of each datastream")
async def latest(sensor: Filter = None, property: Filter = None,
                 feature: FeatureFilter = None, _: User = Depends(current_user),
                 store: Store = Depends(get_store)) -> dict[str, Any]:
    query = filtered(stream_query().add_columns(obs.value_number, obs.value_text).join(
        observations, sa.and_(obs.datastream_id == datastreams.c.id,
                              obs.time == datastreams.c.last_ms)), sensor, property, feature)
    query = query.order_by(datastreams.c.id, obs.value_number, obs.value_text)
    async with store.connect() as conn:
        rows = (await conn.execute(query)).all()
        await check_found(conn, rows, sensor, property, feature)
    out: dict[int, dict[str, Any]] = {}
    for row in rows:
        if row.id not in out:  # one of several observations sharing the latest time
            out[row.id] = {"sensor": row.sensor, "feature": row.feature,
                           "property": row.property, "time": format_time(row.last_ms),
                           "value": decode_value(row.value_number, row.value_text,
                                                 row.data_type)}
    return {"items": list(out.values())}


def _functions(fn: str) -> list[str]:
    chosen = [name.strip() for name in fn.split(",") if name.strip()]
    for name in chosen:
        if name not in FUNCTIONS:
            raise Invalid(f"unknown function {name!r} in fn: use {', '.join(FUNCTIONS)}")
    if not chosen:
        raise Invalid(f"fn names no function: use {', '.join(FUNCTIONS)}")
    return list(dict.fromkeys(chosen))


@router.get("/observations/aggregate", summary="Aggregates per time bucket and datastream")
async def aggregate(sensor: Filter = None, property: Filter = None,
                    feature: FeatureFilter = None, start: TimeParam = None,
                    end: TimeParam = None, bucket: Literal["1m", "1h", "1d"] = "1h",
                    fn: str = "avg,min,max,count",
                    tz: Annotated[str, Query(description=(
                        "buckets start at this zone's local minute, hour or midnight: an IANA "
                        "name (Asia/Kolkata), an offset (+05:30, UTC+5:30) or an abbreviation "
                        "(IST)"))] = "UTC",
                    _: User = Depends(current_user), store: Store = Depends(get_store)
                    ) -> dict[str, Any]:
    low, high = time_range(start, end)
    chosen = _functions(fn)
    plan = buckets(bucket, tz)
    slot = plan.slot(obs.time).label("bucket")
    number = obs.value_number
    query = sa.select(obs.datastream_id, slot, sa.func.count(), sa.func.count(number),
                      sa.func.sum(number), sa.func.min(number), sa.func.max(number),
                      sa.func.min(obs.time), sa.func.max(obs.time))
    async with store.connect() as conn:
        streams = await matching(conn, sensor, property, feature)
        if not streams:
            return {"items": []}
        by_id = {s.id: s for s in streams}
        query = in_range(query, by_id, low, high).group_by(obs.datastream_id, slot)
        groups = _merge((await conn.execute(query.order_by(obs.datastream_id, slot))).all(),
                        plan.start)
        ends: list[tuple[int, int]] = []
        if "first" in chosen:
            ends.extend((g[0], g[7]) for g in groups)
        if "last" in chosen:
            ends.extend((g[0], g[8]) for g in groups)
        values = await _values_at(conn, sorted(set(ends)))
    out = []
    for ds, start_ms, count_all, numbers, total, least, most, first_ms, last_ms in groups:
        stream = by_id[ds]
        item: dict[str, Any] = {"sensor": stream.sensor, "feature": stream.feature,
                                "property": stream.property, "bucket": format_time(start_ms)}
        numeric = stream.data_type == "number" and numbers > 0
        stats = {"avg": total / numbers if numeric else None, "sum": total,
                 "min": least, "max": most}
        for name in chosen:
            if name == "count":
                item[name] = count_all
            elif name in stats:
                item[name] = float(stats[name]) if numeric else None
            else:
                at = (ds, first_ms if name == "first" else last_ms)
                item[name] = decode_value(*values[at], stream.data_type) \
                    if at in values else None
        out.append(item)
    return {"items": out}


def _merge(slots: Sequence[Any], start: Any) -> list[list[Any]]:
    """Slot rows (datastream, slot, count, number count, sum, min, max, first, last), ordered
    by datastream and slot, merged into their buckets (``start`` maps a slot to its bucket)."""
    merged: list[list[Any]] = []
    for ds, slot, count_all, numbers, total, least, most, first_ms, last_ms in slots:
        begin = start(int(slot))
        row = merged[-1] if merged and merged[-1][:2] == [ds, begin] else None
        if row is None:
            merged.append([ds, begin, count_all, numbers, total, least, most, first_ms,
                           last_ms])
            continue
        row[2] += count_all
        row[3] += numbers
        row[4] = total if row[4] is None else row[4] if total is None else row[4] + total
        row[5] = least if row[5] is None else row[5] if least is None else min(row[5], least)
        row[6] = most if row[6] is None else row[6] if most is None else max(row[6], most)
        row[7], row[8] = min(row[7], first_ms), max(row[8], last_ms)
    return merged


@router.get("/observations/count", summary="How many observations match")
async def count(sensor: Filter = None, property: Filter = None,
                feature: FeatureFilter = None, start: TimeParam = None, end: TimeParam = None,
                _: User = Depends(current_user), store: Store = Depends(get_store)
                ) -> dict[str, int]:
    low, high = time_range(start, end)
    async with store.connect() as conn:
        streams = await matching(conn, sensor, property, feature)
        if (low is None and high is None) or not streams:
            return {"count": sum(s.count for s in streams)}
        query = in_range(sa.select(sa.func.count()).select_from(observations),
                         [s.id for s in streams], low, high)
        return {"count": int((await conn.execute(query)).scalar() or 0)}


def _stream_json(row: Any) -> dict[str, Any]:
    return {"id": row.id, "sensor": row.sensor, "property": row.property,
            "feature": row.feature, "unit": row.unit, "data_type": row.data_type,
            "count": row.count,
            "first": None if row.first_ms is None else format_time(row.first_ms),
            "last": None if row.last_ms is None else format_time(row.last_ms)}


@router.get("/datastreams", summary="Datastreams (sensor, property, feature) with counts")
async def list_datastreams(sensor: Filter = None, property: Filter = None,
                           feature: FeatureFilter = None, limit: Limit = 100,
                           cursor: Cursor = None, _: User = Depends(current_user),
                           store: Store = Depends(get_store)) -> dict[str, Any]:
    after = decode_cursor(cursor)
    if after is not None and type(after) is not int:
        raise Invalid("bad cursor: pass next_cursor of the previous page unchanged")
    query = filtered(stream_query(), sensor, property, feature)
    if after is not None:
        query = query.where(datastreams.c.id > after)
    async with store.connect() as conn:
        rows = (await conn.execute(query.order_by(datastreams.c.id).limit(limit + 1))).all()
        if after is None:
            await check_found(conn, rows, sensor, property, feature)
    more = len(rows) > limit
    rows = rows[:limit]
    return {"items": [_stream_json(r) for r in rows],
            "next_cursor": encode_cursor(rows[-1].id) if more else None}


@router.get("/counts", summary="How many features, sensors, properties, datastreams and "
                               "observations the store holds")
async def counts(_: User = Depends(current_user), store: Store = Depends(get_store)
                 ) -> dict[str, int]:
    one = sa.select
    query = one(one(sa.func.count()).select_from(features).scalar_subquery(),
                one(sa.func.count()).select_from(sensors).scalar_subquery(),
                one(sa.func.count()).select_from(properties).scalar_subquery(),
                one(sa.func.count()).select_from(datastreams).scalar_subquery(),
                one(sa.func.coalesce(sa.func.sum(datastreams.c.count), 0)).scalar_subquery())
    async with store.connect() as conn:
        row = (await conn.execute(query)).one()
    return dict(zip(("features", "sensors", "properties", "datastreams", "observations"),
                    (int(v) for v in row), strict=True))


__all__ = ["router", "time_range"]
