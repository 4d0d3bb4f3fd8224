"""Routes on the tree: directories, listing, search and shares."""

from __future__ import annotations

from typing import Any, Literal

import sqlalchemy as sa
from fastapi import APIRouter, Depends, Query, Request, Response
from pydantic import BaseModel, ConfigDict

from lakeport.errors import Conflict, Invalid, NotFound
from lakeport.server.auth import current_user
from lakeport.server.deps import get_store
from lakeport.server.files.access import (
    ADMIN,
    READ,
    access,
    below,
    check_creatable,
    grant_roots,
    readable,
    require,
)
from lakeport.server.files.common import (
    decode_path_cursor,
    get_lake,
    make_dirs,
    one_record,
    page,
    records,
    with_owner,
)
from lakeport.server.files.lake import Lake
from lakeport.server.files.paths import ancestors, check_path, glob_to_like
from lakeport.server.files.tables import entries, meta, shares, tags
from lakeport.server.paging import Integer, Limit
from lakeport.server.responses import JSONResponse
from lakeport.server.store import Store
from lakeport.server.store.schema import now_ms
from lakeport.server.store.users import User, users
from lakeport.server.times import format_time, time_param

router = APIRouter(tags=["files"])
MAX_SHARES = 10_000
"""Shares listed at most (the listing is one page)."""


class ShareIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    path: str
    user: str
    permission: Literal["read", "write", "admin"]


def parse_time(value: str | None, name: str) -> int | None:
    """ISO 8601 (naive = UTC) or epoch milliseconds → epoch milliseconds (years 1-9999);
    Invalid naming ``name``."""
    return time_param(value, name)


@router.post("/dirs/{path:path}", status_code=201, summary="Create a directory and its parents")
async def make_dir(path: str, user: User = Depends(current_user),
                   store: Store = Depends(get_store)) -> JSONResponse:
    path = check_path(path)
    async with store.begin() as conn:
        found = await access(conn, user, path)
        check_creatable(found)
        if found.row is not None:
            if found.row.kind == "file":
                require(found, READ, "read")
                raise Conflict(f"'{path}' is a file")
            return JSONResponse(await one_record(conn, require(found, READ, "read").id), 200)
        await make_dirs(conn, store.dialect,
                        [p for p in [*ancestors(path), path] if p not in found.above],
                        user.id if found.tree_owner is None else found.tree_owner, now_ms())
        row = (await conn.execute(sa.select(entries.c.id).where(entries.c.path == path))).one()
        return JSONResponse(await one_record(conn, row.id), 201)


@router.delete("/dirs/{path:path}", status_code=204, response_class=Response,
               summary="Delete a directory (recursive=true: with everything under it)")
async def delete_dir(path: str, recursive: bool = False, user: User = Depends(current_user),
                     store: Store = Depends(get_store), lake: Lake = Depends(get_lake)) -> Response:
    path = check_path(path)
    async with store.begin() as conn:
        row = require(await access(conn, user, path), ADMIN, "delete")
        if row.kind != "dir":
            raise Conflict(f"'{path}' is a file: delete it with DELETE /api/v1/files/{path}")
        inside = below(path)
        keys = (await conn.execute(sa.select(entries.c.object_key).where(
            inside, entries.c.kind == "file"))).scalars().all()
        if not recursive:
            child = (await conn.execute(sa.select(entries.c.id).where(inside).limit(1))).first()
            if child is not None:
                raise Conflict(f"directory '{path}' is not empty: add ?recursive=true")
        await conn.execute(entries.delete().where(inside))
        await conn.execute(entries.delete().where(entries.c.id == row.id))
    await lake.delete(*keys)
    return Response(status_code=204)


async def _list(path: str, limit: int, cursor: str | None, archived: bool, user: User,
                store: Store) -> dict[str, Any]:
    after = decode_path_cursor(cursor)
    async with store.connect() as conn:
        if path:
            row = require(await access(conn, user, path), READ, "list")
            if row.kind == "file":
                return {"items": [await one_record(conn, row.id)], "next_cursor": None}
            where = entries.c.parent == path
        else:
            where = sa.and_(entries.c.parent == "", readable(user, await grant_roots(conn, user)))
        query = with_owner().where(where)
        if not archived:
            query = query.where(entries.c.archived == sa.false())
        if after is not None:
            query = query.where(entries.c.path > after)
        rows = (await conn.execute(query.order_by(entries.c.path).limit(limit + 1))).all()
        items = await records(conn, rows[:limit])
    return page(items, rows, limit)


@router.get("/ls", summary="List the lake's root")
async def list_root(limit: Limit = 100, cursor: str | None = None, archived: bool = False,
                    user: User = Depends(current_user),
                    store: Store = Depends(get_store)) -> JSONResponse:
    return JSONResponse(await _list("", limit, cursor, archived, user, store))


@router.get("/ls/{path:path}", summary="List a directory")
async def list_dir(path: str, limit: Limit = 100, cursor: str | None = None,
                   archived: bool = False, user: User = Depends(current_user),
                   store: Store = Depends(get_store)) -> JSONResponse:
    return JSONResponse(await _list(check_path(path, allow_root=True), limit, cursor, archived,
                                    user, store))


@router.get("/search", summary="Find files by name, tags, metadata, time, size, directory",
            openapi_extra={"x-query-prefixes": ["meta."]})
async def search(request: Request, name: str | None = Query(None, description="glob, e.g. *.csv"),
                 tag: list[str] = Query([]), after: str | None = None,
                 before: str | None = None, min_size: Integer = None,
                 max_size: Integer = None, under_dir: str | None = Query(None, alias="under"),
                 archived: bool = False, limit: Limit = 100, cursor: str | None = None,
                 user: User = Depends(current_user),
                 store: Store = Depends(get_store)) -> JSONResponse:
    last = decode_path_cursor(cursor)
    query = with_owner().where(entries.c.kind == "file")
    if name:
        column = entries.c.path if "/" in name else entries.c.name
        query = query.where(column.ilike(glob_to_like(name), escape="\\"))
    for value in tag:
        query = query.where(sa.exists().where(tags.c.entry_id == entries.c.id,
                                              tags.c.tag == value))
    for key, value in request.query_params.multi_items():
        if key.startswith("meta.") and len(key) > 5:
            query = query.where(sa.exists().where(meta.c.entry_id == entries.c.id,
                                                  meta.c.key == key[5:], meta.c.value == value))
    for bound, operator in ((parse_time(after, "after"), "__ge__"),
                            (parse_time(before, "before"), "__lt__")):
        if bound is not None:
            query = query.where(getattr(entries.c.modified_ms, operator)(bound))
    if min_size is not None:
        query = query.where(entries.c.size >= min_size)
    if max_size is not None:
        query = query.where(entries.c.size <= max_size)
    if under_dir:
        directory = check_path(under_dir)
        query = query.where(below(directory))
    if not archived:
        query = query.where(entries.c.archived == sa.false())
    if last is not None:
        query = query.where(entries.c.path > last)
    async with store.connect() as conn:
        query = query.where(readable(user, await grant_roots(conn, user)))
        rows = (await conn.execute(query.order_by(entries.c.path).limit(limit + 1))).all()
        items = await records(conn, rows[:limit])
    return JSONResponse(page(items, rows, limit))


def _share(path: str, user: str, permission: str, created_ms: int) -> dict[str, Any]:
    return {"path": path, "user": user, "permission": permission,
            "created": format_time(created_ms)}


@router.post("/shares", status_code=201, summary="Share a file or directory with a user")
async def add_share(share: ShareIn, user: User = Depends(current_user),
                    store: Store = Depends(get_store)) -> JSONResponse:
    path = check_path(share.path)
    async with store.begin() as conn:
        row = require(await access(conn, user, path), ADMIN, "share")
        target = (await conn.execute(sa.select(users.c.id).where(
            users.c.name == share.user))).scalar()
        if target is None:
            raise NotFound(f"unknown user '{share.user}'")
        if target == row.owner_id:
            raise Invalid(f"'{share.user}' owns '{path}' already")
        now = now_ms()
        updated = await conn.execute(shares.update().where(
            shares.c.entry_id == row.id, shares.c.user_id == target).values(
            permission=share.permission, created_ms=now))
        if updated.rowcount == 0:
            await conn.execute(shares.insert().values(entry_id=row.id, user_id=target,
                                                      permission=share.permission,
                                                      created_ms=now))
    return JSONResponse(_share(path, share.user, share.permission, now), 201)


@router.get("/shares", summary="Shares of a path, or those made by or with the caller")
async def list_shares(path: str | None = None, user: User = Depends(current_user),
                      store: Store = Depends(get_store)) -> JSONResponse:
    query = sa.select(entries.c.path, users.c.name, shares.c.permission,
                      shares.c.created_ms).select_from(
        shares.join(entries, entries.c.id == shares.c.entry_id).join(
            users, users.c.id == shares.c.user_id))
    async with store.connect() as conn:
        if path:
            row = require(await access(conn, user, check_path(path)), READ, "read")
            query = query.where(shares.c.entry_id == row.id)
        else:
            query = query.where(sa.or_(entries.c.owner_id == user.id,
                                       shares.c.user_id == user.id))
        rows = (await conn.execute(query.order_by(entries.c.path, users.c.name)
                                   .limit(MAX_SHARES))).all()
    return JSONResponse({"items": [_share(*row) for row in rows], "next_cursor": None})


@router.delete("/shares", status_code=204, response_class=Response, summary="Stop sharing")
async def delete_share(path: str, user_name: str = Query(..., alias="user"),
                       user: User = Depends(current_user),
                       store: Store = Depends(get_store)) -> Response:
    path = check_path(path)
    async with store.begin() as conn:
        row = require(await access(conn, user, path), ADMIN, "unshare")
        target = (await conn.execute(sa.select(users.c.id).where(
            users.c.name == user_name))).scalar()
        result = await conn.execute(shares.delete().where(
            shares.c.entry_id == row.id, shares.c.user_id == target))
        if result.rowcount == 0:
            raise NotFound(f"'{path}' is not shared with '{user_name}'")
    return Response(status_code=204)


__all__ = ["router"]
