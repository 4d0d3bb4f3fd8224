"""Which datastreams a query means: filters by sensor, property and feature name, and the
observations of datastreams in a time range."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection

from lakeport.errors import NotFound
from lakeport.server.observations.tables import (
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


def filtered(query: sa.Select, sensor: str | None, property: str | None,
             feature: str | None) -> sa.Select:
    if sensor is not None:
        query = query.where(sensors.c.name == sensor)
    if property is not None:
        query = query.where(properties.c.name == property)
    if feature is not None:
        query = query.where(features.c.name == feature)
    return query


async def check_names(conn: AsyncConnection, sensor: str | None, property: str | None,
                      feature: str | None) -> None:
    """NotFound naming the first filter that names nothing."""
    for table, kind, name in ((sensors, "sensor", sensor),
                              (properties, "observed property", property),
                              (features, "feature", feature)):
        if name is not None:
            found = (await conn.execute(sa.select(table.c.id).where(table.c.name == name))
                     ).first()
            if found is None:
                raise NotFound(f"unknown {kind} {name!r}")


async def matching(conn: AsyncConnection, sensor: str | None, property: str | None,
                   feature: str | None) -> list[Stream]:
    """The datastreams matching the filters (NotFound when a filter names nothing)."""
    query = filtered(stream_query(), sensor, property, feature).order_by(datastreams.c.id)
    rows = (await conn.execute(query)).all()
    if not rows:
        await check_names(conn, sensor, property, feature)
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


__all__ = ["Stream", "check_names", "filtered", "in_range", "matching", "stream_query"]
