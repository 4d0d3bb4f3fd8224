"""Which datastreams a query means: filters by sensor, property and feature name, and the
observations of datastreams in a time range.

Each filter is None (no filter) or one or more names (any of them). The feature name ``""``
means "no feature of interest" (observations inserted without one, or with ``""``).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection

from lakeport.errors import NotFound
from lakeport.server.observations.tables import (
    NO_FEATURE,
    datastreams,
    features,
    observations,
    properties,
    sensors,
)


@dataclass(frozen=True, slots=True)
class Stream:
    """A datastream with the names it binds."""

    id: int
    sensor: str
    property: str
    feature: str | None
    unit: str
    data_type: str
    count: int
    first_ms: int | None
    last_ms: int | None


def stream_query() -> sa.Select:
    return (sa.select(datastreams.c.id, sensors.c.name.label("sensor"),
                      properties.c.name.label("property"), features.c.name.label("feature"),
                      properties.c.unit, properties.c.data_type, datastreams.c.count,
                      datastreams.c.first_ms, datastreams.c.last_ms)
            .select_from(datastreams
                         .join(sensors, datastreams.c.sensor_id == sensors.c.id)
                         .join(properties, datastreams.c.property_id == properties.c.id)
                         .outerjoin(features, datastreams.c.feature_id == features.c.id)))


Names = str | Sequence[str] | None
"""A filter: None (any), a name, or several names (any of them)."""


def _names(value: Names) -> list[str] | None:
    if value is None:
        return None
    return [value] if isinstance(value, str) else list(dict.fromkeys(value))


def filtered(query: sa.Select, sensor: Names, property: Names, feature: Names) -> sa.Select:
    """``query`` (joining the datastreams' names) limited to the filters."""
    for column, value in ((sensors.c.name, sensor), (properties.c.name, property)):
        if (names := _names(value)) is not None:
            query = query.where(column.in_(names))
    if (names := _names(feature)) is not None:
        named = [name for name in names if name]
        conditions = [features.c.name.in_(named)] if named else []
        if len(named) < len(names):  # "" asks for observations without a feature
            conditions.append(datastreams.c.feature_id == NO_FEATURE)
        query = query.where(sa.or_(*conditions))
    return query


async def check_names(conn: AsyncConnection, sensor: Names, property: Names,
                      feature: Names) -> None:
    """NotFound naming the first filter value that names nothing."""
    for table, kind, value in ((sensors, "sensor", sensor),
                               (properties, "observed property", property),
                               (features, "feature", feature)):
        wanted = [name for name in _names(value) or () if name]
        if not wanted:
            continue
        found = set((await conn.execute(sa.select(table.c.name)
                                        .where(table.c.name.in_(wanted)))).scalars())
        for name in wanted:
            if name not in found:
                raise NotFound(f"unknown {kind} {name!r}")


async def check_found(conn: AsyncConnection, rows: Sequence[Any], sensor: Names,
                      property: Names, feature: Names) -> None:
    """NotFound naming a filter value that names nothing; the store is asked only about the
    values none of ``rows`` (with sensor, property and feature names) holds."""
    seen = [{row.sensor for row in rows}, {row.property for row in rows},
            {row.feature or "" for row in rows}]
    missing = [None if value is None else [n for n in _names(value) or () if n not in found]
               for value, found in zip((sensor, property, feature), seen, strict=True)]
    if any(missing):
        await check_names(conn, *missing)


async def matching(conn: AsyncConnection, sensor: Names, property: Names,
                   feature: Names) -> list[Stream]:
    """The datastreams matching the filters (NotFound when a filter names nothing)."""
    query = filtered(stream_query(), sensor, property, feature).order_by(datastreams.c.id)
    rows = (await conn.execute(query)).all()
    await check_found(conn, rows, sensor, property, feature)
    return [Stream(*row) for row in rows]


def in_range(query: Any, ids: Iterable[int], low: int | None, high: int | None) -> Any:
    """``query`` (a SELECT or a DELETE) limited to observations of datastreams ``ids`` with
    ``low <= time < high`` (None: open)."""
    obs = observations.c
    query = query.where(obs.datastream_id.in_(list(ids)))
    if low is not None:
        query = query.where(obs.time >= low)
    if high is not None:
        query = query.where(obs.time < high)
    return query


__all__ = ["Names", "Stream", "check_found", "check_names", "filtered", "in_range", "matching",
           "stream_query"]
