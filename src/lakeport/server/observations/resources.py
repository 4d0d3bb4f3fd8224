"""Features of interest, sensors and observed properties: create, list, get, patch, delete.

Names are unique per kind. The creator owns a resource; every authenticated user may read it,
changing it takes write access and deleting it admin access (``observations/access.py``).
"""

from __future__ import annotations

from typing import Any

import orjson
import sqlalchemy as sa
from fastapi import APIRouter, Depends, Request, Response
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncConnection

from lakeport.errors import Conflict, Invalid, NotFound
from lakeport.server.access import Level, forget
from lakeport.server.auth import current_user
from lakeport.server.deps import get_store
from lakeport.server.observations.access import require_on
from lakeport.server.observations.models import (
    FeatureIn,
    FeaturePatch,
    PropertyIn,
    PropertyPatch,
    SensorIn,
    SensorPatch,
)
from lakeport.server.observations.tables import (
    datastreams,
    features,
    observations,
    properties,
    sensors,
)
from lakeport.server.observations.writer import service_state
from lakeport.server.paging import (
    Cursor,
    Limit,
    decode_cursor,
    dump_json,
    encode_cursor,
)
from lakeport.server.store import Store
from lakeport.server.store.schema import now_ms
from lakeport.server.store.users import User
from lakeport.server.times import format_time

router = APIRouter()
_parent = features.alias("parent")


# -- shared ----------------------------------------------------------------------------------
async def _one(conn: AsyncConnection, query: sa.Select, kind: str, name: str) -> Any:
    row = (await conn.execute(query)).first()
    if row is None:
        raise NotFound(f"unknown {kind} {name!r}")
    return row


async def _insert(conn: AsyncConnection, table: sa.Table, kind: str, values: dict[str, Any]
                  ) -> None:
    name = values["name"]
    exists = (await conn.execute(sa.select(table.c.id).where(table.c.name == name))).first()
    if exists is not None:
        raise Conflict(f"{kind} {name!r} exists")
    try:
        await conn.execute(table.insert().values(**values))
    except IntegrityError:
        raise Conflict(f"{kind} {name!r} exists") from None


async def _page(store: Store, query: sa.Select, name_column: sa.Column, limit: int,
                cursor: str | None, render: Any) -> dict[str, Any]:
    after = decode_cursor(cursor)
    if after is not None:
        if not isinstance(after, str):
            raise Invalid("bad cursor: pass next_cursor of the previous page unchanged")
        query = query.where(name_column > after)
    async with store.connect() as conn:
        rows = (await conn.execute(query.order_by(name_column).limit(limit + 1))).all()
    more = len(rows) > limit
    rows = rows[:limit]
    return {"items": [render(row) for row in rows],
            "next_cursor": encode_cursor(rows[-1].name) if more else None}


async def _in_use(conn: AsyncConnection, column: sa.Column, ident: int) -> str | None:
    """None when no observations bind ``ident``; else which sensor's do, and whose it is."""
    query = (sa.select(sensors.c.name, sensors.c.owner)
             .join(datastreams, datastreams.c.sensor_id == sensors.c.id)
             .where(column == ident, datastreams.c.count > 0).limit(1))
    row = (await conn.execute(query)).first()
    return None if row is None else f"sensor {row.name!r} of {row.owner!r}"


# -- features --------------------------------------------------------------------------------
def _feature_query() -> sa.Select:
    return (sa.select(features, _parent.c.name.label("parent_name"))
            .select_from(features.outerjoin(_parent, features.c.parent_id == _parent.c.id)))


def _feature_json(row: Any) -> dict[str, Any]:
    return {"name": row.name, "description": row.description,
            "geometry": None if row.geometry is None else orjson.loads(row.geometry),
            "parent": row.parent_name, "properties": orjson.loads(row.properties),
            "owner": row.owner, "created": format_time(row.created_ms)}


async def _drop_empty(request: Request, conn: AsyncConnection, column: sa.Column,
                      ident: int) -> None:
    """Delete the (emptied) datastreams that bind ``ident`` and forget their cached ids."""
    ids = set((await conn.execute(sa.select(datastreams.c.id).where(column == ident))
               ).scalars())
    if ids:
        await conn.execute(observations.delete().where(
            observations.c.datastream_id.in_(ids)))
        await conn.execute(datastreams.delete().where(datastreams.c.id.in_(ids)))
        service_state(request).cache.forget(ids)


async def _feature_row(conn: AsyncConnection, name: str) -> Any:
    return await _one(conn, _feature_query().where(features.c.name == name), "feature", name)


async def _parent_id(conn: AsyncConnection, parent: str | None, child_id: int | None = None
                     ) -> int | None:
    """The id of ``parent``; Invalid when it would make ``child_id`` its own ancestor."""
    if parent is None:
        return None
    row = await _one(conn, sa.select(features.c.id, features.c.parent_id)
                     .where(features.c.name == parent), "feature", parent)
    ancestor: int | None = row.id
    seen: set[int] = set()
    while ancestor is not None and ancestor not in seen:
        if ancestor == child_id:
            raise Invalid(f"parent {parent!r} would make a cycle: it is the feature itself or "
                          "one of its descendants")
        seen.add(ancestor)
        ancestor = (await conn.execute(sa.select(features.c.parent_id)
                                       .where(features.c.id == ancestor))).scalar()
    return int(row.id)


@router.post("/features", status_code=201, summary="Create a feature of interest")
async def create_feature(body: FeatureIn, user: User = Depends(current_user),
                         store: Store = Depends(get_store)) -> dict[str, Any]:
    geometry = None if body.geometry is None else body.geometry.model_dump()
    async with store.begin() as conn:
        parent_id = await _parent_id(conn, body.parent)
        await _insert(conn, features, "feature", {
            "name": body.name, "description": body.description,
            "geometry": None if geometry is None else dump_json(geometry, "geometry"),
            "parent_id": parent_id, "properties": dump_json(body.properties, "properties"),
            "owner": user.name, "created_ms": now_ms()})
        return _feature_json(await _feature_row(conn, body.name))


@router.get("/features", summary="List features of interest (paged, by name)")
async def list_features(parent: str | None = None, limit: Limit = 100, cursor: Cursor = None,
                        _: User = Depends(current_user), store: Store = Depends(get_store)
                        ) -> dict[str, Any]:
    query = _feature_query()
    if parent is not None:
        query = query.where(_parent.c.name == parent)
    return await _page(store, query, features.c.name, limit, cursor, _feature_json)


@router.get("/features/{name}", summary="One feature of interest")
async def get_feature(name: str, _: User = Depends(current_user),
                      store: Store = Depends(get_store)) -> dict[str, Any]:
    async with store.connect() as conn:
        return _feature_json(await _feature_row(conn, name))


@router.patch("/features/{name}", summary="Change a feature of interest (only given fields)")
async def patch_feature(name: str, body: FeaturePatch, user: User = Depends(current_user),
                        store: Store = Depends(get_store)) -> dict[str, Any]:
    given = body.model_fields_set
    async with store.begin() as conn:
        row = await require_on(conn, user, "feature", await _feature_row(conn, name),
                               Level.WRITE, "change")
        values: dict[str, Any] = {}
        if "description" in given and body.description is not None:
            values["description"] = body.description
        if "geometry" in given:
            values["geometry"] = None if body.geometry is None else dump_json(
                body.geometry.model_dump(), "geometry")
        if "parent" in given:
            values["parent_id"] = await _parent_id(conn, body.parent, row.id)
        if "properties" in given and body.properties is not None:
            values["properties"] = dump_json(body.properties, "properties")
        if values:
            await conn.execute(features.update().where(features.c.id == row.id).values(**values))
        return _feature_json(await _feature_row(conn, name))


@router.delete("/features/{name}", status_code=204, response_class=Response,
               summary="Delete a feature of interest without children or observations")
async def delete_feature(name: str, request: Request, user: User = Depends(current_user),
                         store: Store = Depends(get_store)) -> Response:
    async with store.begin() as conn:
        row = await require_on(conn, user, "feature", await _feature_row(conn, name),
                               Level.ADMIN, "delete")
        child = (await conn.execute(sa.select(features.c.name, features.c.owner)
                                    .where(features.c.parent_id == row.id).limit(1))).first()
        if child is not None:
            raise Conflict(f"feature {name!r} has child features (e.g. {child.name!r} of "
                           f"{child.owner!r}): delete or move them first")
        if (user_of := await _in_use(conn, datastreams.c.feature_id, row.id)) is not None:
            raise Conflict(f"feature {name!r} has observations (e.g. of {user_of}): delete "
                           "them first (DELETE /api/v1/observations)")
        await _drop_empty(request, conn, datastreams.c.feature_id, row.id)
        await conn.execute(features.delete().where(features.c.id == row.id))
        await forget(conn, "feature", name)
    return Response(status_code=204)


# -- sensors ---------------------------------------------------------------------------------
def _sensor_json(row: Any) -> dict[str, Any]:
    return {"name": row.name, "description": row.description, "kind": row.kind,
            "components": orjson.loads(row.components), "metadata": orjson.loads(row.meta),
            "owner": row.owner, "created": format_time(row.created_ms)}


async def _sensor_row(conn: AsyncConnection, name: str) -> Any:
    return await _one(conn, sa.select(sensors).where(sensors.c.name == name), "sensor", name)


async def _check_components(conn: AsyncConnection, name: str, kind: str,
                            components: list[str]) -> None:
    if kind == "atomic" and components:
        raise Invalid(f"sensor {name!r} is atomic: only composite sensors have components")
    if name in components:
        raise Invalid(f"sensor {name!r} cannot be a component of itself")
    found = set((await conn.execute(sa.select(sensors.c.name)
                                    .where(sensors.c.name.in_(components)))).scalars())
    for component in components:
        if component not in found:
            raise NotFound(f"unknown sensor {component!r} (a component of {name!r})")


@router.post("/sensors", status_code=201, summary="Create a sensor")
async def create_sensor(body: SensorIn, user: User = Depends(current_user),
                        store: Store = Depends(get_store)) -> dict[str, Any]:
    async with store.begin() as conn:
        await _check_components(conn, body.name, body.kind, body.components)
        await _insert(conn, sensors, "sensor", {
            "name": body.name, "description": body.description, "kind": body.kind,
            "components": dump_json(body.components, "components"),
            "meta": dump_json(body.metadata, "metadata"), "owner": user.name,
            "created_ms": now_ms()})
        return _sensor_json(await _sensor_row(conn, body.name))


@router.get("/sensors", summary="List sensors (paged, by name)")
async def list_sensors(limit: Limit = 100, cursor: Cursor = None,
                       _: User = Depends(current_user), store: Store = Depends(get_store)
                       ) -> dict[str, Any]:
    return await _page(store, sa.select(sensors), sensors.c.name, limit, cursor, _sensor_json)


@router.get("/sensors/{name}", summary="One sensor")
async def get_sensor(name: str, _: User = Depends(current_user),
                     store: Store = Depends(get_store)) -> dict[str, Any]:
    async with store.connect() as conn:
        return _sensor_json(await _sensor_row(conn, name))


@router.patch("/sensors/{name}", summary="Change a sensor (only given fields)")
async def patch_sensor(name: str, body: SensorPatch, user: User = Depends(current_user),
                       store: Store = Depends(get_store)) -> dict[str, Any]:
    async with store.begin() as conn:
        row = await require_on(conn, user, "sensor", await _sensor_row(conn, name),
                               Level.WRITE, "change")
        kind = body.kind or row.kind
        components = orjson.loads(row.components) if body.components is None else body.components
        if kind == "atomic" and body.components is None and body.kind == "atomic":
            components = []
        await _check_components(conn, name, kind, components)
        values: dict[str, Any] = {"kind": kind,
                                  "components": dump_json(components, "components")}
        if body.description is not None:
            values["description"] = body.description
        if body.metadata is not None:
            values["meta"] = dump_json(body.metadata, "metadata")
        await conn.execute(sensors.update().where(sensors.c.id == row.id).values(**values))
        return _sensor_json(await _sensor_row(conn, name))


@router.delete("/sensors/{name}", status_code=204, response_class=Response,
               summary="Delete a sensor without observations")
async def delete_sensor(name: str, request: Request, user: User = Depends(current_user),
                        store: Store = Depends(get_store)) -> Response:
    async with store.begin() as conn:
        row = await require_on(conn, user, "sensor", await _sensor_row(conn, name),
                               Level.ADMIN, "delete")
        if await _in_use(conn, datastreams.c.sensor_id, row.id) is not None:
            raise Conflict(f"sensor {name!r} has observations: delete them first "
                           f"(DELETE /api/v1/observations?sensor={name})")
        composites = (await conn.execute(
            sa.select(sensors.c.name, sensors.c.components, sensors.c.owner)
            .where(sensors.c.kind == "composite"))).all()
        for composite in composites:
            if name in orjson.loads(composite.components):
                raise Conflict(f"sensor {name!r} is a component of {composite.name!r} of "
                               f"{composite.owner!r}: it must be removed from there first")
        await _drop_empty(request, conn, datastreams.c.sensor_id, row.id)
        await conn.execute(sensors.delete().where(sensors.c.id == row.id))
        await forget(conn, "sensor", name)
    return Response(status_code=204)


# -- observed properties ---------------------------------------------------------------------
def _property_json(row: Any) -> dict[str, Any]:
    return {"name": row.name, "unit": row.unit, "data_type": row.data_type,
            "description": row.description, "owner": row.owner,
            "created": format_time(row.created_ms)}


async def _property_row(conn: AsyncConnection, name: str) -> Any:
    return await _one(conn, sa.select(properties).where(properties.c.name == name),
                      "observed property", name)


@router.post("/properties", status_code=201, summary="Create an observed property")
async def create_property(body: PropertyIn, user: User = Depends(current_user),
                          store: Store = Depends(get_store)) -> dict[str, Any]:
    async with store.begin() as conn:
        await _insert(conn, properties, "observed property", {
            "name": body.name, "unit": body.unit, "data_type": body.data_type,
            "description": body.description, "owner": user.name, "created_ms": now_ms()})
        return _property_json(await _property_row(conn, body.name))


@router.get("/properties", summary="List observed properties (paged, by name)")
async def list_properties(limit: Limit = 100, cursor: Cursor = None,
                          _: User = Depends(current_user), store: Store = Depends(get_store)
                          ) -> dict[str, Any]:
    return await _page(store, sa.select(properties), properties.c.name, limit, cursor,
                       _property_json)


@router.get("/properties/{name}", summary="One observed property")
async def get_property(name: str, _: User = Depends(current_user),
                       store: Store = Depends(get_store)) -> dict[str, Any]:
    async with store.connect() as conn:
        return _property_json(await _property_row(conn, name))


@router.patch("/properties/{name}", summary="Change an observed property (only given fields)")
async def patch_property(name: str, body: PropertyPatch, user: User = Depends(current_user),
                         store: Store = Depends(get_store)) -> dict[str, Any]:
    values = body.model_dump(exclude_none=True)
    async with store.begin() as conn:
        row = await require_on(conn, user, "property", await _property_row(conn, name),
                               Level.WRITE, "change")
        if values.get("data_type", row.data_type) != row.data_type and \
                await _in_use(conn, datastreams.c.property_id, row.id) is not None:
            raise Conflict(f"observed property {name!r} has observations: its data_type "
                           "cannot change")
        if values:
            await conn.execute(properties.update().where(properties.c.id == row.id)
                               .values(**values))
        return _property_json(await _property_row(conn, name))


@router.delete("/properties/{name}", status_code=204, response_class=Response,
               summary="Delete an observed property without observations")
async def delete_property(name: str, request: Request, user: User = Depends(current_user),
                          store: Store = Depends(get_store)) -> Response:
    async with store.begin() as conn:
        row = await require_on(conn, user, "property", await _property_row(conn, name),
                               Level.ADMIN, "delete")
        if (user_of := await _in_use(conn, datastreams.c.property_id, row.id)) is not None:
            raise Conflict(f"observed property {name!r} has observations (e.g. of {user_of}): "
                           "delete them first (DELETE /api/v1/observations)")
        await _drop_empty(request, conn, datastreams.c.property_id, row.id)
        await conn.execute(properties.delete().where(properties.c.id == row.id))
        await forget(conn, "property", name)
    return Response(status_code=204)


__all__ = ["router"]
