"""Grants on topics, sensors, features, observed properties, task projects and workflows: give
a user read, write (``produce`` on topics) or admin access, list and revoke. Files are shared
by path (``/shares``). The model is described in docs/server/access.md."""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa
from fastapi import APIRouter, Depends, Query, Request, Response
from pydantic import BaseModel, ConfigDict
from sqlalchemy.ext.asyncio import AsyncConnection

from lakeport.errors import Invalid, NotFound
from lakeport.server.access import (
    KINDS,
    Level,
    grants,
    parse_permission,
    permission_name,
    recorded_level,
    require,
    user_id_named,
)
from lakeport.server.auth import current_user
from lakeport.server.deps import get_store
from lakeport.server.observations.access import level_on, require_named
from lakeport.server.responses import JSONResponse
from lakeport.server.routing.access import level_on as routing_level
from lakeport.server.routing.access import resource_access
from lakeport.server.store import Store
from lakeport.server.store.schema import now_ms
from lakeport.server.store.users import User, users
from lakeport.server.tasks.access import project_access, project_level
from lakeport.server.tasks.lakefiles import share_project_folder
from lakeport.server.times import format_time
from lakeport.server.workflows.access import workflow_access, workflow_level
from lakeport.streams.types import validate_topic_name

router = APIRouter(tags=["grants"])
lifespan = None


class GrantIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    user: str
    permission: str


def _kind(kind: str) -> str:
    if kind not in KINDS:
        raise Invalid(f"bad kind {kind!r}: use {', '.join(KINDS)} (files are shared with "
                      "POST /api/v1/shares)")
    return kind


async def _level(request: Request, conn: AsyncConnection, user: User, kind: str, name: str
                 ) -> tuple[Level, int | None]:
    """(the caller's level on the resource, its owner's id); NotFound when it does not
    exist or the caller may not know it does."""
    if kind == "topic":
        validate_topic_name(name)
        level, owner_id = await recorded_level(conn, user, kind, name)
        if owner_id is None and level >= Level.READ:
            await request.app.state.engine.topic_info(name)  # an operator: NotFound if gone
        return level, owner_id
    if kind == "project":
        project = await conn.run_sync(project_access, user, name, Level.READ, "read")
        return await conn.run_sync(project_level, user, project), project.owner_id
    if kind == "workflow":
        workflow = await conn.run_sync(workflow_access, user, name, Level.READ, "read")
        return await conn.run_sync(workflow_level, user, workflow), workflow.owner_id
    if kind in ("rule", "bridge"):
        row = await conn.run_sync(resource_access, user, kind, name, Level.READ, "read")
        return await conn.run_sync(routing_level, user, kind, row), row.owner_id
    row = await require_named(conn, user, kind, name, Level.READ, "read")
    return await level_on(conn, user, kind, row), await user_id_named(conn, row.owner)


def _record(kind: str, name: str, user: str, permission: str, created_ms: int
            ) -> dict[str, Any]:
    return {"kind": kind, "name": name, "user": user,
            "permission": permission_name(kind, parse_permission(kind, permission)),
            "created": format_time(created_ms)}


@router.put("/grants/{kind}/{name}", summary="Grant a user read, write/produce or admin access")
async def grant(kind: str, name: str, body: GrantIn, request: Request,
                user: User = Depends(current_user),
                store: Store = Depends(get_store)) -> JSONResponse:
    kind = _kind(kind)
    permission = permission_name(kind, parse_permission(kind, body.permission))
    async with store.begin() as conn:
        level, owner_id = await _level(request, conn, user, kind, name)
        require(level, Level.ADMIN, kind, name, "grant access to")
        target = await user_id_named(conn, body.user)
        if target is None:
            raise NotFound(f"unknown user {body.user!r}")
        if target == owner_id:
            raise Invalid(f"{body.user!r} owns {kind} {name!r} already")
        now = now_ms()
        updated = await conn.execute(grants.update().where(
            grants.c.kind == kind, grants.c.name == name, grants.c.user_id == target
        ).values(permission=permission, created_ms=now))
        if not updated.rowcount:
            await conn.execute(grants.insert().values(kind=kind, name=name, user_id=target,
                                                      permission=permission, created_ms=now))
        if kind == "project":
            await share_project_folder(conn, name, target, permission)
    return JSONResponse(_record(kind, name, body.user, permission, now),
                        200 if updated.rowcount else 201)


@router.get("/grants/{kind}/{name}", summary="Grants on a resource (all of them for its "
                                             "admins, else the caller's own)")
async def list_grants(kind: str, name: str, request: Request,
                      user: User = Depends(current_user),
                      store: Store = Depends(get_store)) -> JSONResponse:
    kind = _kind(kind)
    async with store.connect() as conn:
        level, _ = await _level(request, conn, user, kind, name)
        require(level, Level.READ, kind, name, "read")
        query = (sa.select(users.c.name, grants.c.permission, grants.c.created_ms)
                 .join(users, users.c.id == grants.c.user_id)
                 .where(grants.c.kind == kind, grants.c.name == name).order_by(users.c.name))
        if level < Level.ADMIN:
            query = query.where(grants.c.user_id == user.id)
        rows = (await conn.execute(query)).all()
    return JSONResponse({"items": [_record(kind, name, *row) for row in rows],
                         "next_cursor": None})


@router.delete("/grants/{kind}/{name}", status_code=204, response_class=Response,
               summary="Revoke a user's grant (a user may also give up their own)")
async def revoke(kind: str, name: str, request: Request,
                 user_name: str = Query(..., alias="user"), user: User = Depends(current_user),
                 store: Store = Depends(get_store)) -> Response:
    kind = _kind(kind)
    async with store.begin() as conn:
        level, _ = await _level(request, conn, user, kind, name)
        if user_name != user.name:
            require(level, Level.ADMIN, kind, name, "revoke access to")
        target = await user_id_named(conn, user_name)
        result = await conn.execute(grants.delete().where(
            grants.c.kind == kind, grants.c.name == name, grants.c.user_id == target))
        if not result.rowcount:
            raise NotFound(f"{kind} {name!r} has no grant to {user_name!r}")
        if kind == "project":
            await share_project_folder(conn, name, target, None)
    return Response(status_code=204)


__all__ = ["lifespan", "router"]
