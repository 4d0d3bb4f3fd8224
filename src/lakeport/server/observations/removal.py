"""Deleting observations: a sensor's observations in a time range (optionally of one observed
property or feature), keeping each datastream's count and first/last time right."""

from __future__ import annotations

import sqlalchemy as sa
from fastapi import APIRouter, Depends
from sqlalchemy.ext.asyncio import AsyncConnection

from lakeport.server.access import Level
from lakeport.server.auth import current_user
from lakeport.server.deps import get_store
from lakeport.server.observations.access import require_named
from lakeport.server.observations.query import TimeParam, time_range
from lakeport.server.observations.select import in_range, matching
from lakeport.server.observations.tables import datastreams, observations
from lakeport.server.store import Store
from lakeport.server.store.users import User

router = APIRouter()
obs = observations.c


async def _recount(conn: AsyncConnection, ids: list[int]) -> None:
    """Set count, first_ms and last_ms of datastreams ``ids`` from their observations."""
    of = obs.datastream_id == datastreams.c.id
    table = datastreams
    await conn.execute(table.update().where(table.c.id.in_(ids)).values(
        count=sa.select(sa.func.count()).select_from(observations).where(of)
        .scalar_subquery(),
        first_ms=sa.select(sa.func.min(obs.time)).where(of).scalar_subquery(),
        last_ms=sa.select(sa.func.max(obs.time)).where(of).scalar_subquery()))


@router.delete("/observations", summary="Delete a sensor's observations in a time range "
                                        "(needs admin access to the sensor)")
async def delete_observations(
        sensor: str, property: str | None = None, feature: str | None = None,
        start: TimeParam = None, end: TimeParam = None, user: User = Depends(current_user),
        store: Store = Depends(get_store)) -> dict[str, int]:
    low, high = time_range(start, end)
    async with store.begin() as conn:
        await require_named(conn, user, "sensor", sensor, Level.ADMIN,
                            "delete observations of")
        streams = await matching(conn, sensor, property, feature)
        if not streams:
            return {"deleted": 0}
        ids = [s.id for s in streams]
        # lock the datastreams first: inserts update their row before adding observations,
        # so none can add to them until this transaction ends and the counts stay exact
        await conn.execute(sa.select(datastreams.c.id).where(datastreams.c.id.in_(ids))
                           .order_by(datastreams.c.id).with_for_update())
        touched = sorted((await conn.execute(
            in_range(sa.select(obs.datastream_id).distinct(), ids, low, high))).scalars())
        if not touched:
            return {"deleted": 0}
        result = await conn.execute(in_range(observations.delete(), touched, low, high))
        await _recount(conn, touched)
    return {"deleted": int(result.rowcount)}


__all__ = ["router"]
