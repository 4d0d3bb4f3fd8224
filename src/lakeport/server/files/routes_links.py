"""Routes on relations between files, lineage, and files read as tables."""

from __future__ import annotations

import asyncio
import re
from typing import Any, Literal

import sqlalchemy as sa
from fastapi import APIRouter, Depends, Query
from pydantic import BaseModel, ConfigDict, Field
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncConnection
from starlette.responses import Response

from lakeport.errors import Conflict, Invalid
from lakeport.server.auth import current_user
from lakeport.server.deps import get_store
from lakeport.server.files.access import READ, WRITE, access, grant_roots, readable, require
from lakeport.server.files.common import get_lake
from lakeport.server.files.lake import Lake
from lakeport.server.files.paths import check_path
from lakeport.server.files.tables import entries, relations
from lakeport.server.files.tables_read import read_table, table_json, table_kind, table_parquet
from lakeport.server.responses import JSONResponse
from lakeport.server.store import Store
from lakeport.server.store.schema import now_ms
from lakeport.server.store.users import User
from lakeport.server.times import format_time

router = APIRouter(tags=["files"])
DERIVED_FROM = "derived_from"
_LABEL = re.compile(r"[^\x00-\x1f\x7f]{1,200}")
PARQUET = "application/vnd.apache.parquet"


class RelationIn(BaseModel):
    model_config = ConfigDict(extra="forbid", populate_by_name=True)

    source: str = Field(alias="from", description="the path the relation describes")
    to: str
    label: str = DERIVED_FROM


@router.post("/relations", status_code=201, summary="Relate two files (from → to, labelled)")
async def add_relation(relation: RelationIn, user: User = Depends(current_user),
                       store: Store = Depends(get_store)) -> JSONResponse:
    source, target = check_path(relation.source), check_path(relation.to)
    if not _LABEL.fullmatch(relation.label):
        raise Invalid(f"bad label {relation.label!r}: use 1-200 printable characters")
    if source == target:
        raise Invalid(f"'{source}' cannot be related to itself")
    now = now_ms()
    try:
        async with store.begin() as conn:
            from_row = require(await access(conn, user, source), WRITE, "relate")
            to_row = require(await access(conn, user, target), READ, "read")
            await conn.execute(relations.insert().values(
                from_id=from_row.id, to_id=to_row.id, label=relation.label, owner_id=user.id,
                created_ms=now))
    except IntegrityError as exc:
        raise Conflict(f"'{source}' is already related to '{target}' as "
                       f"{relation.label!r}") from exc
    return JSONResponse({"from": source, "to": target, "label": relation.label,
                         "created": format_time(now)}, 201)


@router.get("/relations", summary="Relations from and to a path")
async def list_relations(path: str, user: User = Depends(current_user),
                         store: Store = Depends(get_store)) -> JSONResponse:
    path = check_path(path)
    source, target = entries.alias("source"), entries.alias("target")
    async with store.connect() as conn:
        row = require(await access(conn, user, path), READ, "read")
        roots = await grant_roots(conn, user)
        rows = (await conn.execute(
            sa.select(source.c.path, target.c.path, relations.c.label, relations.c.created_ms)
            .select_from(relations.join(source, source.c.id == relations.c.from_id)
                         .join(target, target.c.id == relations.c.to_id))
            .where(sa.or_(relations.c.from_id == row.id, relations.c.to_id == row.id),
                   readable(user, roots, source), readable(user, roots, target))
            .order_by(relations.c.created_ms, relations.c.id))).all()
    items = [{"from": a, "to": b, "label": label, "created": format_time(created)}
             for a, b, label, created in rows]
    return JSONResponse({"items": items, "next_cursor": None})


async def _lineage(conn: AsyncConnection, user: User, start: Any, up: bool,
                   depth: int) -> dict[str, Any]:
    roots = await grant_roots(conn, user)
    paths = {start.id: start.path}
    frontier = [start.id]
    edges: list[dict[str, str]] = []
    near, far = (relations.c.from_id, relations.c.to_id) if up else \
        (relations.c.to_id, relations.c.from_id)
    for _ in range(depth):
        if not frontier:
            break
        found = (await conn.execute(
            sa.select(near, far, entries.c.path)
            .join(entries, entries.c.id == far)
            .where(near.in_(frontier), relations.c.label == DERIVED_FROM,
                   readable(user, roots))
            .order_by(entries.c.path))).all()
        frontier = []
        for here, there, there_path in found:
            pair = (paths[here], there_path) if up else (there_path, paths[here])
            edges.append({"from": pair[0], "to": pair[1], "label": DERIVED_FROM})
            if there not in paths:
                paths[there] = there_path
                frontier.append(there)
    return {"path": start.path, "nodes": list(paths.values()), "edges": edges}


@router.get("/lineage/{path:path}", summary="What a file derives from (up) or feeds (down)")
async def lineage(path: str, direction: Literal["up", "down"] = "up",
                  depth: int = Query(10, ge=1, le=100), user: User = Depends(current_user),
                  store: Store = Depends(get_store)) -> JSONResponse:
    path = check_path(path)
    async with store.connect() as conn:
        row = require(await access(conn, user, path), READ, "read")
        return JSONResponse(await _lineage(conn, user, row, direction == "up", depth))


@router.get("/table/{path:path}", summary="Read a CSV, Parquet or JSON(-lines) file as a table",
            response_class=Response,
            responses={200: {"content": {"application/json": {}, PARQUET: {}}}})
async def read_as_table(path: str, format: str = "json",
                        limit: int = Query(1000, ge=1, le=1_000_000),
                        user: User = Depends(current_user), store: Store = Depends(get_store),
                        lake: Lake = Depends(get_lake)) -> Response:
    path = check_path(path)
    if format not in ("json", "parquet"):
        raise Invalid(f"unknown format {format!r}: use json or parquet")
    async with store.connect() as conn:
        row = require(await access(conn, user, path), READ, "read")
    if row.kind != "file":
        raise Invalid(f"'{path}' is a directory, not a table file")
    kind = table_kind(path, row.content_type)

    def load() -> bytes:
        with lake.open_read(row.object_key) as source:
            table, total = read_table(source, kind, limit, path)
        return table_json(table, total, path) if format == "json" else \
            table_parquet(table, path)

    body = await asyncio.to_thread(load)
    return Response(body, media_type="application/json" if format == "json" else PARQUET,
                    headers={"X-Content-Type-Options": "nosniff"})


__all__ = ["router"]
